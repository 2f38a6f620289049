"""Run directories: resolved config, package version, the SQLite record, and ``result.json``.

A process that writes to a run directory (a search into it, a resume) holds its lock (``lock``, an
``flock`` released when the store closes or the process ends), so a second one gets a clear error
instead of a corrupted record. Readers (reports, ``policy``, ``lanas-tree``) open the record read-only
and take no lock. ``config.yaml`` records paths (benchmark, data, caches) absolute, so a run directory
works from any working directory.
"""

from __future__ import annotations

import dataclasses
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
from ..errors import ConfigError, RunDirError
from ..objectives import is_infeasible, pareto_front, parse_objectives
from .loop import SearchRecord
from .store import RunStore

try:  # POSIX; elsewhere run directories are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
DB_FILE = "run.db"
RESULT_FILE = "result.json"
LOCK_FILE = "lock"
#: RunConfig fields that are paths (recorded absolute); and such keys of the component arguments
PATH_FIELDS = ("benchmark", "data", "cache_dir")


class RunLock:
    """The exclusive lock of a run directory for the one process writing to it (``release()`` or exit ends it)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.fd: int | None = None
        if fcntl is None:  # pragma: no cover
            return
        path = Path(run_dir) / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"{run_dir}: cannot write to the run directory ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RunDirError(f"{run_dir}: in use by another nasforge process{f' (pid {holder})' if holder else ''}"
                              "; wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _absolute(path: Any) -> Any:
    return os.path.abspath(os.path.expanduser(path)) if isinstance(path, str) and path else path


def absolute_paths(config: RunConfig) -> RunConfig:
    """``config`` with its paths (benchmark, data, cache directories) made absolute against the working directory."""
    changes: dict[str, Any] = {f: _absolute(getattr(config, f)) for f in PATH_FIELDS}
    for comp in ("space_args", "strategy_args", "evaluator_args"):
        args = getattr(config, comp)
        if any(k in args for k in PATH_FIELDS):
            changes[comp] = {k: _absolute(v) if k in PATH_FIELDS else v for k, v in args.items()}
    return dataclasses.replace(config, **changes)


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


def check_out(out: str | Path, writer: bool = True) -> None:
    """Fail early (before a command shows progress) if ``out`` cannot take a run: a file, a run in use, or a
    record that is damaged or was emptied.

    ``writer=False`` is for a process that will only read the run: a data-parallel replica other than rank 0. It
    does not try the lock, which rank 0 tries at the same moment: one of them would find it taken."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory; choose another --out")
    if writer and (out / LOCK_FILE).exists():
        RunLock(out).release()
    if (out / CONFIG_FILE).exists():
        _check_record_kept(out)
        if (out / DB_FILE).exists():
            with open_store(out, readonly=True) as store:
                _check_not_emptied(out, store)


def check_same_config(out: str | Path, config: RunConfig) -> None:
    """Fail if ``out`` holds a run of another configuration than ``config`` (nothing to check without one)."""
    out = Path(out)
    if not (out / CONFIG_FILE).exists():
        return
    existing = read_config(out).to_yaml_dict()
    wanted = absolute_paths(config).to_yaml_dict()
    # threads say how this machine runs the search, not what the run is: a resume may use other ones
    diff = _first_difference({**existing, "threads": None}, {**wanted, "threads": None})
    if diff:
        raise RunDirError(f"{out}: holds a run with another configuration ({diff}); use --resume {out} or another --out")


def prepare_run_dir(out: str | Path, config: RunConfig) -> RunStore:
    """Create ``out`` for ``config``, or reopen it if it holds a run of the very same config; the store
    returned holds the directory's lock until it is closed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory; choose another --out")
    wanted = absolute_paths(config).to_yaml_dict()
    if (out / CONFIG_FILE).exists():
        check_same_config(out, config)
        log.info("%s holds a run of this configuration: continuing it", out)
        return _reopen(out)
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"{out}: exists and is not a nasforge run directory (no {CONFIG_FILE}); choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{out}: cannot create run directory ({exc.strerror})") from None
    lock = RunLock(out)
    try:
        if (out / CONFIG_FILE).exists():  # another process created it meanwhile
            raise RunDirError(f"{out}: another process has just started a run in it; choose another --out")
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
        return RunStore(out / DB_FILE, lock=lock)
    except BaseException:
        lock.release()
        raise


def _reopen(run_dir: Path) -> RunStore:
    """The writable store of an existing run directory, locked, refusing a record that was emptied."""
    lock = RunLock(run_dir)
    try:
        _check_record_kept(run_dir)
        store = RunStore(run_dir / DB_FILE, lock=lock)
    except BaseException:
        lock.release()
        raise
    try:
        _check_not_emptied(run_dir, store)
    except BaseException:
        store.close()
        raise
    return store


def _check_record_kept(run_dir: Path) -> None:
    """A run's record must not have been removed or truncated to nothing (the search would silently run again)."""
    path = run_dir / DB_FILE
    if not path.exists():
        if (run_dir / RESULT_FILE).exists():
            raise RunDirError(f"{path}: missing although {RESULT_FILE} records the run; refusing to run the search "
                              "again over it (restore the file, or start a new run with another --out)")
    elif path.stat().st_size == 0:
        raise RunDirError(f"{path}: empty (0 bytes); refusing to run the search again over it "
                          "(restore the file, or start a new run with another --out)")


def _check_not_emptied(run_dir: Path, store: RunStore) -> None:
    recorded = read_result(run_dir).get("n_evaluations") or 0
    if recorded and store.count_finished() == 0:
        raise RunDirError(f"{run_dir / DB_FILE}: holds no evaluations although {RESULT_FILE} records {recorded}; "
                          "refusing to run the search again over it (restore the file, or start a new run)")


def read_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise RunDirError(f"{run_dir}: not a nasforge run directory (no {CONFIG_FILE})")
    return make_run_config(load_yaml(path), source=str(path))


def open_store(run_dir: str | Path, readonly: bool = False) -> RunStore:
    """The store of an existing run directory; ``readonly`` for readers (works on a read-only copy, takes no lock)."""
    path = Path(run_dir) / DB_FILE
    if not path.exists():
        raise RunDirError(f"{run_dir}: no {DB_FILE} in the run directory")
    if path.stat().st_size == 0:
        raise RunDirError(f"{path}: empty (0 bytes): the run's record is lost")
    return RunStore(path, readonly=readonly)


def resume_config(run_dir: str | Path, budget: int | None = None, writer: bool = True) -> tuple[RunConfig, int]:
    """The config to continue ``run_dir`` with and how many evaluations it has finished.

    Checks that the record can be continued (readable, of this schema version, not emptied). ``budget``
    (the one setting a resume may change) extends or shortens the run; it is recorded in ``config.yaml``, unless
    ``writer`` is False (a replica that only reads the run, as in :func:`check_out`).
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    check_out(run_dir, writer)
    with open_store(run_dir, readonly=True) as store:
        done = store.count_finished()
    if budget is not None and budget != config.budget:
        if budget < max(done, 1):
            raise ConfigError(f"--budget {budget}: {run_dir} has already finished {done} evaluations")
        if writer:
            with RunLock(run_dir):
                data = read_config(run_dir).to_yaml_dict()
                data["budget"] = budget
                _write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(data, sort_keys=False))
            log.info("%s: budget changed from %d to %d evaluations", run_dir, config.budget, budget)
        config = dataclasses.replace(config, budget=budget)
    return config, done


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
            "test_accuracy": best.outcome.test_accuracy,
            "metrics": best.outcome.metrics,
        },
        "total_cost": sum(t.outcome.cost for t in record.trials),
        "n_failed": sum(t.outcome.failed for t in record.trials),
        "n_cached": sum(t.cached for t in record.trials),
        "n_retried_attempts": sum(t.attempts for t in record.trials),
        "nasforge_version": _version(),
        "history": record.history(),
    }
    if optimum is not None:
        arch, res = optimum
        out["optimum"] = {"arch": str(arch), "reward": res.reward, "test_accuracy": res.test_accuracy}
    out.update(objective_summary(config, record))
    return out


def objective_summary(config: RunConfig, record: SearchRecord) -> dict[str, Any]:
    """``result.json``'s multi-objective part: the constraints and how many architectures broke them (never
    trained where the costs come from the architecture), and with objectives, the Pareto front of the search."""
    out: dict[str, Any] = {}
    if config.constraints:
        out["constraints"] = list(config.constraints)
        out["n_infeasible"] = sum(is_infeasible(t.outcome) for t in record.trials)
    if config.objectives:
        objectives = parse_objectives(config.objectives)
        out["objectives"] = [str(o) for o in objectives]
        out["pareto_front"] = pareto_front([(str(t.arch), t.outcome) for t in record.trials], objectives)
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


def keep_derivations(run_dir: str | Path, result: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    """``result`` (the new ``result.json`` of ``run_dir``) with the derivation of the file it replaces (``old``, read
    from the file unless given), if another, appended to ``derived_history``: a new derivation (``nasforge derive``,
    or a one-shot search continued with a larger budget) never loses the earlier ones and their retrained
    candidates. An unreadable old file has nothing to keep."""
    if old is None:
        try:
            old = read_result(run_dir)
        except RunDirError:
            return result
    replaced = old.get("derived")
    history = [*old.get("derived_history", []), *([replaced] if replaced and replaced != result.get("derived") else [])]
    return {**result, "derived_history": history} if history else result


def derived_pick(derived: dict[str, Any]) -> dict[str, Any] | None:
    """The architecture a one-shot search's derivation settles on: the best of its retrained candidates
    (``nasforge derive --retrain-top``) if any, else the perturbation-based selection (differentiable strategies),
    else the best-scored policy sample, else the policy's most likely."""
    return (derived.get("retrained_best") or derived.get("perturbed") or derived.get("sampled_best")
            or derived.get("most_likely"))


def write_result(run_dir: str | Path, data: dict[str, Any]) -> Path:
    path = Path(run_dir) / RESULT_FILE
    _write_atomic(path, _result_text(data))
    return path


_JSON_ROW = json.JSONEncoder(default=float).encode


def _result_text(data: dict[str, Any]) -> str:
    """Indented JSON with one line per history row (the rows are what is long; indenting them costs as much
    as a fast search takes)."""
    history = data.get("history")
    head = {k: v for k, v in data.items() if k != "history"}
    if not isinstance(history, list) or not history or not head:
        return json.dumps(data, indent=2, default=float)
    rows = ",\n    ".join(map(_JSON_ROW, history))
    return json.dumps(head, indent=2, default=float)[:-2] + f',\n  "history": [\n    {rows}\n  ]\n}}\n'



def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
