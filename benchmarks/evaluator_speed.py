"""Seconds per query of the evaluators whose speed tests used to assert (timings belong here, not in tests).

Usage: python benchmarks/evaluator_speed.py [--shared ../shared/data]
Prints one line per figure: the NAS-Bench-301 surrogate's milliseconds per query (50 real cells, one core) and
the PTB super-network's seconds per step (5 steps, 32-wide cell). A figure whose data is absent is skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import nasforge as nf


def surrogate_ms(folder: Path, n: int = 50) -> float:
    config = nf.RunConfig(space="darts", evaluator="surrogate", benchmark=str(folder))
    parts = nf.build_components(config)
    rng = np.random.default_rng(0)
    archs = [parts.space.sample(rng) for _ in range(n)]
    parts.evaluator.evaluate(archs[0])  # the session is built on first use
    start = time.perf_counter()
    for arch in archs:
        parts.evaluator.evaluate(arch)
    return 1000 * (time.perf_counter() - start) / n


def ptb_step_s(path: Path, steps: int = 5) -> float:
    config = nf.RunConfig(space="enas-rnn", space_args={"nodes": 4}, evaluator="supernet-lm", strategy="ednas",
                          budget=steps, seed=0, dataset="ptb", data=str(path),
                          evaluator_args={"batch_size": 16, "valid_batch_size": 16,
                                          "model_args": {"emb_size": 32, "hidden_size": 32}})
    parts = nf.build_components(config)
    start = time.perf_counter()
    nf.search(config, components=parts)
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shared", default="../shared/data")
    args = p.parse_args()
    torch.set_num_threads(1)
    shared = Path(args.shared)
    out = {}
    if (shared / "nb301-surrogate").exists():
        out["surrogate_ms_per_query"] = round(surrogate_ms(shared / "nb301-surrogate"), 3)
    if (shared / "ptb.zip").exists():
        out["ptb_supernet_s_per_step"] = round(ptb_step_s(shared / "ptb.zip"), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
