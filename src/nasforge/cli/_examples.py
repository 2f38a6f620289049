"""Examples shown at the end of each command's ``--help`` (argparse epilogs)."""

from __future__ import annotations

import argparse
from typing import Any

EXAMPLES = {
    "search": """examples:
  nasforge search --space nb201 --benchmark ../shared/data/nb201-cifar10.csv --strategy re --budget 200
      black-box search on a tabular benchmark (seconds)
  nasforge search --space nb201 --evaluator train --dataset digits --strategy lanas --budget 50 \\
      --set evaluator.epochs=4 --out runs/x      real training on scikit-learn's digits (shipped)
  nasforge search --space nb201 --evaluator supernet --strategy ednas --dataset cifar10 \\
      --data ../shared/data/cifar10-jpeg.tar.gz --epochs 10      weight sharing (one-shot)
  nasforge search --resume runs/x --budget 100   continue a killed or finished run
  nasforge show strategy re                      a strategy's settings (--set strategy.KEY=VALUE)""",
    "bench": """examples:
  nasforge bench --space nb201 --benchmark ../shared/data/nb201-cifar10.csv \\
      --strategies rs,re,bo,lanas --seeds 30 --budget 300 --out runs/bench
  nasforge bench --resume runs/bench             finish the seeds a killed bench did not
  (summary.json, curves.png and a table per budget are written to --out)""",
    "train": """examples:
  nasforge train --from runs/x --epochs 30 --out runs/x-final     the best of a search, from scratch
  nasforge train --space nb201 --arch "|nor_conv_3x3~0|+|...|" --dataset cifar10 \\
      --data ../shared/data/cifar10-jpeg.tar.gz --epochs 200 --set model_args.C=16""",
    "derive": """examples:
  nasforge derive runs/oneshot --samples 200                 derive again with more samples
  nasforge derive runs/oneshot --retrain-top 5 --retrain-epochs 5   retrain the 5 best briefly and pick
  nasforge derive runs/gdas --set evaluator.derive_method=perturb     perturbation-based selection
  nasforge derive runs/darts --nproc 2                          the same work split over 2 processes
  nasforge derive runs/running --no-write                       a search still running: print, write nothing""",
    "export": """examples:
  nasforge export runs/x --format json --out genotype.json
  nasforge export runs/x-final --format onnx --out model.onnx""",
}


def with_examples(name: str) -> dict[str, Any]:
    """``add_parser`` keyword arguments that show a command's examples at the end of its ``--help``."""
    return {"epilog": EXAMPLES[name], "formatter_class": argparse.RawDescriptionHelpFormatter}
