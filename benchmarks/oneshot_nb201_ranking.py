"""How well a NAS-Bench-201 super-network ranks cells, and what picking by its scores would find.

Usage: python benchmarks/oneshot_nb201_ranking.py RUN_DIR [--table ../shared/data/nb201-cifar10.csv]
       [--archs 1200] [--chunks 4]
Scores `--archs` uniformly random cells (distinct) with the shared weights of the run's last checkpoint on `--chunks`
validation chunks of 1,024 images each (the same for every cell), then prints, for each chunk alone and for all of
them: Kendall tau against `test_acc_200`, and the mean `test_acc_200` of the best-scored cell of 500 random pools of 100
(what a derivation from a uniform policy would pick); and for all chunks the mean `test_acc_200` and the share of cells
>= 93.0 among the super-network's top 10 / 50 / 100. For scale, the same numbers for the table's own low-fidelity
column (`--reference`, default `val_acc_12`: each cell trained alone for 12 epochs), when the table has it. One core,
about 1 s a cell at 16x16 with 4 chunks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

import nasforge as nf
from nasforge.evaluators.tabular import Table
from nasforge.run.rundir import open_store, read_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", type=Path)
    p.add_argument("--table", default="../shared/data/nb201-cifar10.csv")
    p.add_argument("--archs", type=int, default=1200)
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--reference", default="val_acc_12", help="table column to rank the same cells by, for scale")
    args = p.parse_args()
    torch.set_num_threads(1)
    space = nf.create_space("nb201")
    table = Table(args.table, space)
    evaluator = nf.create_evaluator(read_config(args.run), space)
    with open_store(args.run) as store:
        checkpoint = store.load_checkpoint()
    if checkpoint is None:
        raise SystemExit(f"{args.run}: no checkpoint")
    evaluator.load_state_dict(checkpoint[1]["evaluator"])
    evaluator.config.derive_batch = args.chunks * evaluator.config.derive_chunk  # distinct images, as the derivation scores
    batches = evaluator.derive_batches()
    rng = np.random.default_rng(0)
    archs = sorted({space.sample(rng) for _ in range(args.archs)}, key=str)
    scores = np.array([[evaluator.score(a, b) for b in batches] for a in archs])
    truth = np.array([table.value(a, "test_acc_200") for a in archs])
    pools = [rng.choice(len(archs), 100, replace=False) for _ in range(500)]
    print(f"{args.run}: {len(archs)} distinct random cells, checkpoint after {checkpoint[0]} steps; "
          f"{100 * np.mean(truth >= 93):.1f}% of them >= 93.0")

    def line(s: np.ndarray) -> str:
        picked = np.mean([truth[pool[np.argmax(s[pool])]] for pool in pools])
        return f"Kendall tau {kendalltau(s, truth).statistic:.3f}, best-scored of 100 random cells {picked:.2f}"

    for c in range(args.chunks):
        print(f"  chunk {c + 1} alone ({evaluator.config.derive_chunk} images): {line(scores[:, c])}")
    print(f"  all {args.chunks * evaluator.config.derive_chunk} images: {line(scores.mean(1))}")
    tops(scores.mean(1), truth, "super-network's")
    if args.reference in table.columns:
        reference = np.array([table.value(a, args.reference) for a in archs])
        print(f"  for scale, the table's {args.reference}: {line(reference)}")
        tops(reference, truth, f"{args.reference}'s")


def tops(scores: np.ndarray, truth: np.ndarray, name: str) -> None:
    order = np.argsort(-scores)
    for top in (10, 50, 100):
        best = truth[order[:top]]
        print(f"  {name} top {top}: mean test_acc_200 {best.mean():.2f}, {100 * np.mean(best >= 93):.0f}% >= 93.0")


if __name__ == "__main__":
    main()
