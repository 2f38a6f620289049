"""Judge NAS-Bench-201 weight-sharing searches with the table: derived cells' accuracies and the ranking quality.

Usage: python benchmarks/oneshot_nb201.py RUN_DIR [RUN_DIR ...] [--table ../shared/data/nb201-cifar10.csv]
       [--archs 100] [--val-images 4096]
For each run (a `nasforge search --space nb201 --evaluator supernet ...` directory) prints one line with the
`test_acc_200` (and `val_acc_200`) of the derived cells (the perturbation-based selection of a `darts` search, the
best of the policy's samples, its most likely cell, and the pick of
`nasforge derive RUN --retrain-top K` if it ran: for its best 3, 5, 10 candidates; earlier derivations from
`nasforge derive`, each with its settings, e.g. `(evaluator.derive_proxy=ensemble)`), then the Kendall tau
between the super-network's validation accuracy (shared weights of the last checkpoint, `--val-images` validation
images in chunks of 1,024, as the derivation scores) and `test_acc_200` over `--archs` uniformly random cells
(`--archs 0` skips it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

import nasforge as nf
from nasforge.evaluators.tabular import Table
from nasforge.run.rundir import open_store, read_config


def retrained_summary(derived: dict, space, table: Table) -> list[str]:
    """What retraining the best-scored candidates (`nasforge derive RUN --retrain-top K`) picked: for the best
    k of them, the `test_acc_200` of the one with the best retrained validation accuracy; and Kendall tau of the
    shared weights' and the retraining's scores over the candidates."""
    retrained = derived.get("retrained")
    if not retrained:
        return []
    cands = [c for c in retrained["candidates"] if c["retrained"] is not None]  # None: the training failed
    truth = [table.value(space.parse(c["arch"]), "test_acc_200") for c in cands]
    picks = []
    for k in sorted({3, 5, 10, len(cands)}):
        if k <= len(cands):
            best = max(range(k), key=lambda i: cands[i]["retrained"])  # first of equals, as the library
            picks.append(f"top {k} {truth[best]:.2f}")
    tau_shared = kendalltau([c["score"] for c in cands], truth).statistic
    tau_retrained = kendalltau([c["retrained"] for c in cands], truth).statistic
    return [f"retrained ({retrained['epochs']} epochs) picks " + ", ".join(picks)
            + f" (best of the {len(cands)} {max(truth):.2f}; tau over them: shared {tau_shared:.3f}, "
            f"retrained {tau_retrained:.3f})"]


def settings(derived: dict) -> str:
    """How a derivation was made: `nasforge derive`'s overrides (e.g. the proxy combined), "plain" without."""
    return "(" + (" ".join(derived.get("overrides") or []) or "plain") + ")"


def judge(run_dir: Path, table: Table, n_archs: int, val_images: int) -> str:
    config = read_config(run_dir)
    result = json.loads((run_dir / "result.json").read_text())
    space = nf.create_space("nb201")
    derived = result.get("derived", {})
    parts = [settings(derived)] if derived.get("overrides") else []
    for key in ("perturbed", "sampled_best", "most_likely"):
        if key in derived:
            arch = space.parse(derived[key]["arch"])
            parts.append(f"{key} test_acc_200 {table.value(arch, 'test_acc_200'):.2f} "
                         f"(val_acc_200 {table.value(arch, 'val_acc_200'):.2f})")
    parts += retrained_summary(derived, space, table)
    for i, earlier in enumerate(result.get("derived_history", [])):  # earlier derivations (`nasforge derive`)
        if "sampled_best" in earlier:
            acc = table.value(space.parse(earlier["sampled_best"]["arch"]), "test_acc_200")
            parts.append(f"derivation {i + 1}{' ' + settings(earlier) if 'checkpoint' in earlier else ''} "
                         f"sampled_best {acc:.2f}")
    if n_archs == 0:
        return f"{run_dir}: " + ", ".join(parts)
    evaluator = nf.create_evaluator(config, space)
    with open_store(run_dir) as store:
        checkpoint = store.load_checkpoint()
    if checkpoint is None:
        return f"{run_dir}: " + ", ".join(parts) + " (no checkpoint for the ranking)"
    evaluator.load_state_dict(checkpoint[1]["evaluator"])
    evaluator.config.derive_batch = val_images
    batches = evaluator.derive_batches()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(n_archs)]
    shared = [evaluator.score_on(a, batches) for a in archs]
    truth = [table.value(a, "test_acc_200") for a in archs]
    tau = kendalltau(shared, truth).statistic
    return (f"{run_dir} ({config.strategy}, seed {config.seed}, {checkpoint[0]} steps): " + ", ".join(parts)
            + f"; Kendall tau over {n_archs} random cells {tau:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--table", default="../shared/data/nb201-cifar10.csv")
    p.add_argument("--archs", type=int, default=100)
    p.add_argument("--val-images", type=int, default=4096)
    args = p.parse_args()
    torch.set_num_threads(1)
    table = Table(args.table, nf.create_space("nb201"))
    for run in args.runs:
        print(judge(run, table, args.archs, args.val_images))


if __name__ == "__main__":
    main()
