"""Training-free proxies on NAS-Bench-201: how well they rank cells, and what a search by them finds.

Usage:
  python benchmarks/zerocost.py rank [--cells 1000] [--csv OUT.csv] [--dataset cifar10 --data PATH]
  python benchmarks/zerocost.py search [--seeds 0,1,2] [--budget 300] [--proxy ensemble] [--strategy re]
  python benchmarks/zerocost.py summary OUT.csv      (the rank figures of a CSV written by `rank`, so far)
  python benchmarks/zerocost.py digits [--cells 40]   (the same defaults on digits, against trained accuracies)

``rank`` scores ``--cells`` uniformly random distinct cells (seed 0) with every proxy of the ``zerocost``
evaluator (its defaults: one minibatch of 64 training images, the network of the benchmark, C=16 N=5) and the
ensemble (its reference sample of 50 cells drawn with another seed), appending one CSV line per cell (a killed run
continues where it stopped), then prints Kendall tau and Spearman of each against ``test_acc_200`` and
``val_acc_200`` and the seconds per cell (process CPU time). ``search`` runs ``nasforge search --evaluator
zerocost`` for each seed and prints the found cell (highest proxy score), its table ``test_acc_200`` and the
search's CPU seconds. ``digits`` checks the defaults on another data set: it trains ``--cells`` random cells with
the ``train`` evaluator's defaults (3 epochs) on digits and ranks the proxies against their validation accuracy.
One core: run with OMP_NUM_THREADS=1 and NASFORGE_CACHE set (the decoded CIFAR-10 cache).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

import nasforge as nf
from nasforge.evaluators.tabular import Table
from nasforge.proxies import PROXIES

SHARED = Path(os.environ.get("NASFORGE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def config(args: argparse.Namespace, **extra: object) -> nf.RunConfig:
    return nf.RunConfig(space="nb201", evaluator="zerocost", dataset=args.dataset,
                        data=str(args.data) if args.dataset == "cifar10" else None, **extra)  # type: ignore[arg-type]


def rank(args: argparse.Namespace) -> None:
    space = nf.create_space("nb201")
    evaluator = nf.create_evaluator(config(args, evaluator_args={"record": list(PROXIES)}), space)
    rng = np.random.default_rng(0)
    cells: list[nf.Architecture] = []
    seen = set()
    while len(cells) < args.cells:
        a = space.sample(rng)
        if space.key(a) not in seen:
            seen.add(space.key(a))
            cells.append(a)
    out = Path(args.csv)
    done = set()
    if out.exists():
        with out.open() as f:
            done = {row["arch"] for row in csv.DictReader(f)}
    header = ["arch", *PROXIES, "ensemble", "cpu_s"]
    new = not out.exists()
    _ = evaluator.ranks  # the reference, scored before the timing starts
    with out.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(header)
        for a in cells:
            if str(a) in done:
                continue
            start = cpu_seconds()
            r = evaluator.evaluate(a)
            writer.writerow([str(a), *(r.metrics[p] for p in PROXIES), r.reward, cpu_seconds() - start])
            f.flush()
    summary(out, args.table)


def summary(path: Path, table_path: Path) -> None:
    space = nf.create_space("nb201")
    table = Table(table_path, space)
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    archs = [space.parse(r["arch"]) for r in rows]
    test = np.array([table.value(a, "test_acc_200") for a in archs])
    val = np.array([table.value(a, "val_acc_200") for a in archs])
    cpu = np.array([float(r["cpu_s"]) for r in rows])
    print(f"{len(rows)} cells; CPU seconds per cell (all seven proxies): mean {cpu.mean():.2f}, median "
          f"{np.median(cpu):.2f}; load average now {os.getloadavg()[0]:.1f}")
    pools = [slice(i, i + 100) for i in range(0, len(rows) - 99, 100)]  # disjoint, in sampling order
    for name in (*PROXIES, "ensemble"):
        s = np.array([float(r[name]) for r in rows])
        picked = [test[p][int(np.argmax(s[p]))] for p in pools]
        pool_text = f"; best-scored of each 100 (NASWOT's N=100): {' '.join(f'{v:.2f}' for v in picked)}" if pools else ""
        print(f"{name:10s} test_acc_200: Kendall {kendalltau(s, test).statistic:.3f} Spearman "
              f"{spearmanr(s, test).statistic:.3f} | val_acc_200: Kendall {kendalltau(s, val).statistic:.3f} "
              f"Spearman {spearmanr(s, val).statistic:.3f} | top-scored cell's test_acc_200 "
              f"{test[int(np.argmax(s))]:.2f}{pool_text}")


def search(args: argparse.Namespace) -> None:
    table = Table(args.table, nf.create_space("nb201"))
    found = []
    for seed in (int(s) for s in args.seeds.split(",")):
        start_cpu, start = cpu_seconds(), time.perf_counter()
        cfg = config(args, strategy=args.strategy, budget=args.budget, seed=seed,
                     evaluator_args={"proxy": args.proxy})
        record, _ = nf.search(cfg)
        best = record.best
        assert best is not None and best.result is not None, "no evaluation succeeded"
        test = table.value(best.arch, "test_acc_200")
        found.append(test)
        print(f"seed {seed}: {args.strategy} x {args.budget} by {args.proxy}: {best.arch} score "
              f"{best.result.reward:.4f} test_acc_200 {test:.2f}; CPU {cpu_seconds() - start_cpu:.0f} s, wall "
              f"{time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"mean test_acc_200 over {len(found)} seeds: {np.mean(found):.2f} (min {min(found):.2f})")


def digits(args: argparse.Namespace) -> None:
    space = nf.create_space("nb201")
    proxies = nf.create_evaluator(nf.RunConfig(space="nb201", evaluator="zerocost", dataset="digits",
                                               evaluator_args={"record": list(PROXIES)}), space)
    trainer = nf.create_evaluator(nf.RunConfig(space="nb201", evaluator="train", dataset="digits"), space)
    rng = np.random.default_rng(0)
    scores: dict[str, list[float]] = {p: [] for p in (*PROXIES, "ensemble")}
    val = []
    start = cpu_seconds()
    for i in range(args.cells):
        a = space.sample(rng)
        r = proxies.evaluate(a)
        for p in PROXIES:
            scores[p].append(r.metrics[p])
        scores["ensemble"].append(r.reward)
        val.append(trainer.evaluate(a, seed=i).reward)
    print(f"digits, {args.cells} random cells trained 3 epochs ({cpu_seconds() - start:.0f} CPU s); validation "
          f"accuracy mean {np.mean(val):.1f}, load average {os.getloadavg()[0]:.1f}")
    for name, s in scores.items():
        print(f"{name:10s} val_accuracy: Kendall {kendalltau(s, val).statistic:.3f} Spearman "
              f"{spearmanr(s, val).statistic:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("rank", "search", "summary", "digits"))
    p.add_argument("csv", nargs="?", default="zerocost-rank.csv")
    p.add_argument("--table", type=Path, default=SHARED / "nb201-cifar10.csv")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data", type=Path, default=SHARED / "cifar10-jpeg.tar.gz")
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--proxy", default="ensemble")
    p.add_argument("--strategy", default="re")
    args = p.parse_args()
    torch.set_num_threads(1)
    {"rank": rank, "search": search, "summary": lambda a: summary(Path(a.csv), a.table), "digits": digits
     }[args.mode](args)


if __name__ == "__main__":
    main()
