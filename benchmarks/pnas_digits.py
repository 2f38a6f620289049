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
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict

import numpy as np
import torch
from scipy import stats

import nasforge as nf
from nasforge.predictors.ensemble import EnsemblePredictor
from nasforge.run.loop import run_search

TRAIN = ["evaluator.epochs=2", "evaluator.model_args={C: 8, layers: 2}"]


def run(strategy: str, seed: int, args: argparse.Namespace) -> dict:
    overrides = list(TRAIN)
    if strategy == "pnas":
        overrides += [f"strategy.initial={args.initial}", f"strategy.beam={args.beam}"]
    config = nf.make_run_config({"space": "darts", "space_args": {"nodes": args.nodes}, "strategy": strategy,
                                 "evaluator": "train", "dataset": "digits", "budget": args.budget, "seed": seed},
                                overrides)
    parts = nf.build_components(config)
    start = time.time()
    record = run_search(parts.space, parts.strategy, parts.evaluator, args.budget, seed=seed)
    trials = [{"arch": str(t.arch), "blocks": parts.space.blocks(t.arch), "reward": t.reward,
               "test": (t.result.metrics or {}).get("test_accuracy") if t.result else None} for t in record.trials]
    out = {"strategy": strategy, "seed": seed, "budget": args.budget, "nodes": args.nodes, "train": TRAIN,
           "wall_s": round(time.time() - start, 1), "trials": trials}
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
        test = np.array([b["test"] for b in best], dtype=float)
        wall = np.mean([r["wall_s"] for r in rs])
        print(f"{name}: best validation accuracy {val.mean():.2f} +- {val.std():.2f}, its test accuracy "
              f"{test.mean():.2f} +- {test.std():.2f} ({len(rs)} seeds, {rs[0]['budget']} networks each, "
              f"{wall:.0f} s per run)")
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
    space = nf.create_space("darts", nodes=nodes, min_blocks=1)
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
            print(f"{strategy} seed {seed}: best validation {best['reward']:.2f} ({best['blocks']} nodes), "
                  f"{out['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
