"""Run directories: resolved config, package version, the SQLite record, and ``result.json``."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig, load_yaml, make_run_config
from ..errors import RunDirError
from .loop import SearchRecord
from .store import RunStore

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
DB_FILE = "run.db"
RESULT_FILE = "result.json"


def _version() -> str:
    from .. import __version__

    return __version__


def _first_difference(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str | None:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diff = _first_difference(va, vb, f"{prefix}{key}.")
            if diff:
                return diff
        elif va != vb:
            return f"{prefix}{key}: {va!r} in the run, {vb!r} now"
    return None


def prepare_run_dir(out: str | Path, config: RunConfig) -> RunStore:
    """Create ``out`` for ``config``, or reopen it if it holds a run of the very same config."""
    out = Path(out)
    wanted = config.to_yaml_dict()
    if (out / CONFIG_FILE).exists():
        existing = read_config(out).to_yaml_dict()
        # threads say how this machine runs the search, not what the run is: a resume may use other ones
        diff = _first_difference({**existing, "threads": None}, {**wanted, "threads": None})
        if diff:
            raise RunDirError(
                f"{out}: holds a run with another configuration ({diff}); use --resume {out} or another --out"
            )
        log.info("%s holds a run of this configuration: continuing it", out)
        return RunStore(out / DB_FILE)
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"{out}: exists and is not a nasforge run directory (no {CONFIG_FILE}); choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{out}: cannot create run directory ({exc.strerror})") from None
    _write_atomic(out / CONFIG_FILE, yaml.safe_dump(wanted, sort_keys=False))
    meta: dict[str, object] = {
        "nasforge_version": _version(),
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    try:
        import torch

        meta["torch"] = torch.__version__
        meta["threads"] = torch.get_num_threads()  # per worker with a parallel executor (nasforge.threads)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    _write_atomic(out / META_FILE, json.dumps(meta, indent=2))
    return RunStore(out / DB_FILE)


def read_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise RunDirError(f"{run_dir}: not a nasforge run directory (no {CONFIG_FILE})")
    return make_run_config(load_yaml(path), source=str(path))


def open_store(run_dir: str | Path) -> RunStore:
    path = Path(run_dir) / DB_FILE
    if not path.exists():
        raise RunDirError(f"{run_dir}: no {DB_FILE} in the run directory")
    return RunStore(path)


def result_dict(config: RunConfig, record: SearchRecord, optimum: Any = None) -> dict[str, Any]:
    """The content of ``result.json``."""
    best = record.best
    out: dict[str, Any] = {
        "space": config.space,
        "strategy": config.strategy,
        "evaluator": config.evaluator,
        "seed": config.seed,
        "budget": config.budget,
        "n_evaluations": record.n_evaluations,
        "complete": record.n_evaluations >= config.budget,
        "best": None if best is None else {
            "arch": str(best.arch),
            "reward": best.reward,
            "test_accuracy": best.result.test_accuracy,
            "metrics": best.result.metrics,
        },
        "total_cost": sum(t.result.cost for t in record.trials),
        "n_failed": sum(t.result.failed for t in record.trials),
        "n_cached": sum(t.cached for t in record.trials),
        "n_retried_attempts": sum(t.attempts for t in record.trials),
        "nasforge_version": _version(),
        "history": record.history(),
    }
    if optimum is not None:
        arch, res = optimum
        out["optimum"] = {"arch": str(arch), "reward": res.reward, "test_accuracy": res.test_accuracy}
    return out


def read_result(run_dir: str | Path) -> dict[str, Any]:
    """``result.json`` of a run directory ({} before the run wrote one); unreadable JSON names the file."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc})") from None


def derived_pick(derived: dict[str, Any]) -> dict[str, Any] | None:
    """The architecture a one-shot search's derivation settles on: the best of its retrained candidates
    (``nasforge derive --retrain-top``) if any, else the best-scored policy sample, else the policy's most likely."""
    return derived.get("retrained_best") or derived.get("sampled_best") or derived.get("most_likely")


def write_result(run_dir: str | Path, data: dict[str, Any]) -> Path:
    path = Path(run_dir) / RESULT_FILE
    _write_atomic(path, json.dumps(data, indent=2, default=float))
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
