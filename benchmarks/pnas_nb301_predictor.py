"""PNAS' predictor against BO's Gaussian process on real cells: NAS-Bench-301's 500 trained DARTS cells.

Each split trains on 100 cells and ranks the other 400 by their real validation accuracy (the ``val_accuracy``
of ``nb301-real-500.jsonl``, shipped with the surrogate); one line per model and split, then the mean:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pnas_nb301_predictor.py [--data DIR] [--splits 5]

Models: the PNAS ensemble (5 members on folds) of LSTMs over block tokens and of MLPs over the one-hot
encoding, with PNAS' default settings (``fit_steps`` = 150 from scratch), and ``bo``'s GP as the strategy fits it
with its defaults (``bo-gp``: Matern 5/2 with one length-scale per decision, the additive and pairwise terms and
the terms on operation counts, Gaussian rank targets) and with the stationary kernel alone (``bo-gp-stationary``,
``bo``'s model before issue 16), all on the same splits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

import nasforge as nf
from nasforge.predictors.ensemble import EnsemblePredictor
from nasforge.predictors.gp import normalise, single_threaded_blas
from nasforge.strategies.bo import BayesianOptimisation, BOConfig
from nasforge.strategies.pnas import PNASConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="/work/shared/data/nb301-surrogate")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--train", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = nf.create_space("darts")
    rows = [json.loads(line) for line in (Path(args.data) / "nb301-real-500.jsonl").read_text().splitlines()]
    archs = [space.from_genotype(r["normal"], r["reduce"]) for r in rows]
    y = np.array([r["val_accuracy"] for r in rows])
    defaults = PNASConfig()
    scores: dict[str, list[tuple[float, float]]] = {}
    for split in range(args.splits):
        order = np.random.default_rng(split).permutation(len(archs))
        tr, te = order[: args.train], order[args.train :]
        preds = {}
        for kind in ("lstm", "mlp"):
            start = time.process_time()
            p = EnsemblePredictor(space, torch.Generator().manual_seed(split), kind, defaults.ensemble,
                                  defaults.hidden, lr=defaults.lr)
            p.fit([archs[i] for i in tr], y[tr], defaults.fit_steps)
            preds[f"pnas-{kind}"] = (p.predict([archs[i] for i in te]), time.process_time() - start)
        z = normalise(y[tr], "rank")
        for name, config in (("bo-gp", BOConfig()), ("bo-gp-stationary", BOConfig(additive=False, count_prior=0))):
            start = time.process_time()
            with single_threaded_blas():
                bo = BayesianOptimisation(space, config)
                features = bo.encode(archs)
                gp = bo.new_gp()
                gp.fit(features[tr], z)
                mean, _ = gp.predict(z, features[te])
            preds[name] = (mean, time.process_time() - start)
        for name, (pred, cpu) in preds.items():
            rho = stats.spearmanr(pred, y[te]).statistic
            tau = stats.kendalltau(pred, y[te]).statistic
            scores.setdefault(name, []).append((rho, tau))
            print(f"split {split} {name}: Spearman {rho:.3f}, Kendall {tau:.3f} ({cpu:.1f} s CPU to fit and rank)",
                  flush=True)
    for name, vals in scores.items():
        v = np.array(vals)
        print(f"{name}: Spearman {v[:, 0].mean():.3f} +- {v[:, 0].std():.3f}, Kendall {v[:, 1].mean():.3f} "
              f"+- {v[:, 1].std():.3f} over {len(v)} splits of {args.train} train / {len(archs) - args.train} test")


if __name__ == "__main__":
    main()
