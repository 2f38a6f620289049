"""The one-shot derivation with a training-free proxy combined (`evaluator.derive_proxy`), judged by the table.

Usage: python benchmarks/oneshot_nb201_proxy.py RUN_DIR [RUN_DIR ...] [--table ../shared/data/nb201-cifar10.csv]
       [--proxy ensemble] [--samples 100]
For each NAS-Bench-201 one-shot run (`nasforge search --space nb201 --evaluator supernet ...`) this derives again
from the last checkpoint exactly as `nasforge derive RUN --set evaluator.derive_proxy=PROXY` does (the same policy
samples, the same validation images, the same proxy scores) without writing to the run, and prints one line per
run: the number of distinct candidates, their best and mean `test_acc_200`, the pick by the shared weights alone
(the plain derivation), by the proxy alone and by their rank average (the proxy-combined derivation), each as
`test_acc_200` / `val_acc_200`, and Kendall tau of each ranking against `test_acc_200` / `val_acc_200` over the
candidates. Seconds: the scoring by the shared weights and by the proxy (reference sample included).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

import nasforge as nf
from nasforge.config import make_run_config
from nasforge.evaluators.supernet import derive_from_policy
from nasforge.evaluators.tabular import Table
from nasforge.factory import build_components, resolve
from nasforge.run.rundir import open_store, read_config


def judge(run_dir: Path, table: Table, proxy: str, n_samples: int) -> str:
    base = read_config(run_dir)
    config = resolve(make_run_config(base.to_yaml_dict(), [f"evaluator.derive_proxy={proxy}"], source=str(run_dir)))
    with open_store(run_dir, readonly=True) as store:
        n_done, state = store.load_checkpoint()
    parts = build_components(config)
    evaluator, space = parts.evaluator, parts.space
    parts.strategy.load_state_dict(state["strategy"])
    evaluator.load_state_dict(state["evaluator"])
    timing = {"weights": 0.0, "proxy": 0.0}
    batches = evaluator.derive_batches()  # first, as the derivation: the same images

    def score(arch):
        start = time.perf_counter()
        value = evaluator.score_on(arch, batches)
        timing["weights"] += time.perf_counter() - start
        return value, {}

    start = time.perf_counter()
    rerank = evaluator._proxy_rerank()  # the derivation's own combination
    timing["proxy"] += time.perf_counter() - start
    seen: dict = {}

    def spy(archs, scores):
        start = time.perf_counter()
        out = rerank(archs, scores)
        timing["proxy"] += time.perf_counter() - start
        seen.update(archs=archs, combined=out)
        return out

    try:
        derived = derive_from_policy(space, parts.strategy, score, n_samples, config.seed, rerank=spy)
    finally:
        evaluator.close()
    n = derived["n_distinct"]  # the pool's first n are the sampled candidates; a most likely cell outside them last
    archs = seen["archs"][:n]
    weights = np.array([extra["supernet"] for _, extra in seen["combined"][:n]])
    by_proxy = np.array([extra["proxy"] for _, extra in seen["combined"][:n]])
    combined = np.array([value for value, _ in seen["combined"][:n]])
    test = np.array([table.value(a, "test_acc_200") for a in archs])
    val = np.array([table.value(a, "val_acc_200") for a in archs])
    assert str(archs[int(np.argmax(combined))]) == derived["sampled_best"]["arch"]  # first of equals, as derived
    cols = []
    for name, key in (("shared weights", weights), ("proxy", by_proxy), ("combined", combined)):
        pick = int(np.argmax(key))
        cols.append(f"{name} pick {test[pick]:.2f} / {val[pick]:.2f}, tau {kendalltau(key, test).statistic:.3f}"
                    f" / {kendalltau(key, val).statistic:.3f}")
    return (f"{run_dir} ({config.strategy}, seed {config.seed}, {n_done} steps): {n} candidates, best {test.max():.2f}"
            f" mean {test.mean():.2f}; " + "; ".join(cols)
            + f"; seconds: shared weights {timing['weights']:.0f}, proxy {timing['proxy']:.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--table", default="../shared/data/nb201-cifar10.csv")
    p.add_argument("--proxy", default="ensemble")
    p.add_argument("--samples", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    table = Table(args.table, nf.create_space("nb201"))
    for run in args.runs:
        print(judge(run, table, args.proxy, args.samples), flush=True)


if __name__ == "__main__":
    main()
