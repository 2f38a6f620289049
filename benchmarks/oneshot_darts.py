"""Judge DARTS-space weight-sharing searches with the NAS-Bench-301 surrogate.

Usage: python benchmarks/oneshot_darts.py RUN_DIR [RUN_DIR ...] [--benchmark ../shared/data/nb301-surrogate]
       [--random 200] [--seed 0]
For each run (a `nasforge search --space darts --evaluator supernet ...` directory) prints the surrogate's
predicted accuracy of the derived genotypes (the perturbation-based selection of a `darts` search, the best of the
policy's samples, and its most likely genotype), then
the mean, standard deviation and range of the predictions for `--random` uniformly random genotypes of the same
space (same operation set), the reference a search has to beat.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import nasforge as nf
from nasforge.evaluators.surrogate import VAL_ACCURACY
from nasforge.run.rundir import read_config


def surrogate(space_args: dict, benchmark: str):
    config = nf.RunConfig(space="darts", space_args=space_args, evaluator="surrogate", strategy="rs",
                          benchmark=benchmark)
    space = nf.create_space("darts", **space_args)
    return space, nf.create_evaluator(config, space)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--benchmark", default="../shared/data/nb301-surrogate")
    p.add_argument("--random", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    references: dict[str, str] = {}
    for run in args.runs:
        config = read_config(run)
        space, evaluator = surrogate(config.space_args, args.benchmark)
        derived = json.loads((run / "result.json").read_text()).get("derived", {})
        parts = []
        for key in ("perturbed", "sampled_best", "most_likely"):
            if key in derived:
                value = 100.0 * float(evaluator.predict([space.parse(derived[key]["arch"])])[0, VAL_ACCURACY])
                parts.append(f"{key} {value:.2f}")
        print(f"{run} ({config.strategy}, seed {config.seed}, {config.budget} steps): " + ", ".join(parts))
        key = json.dumps(config.space_args, sort_keys=True)
        if key not in references:
            rng = np.random.default_rng(args.seed)
            scores = 100.0 * evaluator.predict([space.sample(rng) for _ in range(args.random)])[:, VAL_ACCURACY]
            references[key] = (f"{args.random} random genotypes ({key}): mean {scores.mean():.2f}, std "
                               f"{scores.std():.2f}, range {scores.min():.2f}-{scores.max():.2f}")
    for line in references.values():
        print(line)


if __name__ == "__main__":
    main()
