"""Other ways to derive a DARTS-space one-shot search, judged by the NAS-Bench-301 surrogate.

Usage: python benchmarks/oneshot_derive_variants.py RUN_DIR [RUN_DIR ...] [--variants T0.5,T0.1,nbhd]
       [--samples 100] [--proxy ensemble] [--benchmark ../shared/data/nb301-surrogate]

From each run's final checkpoint (a `nasforge search --space darts --evaluator supernet` with a policy strategy),
for each variant, the super-network scores a pool of candidates on the derivation's validation images and keeps
the best-scored one:
- ``T<x>``: ``--samples`` architectures drawn from the policy sharpened to temperature x (logits / x); T1 is the
  search's own derivation;
- ``nbhd``: the policy's most likely architecture and every architecture one decision away from it; with
  ``--proxy`` also the picks when the super-network's rank is averaged with the proxy's (``derive_proxy``) at
  proxy shares 0.25, 0.5 and 1 (``pick_proxy<share>``).
Prints one JSON line per run and variant: the surrogate's predicted accuracy (percent) of the pick and of the most
likely architecture, the super-network's scores, the pool's top ten as the surrogate sees them, and seconds taken.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from oneshot_darts import surrogate as darts_surrogate  # this script's folder

from nasforge.config import make_run_config
from nasforge.evaluators.supernet import combine_ranks
from nasforge.evaluators.surrogate import VAL_ACCURACY
from nasforge.factory import build_components, resolve
from nasforge.run.rundir import open_store, read_config


def load(run: Path, overrides: list[str]) -> tuple[Any, Any]:
    """The run's components (with ``overrides``) with its final checkpoint loaded."""
    config = resolve(make_run_config(read_config(run).to_yaml_dict(), overrides))
    with open_store(run, readonly=True) as store:
        saved = store.load_checkpoint()
    if saved is None:
        raise SystemExit(f"{run}: no checkpoint")
    parts = build_components(config)
    parts.strategy.load_state_dict(saved[1]["strategy"])
    parts.evaluator.load_state_dict(saved[1]["evaluator"])
    return config, parts


def variant(parts: Any, name: str, samples: int, seed: int, judge: Any, proxy: str = "") -> dict[str, Any]:
    policy, evaluator = parts.strategy.policy, parts.evaluator
    if name.startswith("T"):
        with torch.no_grad():
            for p in policy.parameters():
                p.div_(float(name[1:]))
        derived = evaluator.derive(parts.strategy, samples, seed)
        return {"n_distinct": derived["n_distinct"], "pick": judge(derived["sampled_best"]["arch"]),
                "most_likely": judge(derived["most_likely"]["arch"]), "pick_score": derived["sampled_best"]["score"],
                "most_likely_score": derived["most_likely"]["score"],
                "top10": [judge(r["arch"]) for r in derived["ranked"]]}
    if name != "nbhd":
        raise SystemExit(f"unknown variant {name!r}: T<temperature> or nbhd")
    batches = evaluator.derive_batches()
    with torch.no_grad():
        top = parts.space.make(policy.trace(1).choices[0].tolist())
    pool = [top, *parts.space.neighbours(top)]
    scores = np.array([evaluator.score_on(a, batches) for a in pool])
    order = np.argsort(-scores, kind="stable")
    out = {"n": len(pool), "pick": judge(pool[order[0]]), "most_likely": judge(top),
           "pick_score": float(scores[order[0]]), "most_likely_score": float(scores[0]),
           "most_likely_rank": int(np.flatnonzero(order == 0)[0]) + 1, "top10": [judge(pool[i]) for i in order[:10]]}
    if proxy:
        out.update(proxy_picks(evaluator, pool, scores, proxy, judge))
    return out


def proxy_picks(evaluator: Any, pool: list[Any], scores: np.ndarray, proxy: str, judge: Any) -> dict[str, Any]:
    """The pool's pick when the super-network's rank is averaged with the proxy's (the derivation's own
    combination, the run loaded with ``evaluator.derive_proxy``), at proxy shares 0.25, 0.5 and 1."""
    values = [extra["proxy"] for _, extra in evaluator._proxy_rerank()(pool, list(scores))]
    out: dict[str, Any] = {"proxy": proxy}
    for share in (0.25, 0.5, 1.0):
        out[f"pick_proxy{share:g}"] = judge(pool[int(np.argmax(combine_ranks(list(scores), values, share)))])
    out["most_likely_proxy_rank"] = sum(v > values[0] for v in values) + 1
    return out


def surrogate_judge(space_args: dict[str, Any], benchmark: str) -> Any:
    """The surrogate's predicted accuracy (percent, 2 decimals) of an architecture or its string."""
    space, surrogate = darts_surrogate(space_args, benchmark)

    def judge(arch: Any) -> float:
        return round(100.0 * float(surrogate.predict([space.parse(str(arch))])[0, VAL_ACCURACY]), 2)

    return judge


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--variants", default="T0.5,T0.1,nbhd")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--proxy", default="", help="nbhd also picks with this proxy's rank combined (e.g. ensemble)")
    p.add_argument("--benchmark", default="../shared/data/nb301-surrogate")
    args = p.parse_args()
    overrides = [f"evaluator.derive_proxy={args.proxy}"] if args.proxy else []  # the derivation's own proxy
    for run in args.runs:
        judge = surrogate_judge(read_config(run).space_args, args.benchmark)
        for name in args.variants.split(","):
            config, parts = load(run, overrides)  # afresh: a temperature changes the policy in place
            start = time.time()
            try:
                out = variant(parts, name, args.samples, config.seed, judge, args.proxy)
            finally:
                parts.evaluator.close()
            print(json.dumps({"run": str(run), "variant": name, **out, "s": round(time.time() - start)}), flush=True)


if __name__ == "__main__":
    main()
