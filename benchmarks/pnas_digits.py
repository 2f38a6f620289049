"""PNAS against re, rs and bo with real training on digits: the same number of trained networks, several seeds.

Each run trains ``--budget`` networks of the ``darts`` space (``--nodes`` per cell) with the ``train`` evaluator;
PNAS grows its cells from one node (``initial`` one-node cells, then ``beam`` cells per node count), the other
strategies search full cells. One JSON line per run goes to ``--out`` (appended, so that runs split over
processes add up); ``--summary`` reads such files and prints one line per figure:

- per strategy, the best validation accuracy found (mean, std over seeds) and the test accuracy of that network;
- PNAS' predictor at each node count b >= 2, as the search used it: Spearman correlation between its
  predictions for the beam it chose and the accuracies those cells then got (per seed, then the mean);
- offline, from every network trained in these runs: an ensemble trained on the cells of fewer than b nodes
  ranks the cells of b nodes (LSTM and MLP), the paper's question of how a predictor generalises to larger cells.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pnas_digits.py --strategies pnas re --out /tmp/pnas.jsonl &
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pnas_digits.py --strategies rs bo --out /tmp/pnas.jsonl
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pnas_digits.py --summary /tmp/pnas.jsonl

The same protocol on a CIFAR-10 proxy and on PNAS' own space (``--space nasnet``: the ``nasnet`` cell space with
PNAS' 8 operations, one shared cell, every block concatenated, ``--nodes`` blocks): ``--dataset cifar10 --data
PATH`` and ``--set KEY=VALUE`` overrides of the proxy (later ones win over the digits defaults), for example

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pnas_digits.py --space nasnet --dataset cifar10 \
        --data ../shared/data/cifar10-jpeg.tar.gz --set evaluator.resolution=16 evaluator.fraction=0.1 \
        --search-test 500 --strategies pnas re --seeds 0 --out /tmp/pnas_cifar.jsonl

``--search-test N`` scores the searched networks on a fixed sample of N test images only (the search never reads
them; they cost a third of a small proxy's evaluation on CIFAR-10's 10,000), then trains the network of the best
validation accuracy once more, with its seed in the search, and scores it on the whole test set
(``final_test``; its validation accuracy must come out the same). CPU seconds per run (``cpu_s``, the whole
process, one thread) are recorded beside the wall time, with the load average.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import defaultdict

import numpy as np
import torch
from scipy import stats

import nasforge as nf
from nasforge.predictors.ensemble import EnsemblePredictor
from nasforge.run.loop import _seed_for, run_search

TRAIN = ["evaluator.epochs=2", "evaluator.model_args={C: 8, layers: 2}"]


def space_args(args: argparse.Namespace) -> dict:
    if args.space == "nasnet":  # PNAS' space: its 8 operations, one cell for both positions, every block concatenated
        return {"blocks": args.nodes, "ops": "pnas", "shared_cell": True, "concat": "all"}
    return {"nodes": args.nodes}


def run(strategy: str, seed: int, args: argparse.Namespace) -> dict:
    overrides = list(TRAIN) + list(args.set)
    if strategy == "pnas":
        overrides += [f"strategy.initial={args.initial}", f"strategy.beam={args.beam}"]
    if strategy == "re":
        overrides += [f"strategy.{k}={v}" for k, v in (("population", args.population),
                                                      ("sample_size", args.sample_size)) if v]
    config = nf.make_run_config({"space": args.space, "space_args": space_args(args), "strategy": strategy,
                                 "evaluator": "train", "dataset": args.dataset, "data": args.data,
                                 "cache_dir": args.cache, "budget": args.budget, "seed": seed}, overrides)
    parts = nf.build_components(config)
    splits = parts.evaluator.splits
    full_test = splits.test
    if args.search_test:  # a fixed sample: the same test images for every network and strategy
        keep = torch.from_numpy(np.sort(np.random.default_rng(0).choice(len(full_test), args.search_test, replace=False)))
        splits.test = type(full_test)(full_test.x[keep], full_test.y[keep])
    load = os.getloadavg()
    start, cpu = time.time(), time.process_time()
    record = run_search(parts.space, parts.strategy, parts.evaluator, args.budget, seed=seed)
    trials = [{"id": t.id, "arch": str(t.arch), "blocks": parts.space.blocks(t.arch), "reward": t.reward,
               "test": (t.result.metrics or {}).get("test_accuracy") if t.result else None} for t in record.trials]
    out = {"strategy": strategy, "seed": seed, "budget": args.budget, "nodes": args.nodes, "space": args.space,
           "space_args": space_args(args), "dataset": args.dataset or "digits", "train": overrides,
           "wall_s": round(time.time() - start, 1), "cpu_s": round(time.process_time() - cpu, 1), "trials": trials}
    if args.search_test:
        best = max(record.trials, key=lambda t: t.reward)
        splits.test = full_test
        again = parts.evaluator.evaluate(best.arch, None, _seed_for(seed, best.id))
        out["search_test"] = args.search_test
        out["final_test"] = {"arch": str(best.arch), "reward": again.reward,
                             "test": (again.metrics or {}).get("test_accuracy"), "test_images": len(full_test)}
        out["cpu_final_s"] = round(time.process_time() - cpu - out["cpu_s"], 1)
    out["load"] = [round(x, 2) for x in load] + [round(x, 2) for x in os.getloadavg()]
    if strategy == "pnas":
        out["predictions"] = {str(b): [[str(a), p] for a, p in preds.items()]
                              for b, preds in parts.strategy.predictions.items()}
        out["strategy_args"] = {"initial": args.initial, "beam": args.beam}
    return out


def summary(paths: list[str]) -> None:
    runs, seen = [], set()
    for r in (json.loads(line) for p in paths for line in open(p) if line.strip()):
        if (r["strategy"], r["seed"]) not in seen:  # a run repeated by another process counts once
            seen.add((r["strategy"], r["seed"]))
            runs.append(r)
    by = defaultdict(list)
    for r in runs:
        by[r["strategy"]].append(r)
    for name in ("pnas", "re", "rs", "bo"):
        rs = by.get(name, [])
        if not rs:
            continue
        best = [max(r["trials"], key=lambda t: t["reward"]) for r in rs]
        val = np.array([b["reward"] for b in best])
        # with --search-test, the test accuracy is the whole test set's, of the best network trained again
        test = np.array([r["final_test"]["test"] if "final_test" in r else b["test"] for r, b in zip(rs, best)],
                        dtype=float)
        wall = np.mean([r["wall_s"] for r in rs])
        cpu = [r["cpu_s"] + r.get("cpu_final_s", 0) for r in rs if "cpu_s" in r]
        print(f"{name}: best validation accuracy {val.mean():.2f} +- {val.std():.2f}, its test accuracy "
              f"{test.mean():.2f} +- {test.std():.2f} ({len(rs)} seeds, {rs[0]['budget']} networks each, "
              f"{wall:.0f} s per run" + (f", {np.mean(cpu) / 60:.1f} CPU minutes per run" if cpu else "") + ")")
        for r, b, t in zip(rs, best, test):
            again = f" (trained again: validation {r['final_test']['reward']:.2f})" if "final_test" in r else ""
            print(f"  seed {r['seed']}: best validation {b['reward']:.2f} ({b['blocks']} blocks), test {t:.2f}"
                  f"{again}, {r['wall_s']:.0f} s wall" + (f", {r['cpu_s']:.0f} s CPU" if "cpu_s" in r else ""))
    for r in by.get("pnas", [])[:1]:
        levels = sorted(int(b) for b in r["predictions"])
    for b in levels if by.get("pnas") else ():
        rhos = []
        for r in by["pnas"]:
            reward = {t["arch"]: t["reward"] for t in r["trials"]}
            pairs = [(p, reward[a]) for a, p in r["predictions"].get(str(b), []) if a in reward]
            if len(pairs) >= 3:
                rhos.append(stats.spearmanr(*zip(*pairs)).statistic)
        print(f"pnas predictor in the search, {b} nodes: Spearman {np.nanmean(rhos):.2f} (per seed: "
              f"{', '.join(f'{x:.2f}' for x in rhos)}) over each seed's beam")
    offline(runs)


def offline(runs: list[dict]) -> None:
    nodes = runs[0]["nodes"]
    space = nf.create_space(runs[0].get("space", "darts"), **runs[0].get("space_args", {"nodes": nodes}),
                            min_blocks=1)
    cells: dict = {}
    for r in runs:
        for t in r["trials"]:
            if t["reward"] == t["reward"]:  # not NaN
                cells.setdefault(t["arch"], []).append(t["reward"])
    archs = [space.parse(a) for a in cells]
    y = np.array([np.mean(v) for v in cells.values()])
    size = np.array([space.blocks(a) for a in archs])
    for b in range(2, nodes + 1):
        train, test = np.flatnonzero(size < b), np.flatnonzero(size == b)
        if len(train) < 5 or len(test) < 5:
            continue
        line = []
        for kind in ("lstm", "mlp"):
            p = EnsemblePredictor(space, torch.Generator().manual_seed(0), kind)
            p.fit([archs[i] for i in train], y[train], 150)
            rho = stats.spearmanr(p.predict([archs[i] for i in test]), y[test]).statistic
            line.append(f"{kind} {rho:.2f}")
        print(f"predictor trained on {len(train)} cells of < {b} nodes ranks {len(test)} cells of {b} nodes: "
              f"Spearman {', '.join(line)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategies", nargs="+", default=["pnas", "re", "rs", "bo"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--initial", type=int, default=4)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--space", choices=["darts", "nasnet"], default="darts",
                        help="darts (nodes per cell) or nasnet with PNAS' operations and one shared cell")
    parser.add_argument("--dataset", help="digits (default) or cifar10 (with --data)")
    parser.add_argument("--data", help="the data set's files, e.g. ../shared/data/cifar10-jpeg.tar.gz")
    parser.add_argument("--cache", help="decoded data cache (default $NASFORGE_CACHE)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="more overrides, e.g. evaluator.fraction=0.1")
    parser.add_argument("--population", type=int, help="re's population (default: the strategy's)")
    parser.add_argument("--sample-size", type=int, help="re's tournament size (default: the strategy's)")
    parser.add_argument("--search-test", type=int, default=0, metavar="N",
                        help="score searched networks on N test images, the best again on all (0: all throughout)")
    parser.add_argument("--out", default="/tmp/pnas_digits.jsonl")
    parser.add_argument("--summary", nargs="+", metavar="JSONL")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    if args.summary:
        summary(args.summary)
        return
    for seed in args.seeds:
        for strategy in args.strategies:
            out = run(strategy, seed, args)
            with open(args.out, "a") as f:
                f.write(json.dumps(out) + "\n")
            best = max(out["trials"], key=lambda t: t["reward"])
            final = f", whole test set {out['final_test']['test']:.2f}" if "final_test" in out else ""
            print(f"{strategy} seed {seed}: best validation {best['reward']:.2f} ({best['blocks']} nodes){final}, "
                  f"{out['wall_s']} s wall, {out['cpu_s']} s CPU", flush=True)


if __name__ == "__main__":
    main()
