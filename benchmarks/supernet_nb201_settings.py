"""How a super-network's training settings change its ranking of NAS-Bench-201 cells, without any policy.

Usage: python benchmarks/supernet_nb201_settings.py [--steps 8000] [--archs 300] [--chunks 2] [--deiso]
       [--init RUN [--split] [--lr 0.01]] [--set evaluator.KEY=VALUE ...]
       [--data ../shared/data/cifar10-jpeg.tar.gz] [--table ../shared/data/nb201-cifar10.csv]

Without ``--init``: a fresh super-network with the protocol's settings (``benchmarks/oneshot_nb201.sh``: 16x16 images,
C=16, one cell per stage; ``--set`` changes them) is trained for ``--steps`` shared-weight steps on uniformly random
cells (ENAS' and EDNAS' warm-up, RSPS), with the evaluator's own schedule (cosine over the steps). ``--deiso`` draws
the cells uniformly over distinct computations instead of over the 15,625 cell strings: a cell whose only live path
is one convolution has hundreds of strings (dead edges, "none" inputs), so uniform strings train it hundreds of times
more often than a cell with one string.

With ``--init RUN``: the super-network of a search's last checkpoint is trained ``--steps`` more on uniformly random
cells (cosine from ``--lr`` to 0.001); ``--split`` makes it a few-shot super-network first (Zhao et al. 2021): five
copies, one per operation of edge 1<-0, each trained for a fifth of the steps on cells with that operation there and
scoring those cells.

Then ``--archs`` uniformly random distinct cells are scored on ``--chunks`` x 1,024 validation images (the same for
every cell, as the derivation scores) and compared with the table's ``test_acc_200``: Kendall tau, and the mean
``test_acc_200`` of the super-network's top 10 / 25 (for scale: the mean of all of them), and how its errors go
with the operations a cell has (the same for the table's 12-epoch column). One core; at 16x16 about 4 ms a step
and 0.6 s a cell scored.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.stats import kendalltau, rankdata

import nasforge as nf
from nasforge.arch import Architecture
from nasforge.config import RunConfig, make_run_config
from nasforge.evaluators.supernet import SupernetEvaluator, _Child
from nasforge.evaluators.tabular import Table
from nasforge.run.rundir import open_store, read_config
from nasforge.spaces.base import SearchSpace
from nasforge.train.loop import Stepper, TrainConfig


def computation(space: SearchSpace, choices: tuple[int, ...]) -> str:
    """What a cell computes, as an expression of its input: dead edges dropped, sums sorted."""
    ops = space.decisions[0].labels
    edges = [tuple(int(v) for v in d.name.removeprefix("edge_").split("<-")) for d in space.decisions]  # (node, src)
    incoming = {node: [(ops[c], src) for (n, src), c in zip(edges, choices) if n == node and ops[c] != "none"]
                for node, _ in edges}
    memo: dict[int, str | None] = {0: "x"}

    def expression(node: int) -> str | None:
        if node not in memo:
            terms = sorted(f"{op}({expression(src)})" for op, src in incoming[node] if expression(src) is not None)
            memo[node] = "+".join(terms) if terms else None
        return memo[node]

    return expression(max(node for node, _ in edges)) or "zero"


def protocol_config(data: str, steps: int, overrides: list[str]) -> RunConfig:
    base = {"space": {"name": "nb201"}, "strategy": {"name": "rs"}, "dataset": "cifar10", "data": data,
            "budget": steps, "seed": 0,
            "evaluator": {"name": "supernet", "model_args": {"C": 16, "N": 1}, "resolution": 16}}
    return make_run_config(base, overrides, source="supernet_nb201_settings")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--archs", type=int, default=300)
    p.add_argument("--chunks", type=int, default=2)
    p.add_argument("--deiso", action="store_true")
    p.add_argument("--init", type=Path)
    p.add_argument("--split", action="store_true")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    p.add_argument("--table", default="../shared/data/nb201-cifar10.csv")
    args = p.parse_args()
    if args.split and args.init is None:
        p.error("--split continues a search's super-network: give --init RUN")
    torch.set_num_threads(1)
    space = nf.create_space("nb201")
    table = Table(args.table, space)
    config = read_config(args.init) if args.init else protocol_config(args.data, args.steps, args.overrides)
    evaluator = nf.create_evaluator(config, space)
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    if args.init is None:
        draw = distinct_computations(space) if args.deiso else space.sample
        for _ in range(args.steps):
            evaluator.train_step(draw(rng))
        nets = [evaluator.supernet]
    else:
        with open_store(args.init) as store:
            saved = store.load_checkpoint()
        if saved is None:
            raise SystemExit(f"{args.init}: no checkpoint")
        evaluator.load_state_dict(saved[1]["evaluator"])
        nets = [copy.deepcopy(evaluator.supernet) for _ in range(5 if args.split else 1)]
        for k, net in enumerate(nets):
            continue_training(evaluator, net, args.steps // len(nets), args.lr, rng, k if args.split else None)
    trained = time.perf_counter() - start
    evaluator.config.derive_batch = args.chunks * evaluator.config.derive_chunk
    batches = evaluator.derive_batches()

    def score(arch: Architecture) -> float:
        evaluator.child = _Child(nets[arch.choices[0]] if len(nets) > 1 else nets[0])
        return evaluator.score_on(arch, batches)

    cells = np.random.default_rng(0)
    archs = sorted({space.sample(cells) for _ in range(args.archs)}, key=str)
    scores = np.array([score(a) for a in archs])
    truth = np.array([table.value(a, "test_acc_200") for a in archs])
    order = np.argsort(-scores)
    print(f"{len(archs)} random cells (mean test_acc_200 {truth.mean():.2f}), {args.steps} steps "
          f"({trained:.0f} s): Kendall tau {kendalltau(scores, truth).statistic:.3f}, super-network's top 10 "
          f"{truth[order[:10]].mean():.2f}, top 25 {truth[order[:25]].mean():.2f}")
    print(f"  rank error by operation: {bias(space, archs, scores, truth)}")
    reference = np.array([table.value(a, "val_acc_12") for a in archs]) if "val_acc_12" in table.columns else None
    if reference is not None:
        print(f"  for scale, the table's val_acc_12: Kendall tau {kendalltau(reference, truth).statistic:.3f}, "
              f"rank error by operation: {bias(space, archs, reference, truth)}")


def distinct_computations(space: SearchSpace) -> Callable[[np.random.Generator], Architecture]:
    """A sampler drawing a computation uniformly, then one of its cells."""
    groups: dict[str, list[Architecture]] = {}
    for arch in space.enumerate():
        groups.setdefault(computation(space, arch.choices), []).append(arch)
    distinct = list(groups.values())

    def draw(rng: np.random.Generator) -> Architecture:
        group = distinct[rng.integers(len(distinct))]
        return group[rng.integers(len(group))]

    return draw


def bias(space: SearchSpace, archs: list[Architecture], scores: np.ndarray, truth: np.ndarray) -> str:
    """Correlation of each operation's count in a cell with the cell's rank by ``scores`` minus its rank by
    ``truth`` (positive: cells with more of it are ranked too high)."""
    error = rankdata(scores) - rankdata(truth)
    labels = space.decisions[0].labels
    counts = np.array([[sum(c == i for c in a.choices) for i in range(len(labels))] for a in archs])
    return ", ".join(f"{op} {np.corrcoef(counts[:, i], error)[0, 1]:+.2f}" for i, op in enumerate(labels))


def continue_training(evaluator: SupernetEvaluator, net: torch.nn.Module, steps: int, lr: float,
                      rng: np.random.Generator, edge_op: int | None) -> None:
    """``steps`` shared-weight steps of ``net`` (cosine from ``lr`` to 0.001) on uniformly random cells, with
    ``edge_op`` on edge 1<-0 when given."""
    if steps < 1:
        return
    evaluator.child = _Child(net)
    schedule = TrainConfig(epochs=1, lr=lr, lr_min=0.001, batch_size=evaluator.config.batch_size)
    evaluator.stepper = Stepper(evaluator.child, schedule, steps, evaluator.device)
    for _ in range(steps):
        choices = list(evaluator.space.sample(rng).choices)
        if edge_op is not None:
            choices[0] = edge_op
        evaluator.train_step(evaluator.space.make(choices))


if __name__ == "__main__":
    main()
