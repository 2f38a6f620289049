"""What a run directory costs: every strategy's NB201 search into a run directory against the same search in memory.

For each strategy, the same seeded search (``--budget`` evaluations on the NAS-Bench-201 table) runs
``--repeats`` times in memory (``RunStore(None)``) and as many times into a fresh run directory
(``prepare_run_dir``: config and meta files, the SQLite record with its events, sparse strategy-state saves,
``result.json``, closing the store). Space, evaluator and strategy are built before the clock starts (the
table is read once; NASES pre-trains its autoencoder in its constructor), so the times are the search's own.
The two kinds of run alternate, the fastest of each is reported, and both must give the same trajectory.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/store_cost.py --table ../shared/data/nb201-cifar10.csv
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from nasforge.api import create_evaluator, create_space, create_strategy
from nasforge.config import make_run_config
from nasforge.run.loop import run_search
from nasforge.run.rundir import prepare_run_dir, result_dict, write_result
from nasforge.run.store import RunStore

STRATEGIES = ("rs", "re", "reinforce", "ednas", "nases", "lanas", "bo")


def one(name: str, config, space, evaluator, out: Path | None) -> tuple[float, list[str]]:
    """Seconds of one search (into ``out``, or in memory) and its trajectory."""
    strategy = create_strategy(name, space, config.seed)
    start = time.perf_counter()
    store = prepare_run_dir(out, config) if out is not None else RunStore(None)
    record = run_search(space, strategy, evaluator, config.budget, store=store, seed=config.seed)
    result = result_dict(config, record, evaluator.optimum())
    if out is not None:
        write_result(out, result)
    store.close()
    return time.perf_counter() - start, [t.arch.text for t in record.trials]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True, help="NAS-Bench-201 CSV (nb201-cifar10.csv)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"budget {args.budget}, best of {args.repeats}")
    print("| strategy | in memory (s) | into a run directory (s) | ratio |")
    print("|---|---:|---:|---:|")
    rows = []
    space = create_space("nb201")
    for name in args.strategies.split(","):
        config = make_run_config({"space": "nb201", "strategy": name, "evaluator": "tabular",
                                  "benchmark": str(Path(args.table).resolve()), "budget": args.budget,
                                  "seed": args.seed})
        evaluator = create_evaluator(config, space)
        create_strategy(name, space, args.seed)  # NASES: pre-train (and cache) the autoencoder before timing
        memory, disk = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.repeats):
                secs, in_memory = one(name, config, space, evaluator, None)
                memory.append(secs)
                secs, on_disk = one(name, config, space, evaluator, Path(tmp) / f"run{rep}")
                disk.append(secs)
                assert on_disk == in_memory, f"{name}: the run directory changed the search"
        row = {"strategy": name, "memory_s": min(memory), "run_dir_s": min(disk), "ratio": min(disk) / min(memory),
               "memory_all": memory, "run_dir_all": disk}
        rows.append(row)
        print(f"| {name} | {row['memory_s']:.2f} | {row['run_dir_s']:.2f} | {row['ratio']:.2f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
