"""The run store: one SQLite database per run directory, one row per evaluation.

Every change of the search is committed in one transaction together with the strategy state it
leads to, so a run killed at any moment (``kill -9`` included) resumes with nothing lost and nothing
evaluated twice: asked-but-unfinished trials are evaluated again, results recorded but not yet told
are told from the record, and the strategy continues from the state saved with the last change.
``RunStore(None)`` keeps everything in memory and skips state serialisation (benchmarks).
"""

from __future__ import annotations

import json
import math
import pickle
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..arch import Architecture
from ..result import Result

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    choices TEXT NOT NULL,
    status TEXT NOT NULL,             -- running | done | failed
    seq INTEGER,                      -- order in which results arrived
    reward REAL,
    metrics TEXT,
    cost REAL,
    time_s REAL,                      -- evaluation wall time
    overhead_s REAL DEFAULT 0,        -- strategy time (ask + tell) spent on this trial
    error TEXT,
    cached INTEGER DEFAULT 0,         -- result reused from an earlier trial of the same architecture
    told INTEGER DEFAULT 0,
    asked_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS attempts (      -- failed attempts that were retried (worker raised, timed out, was lost)
    trial_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    error TEXT,
    worker TEXT,
    time_s REAL,
    at REAL
);
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), n_done INTEGER NOT NULL, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (n_done INTEGER PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Trial:
    """One evaluation of the run, as recorded."""

    id: int
    arch: Architecture
    status: str = "running"
    seq: int | None = None
    result: Result | None = None
    time_s: float = 0.0
    overhead_s: float = 0.0
    cached: bool = False
    told: bool = False
    attempts: int = 0  # failed attempts retried before this trial's result

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def reward(self) -> float:
        return math.nan if self.result is None else self.result.reward


def _nan_to_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


class RunStore:
    """Trials, strategy state and snapshots of one search, on disk (a path) or in memory (None)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.persistent = self.path is not None
        self.db = sqlite3.connect(str(self.path) if self.persistent else ":memory:", isolation_level=None)
        if self.persistent:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._trials: dict[int, Trial] = {}

    # ----------------------------------------------------------------- reading
    def load(self, parse: Callable[[dict[str, Any]], Architecture]) -> list[Trial]:
        """All recorded trials, by id; ``parse`` turns ``{"arch", "choices"}`` back into an Architecture."""
        rows = self.db.execute(
            "SELECT id, arch, choices, status, seq, reward, metrics, cost, time_s, overhead_s, error, cached, told"
            " FROM trials ORDER BY id"
        ).fetchall()
        self._trials = {}
        for (tid, text, choices, status, seq, reward, metrics, cost, time_s, overhead, error, cached, told) in rows:
            arch = parse({"arch": text, "choices": json.loads(choices)})
            result = None
            if status != "running":
                result = Result(
                    math.nan if reward is None else reward,
                    json.loads(metrics) if metrics else {},
                    cost or 0.0,
                    status == "failed",
                    error,
                )
            self._trials[tid] = Trial(tid, arch, status, seq, result, time_s or 0.0, overhead or 0.0,
                                      bool(cached), bool(told))
        for tid, n in self.db.execute("SELECT trial_id, COUNT(*) FROM attempts GROUP BY trial_id"):
            if tid in self._trials:
                self._trials[tid].attempts = n
        return list(self._trials.values())

    def attempts(self) -> list[dict[str, Any]]:
        """Every failed attempt that was retried, oldest first."""
        rows = self.db.execute("SELECT trial_id, kind, error, worker, time_s FROM attempts ORDER BY rowid").fetchall()
        return [dict(zip(("trial_id", "kind", "error", "worker", "time_s"), r)) for r in rows]

    @property
    def trials(self) -> list[Trial]:
        return list(self._trials.values())

    def finished(self) -> list[Trial]:
        """Finished trials in the order their results arrived."""
        return sorted((t for t in self._trials.values() if t.finished), key=lambda t: t.seq)

    def n_finished(self) -> int:
        return sum(t.finished for t in self._trials.values())

    def load_state(self) -> Any | None:
        row = self.db.execute("SELECT blob FROM state WHERE id = 1").fetchone()
        return None if row is None else pickle.loads(row[0])

    def snapshots(self) -> list[tuple[int, Any]]:
        rows = self.db.execute("SELECT n_done, blob FROM snapshots ORDER BY n_done").fetchall()
        return [(n, pickle.loads(b)) for n, b in rows]

    def get_meta(self, key: str) -> Any | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # ----------------------------------------------------------------- writing
    def _save_state(self, state: Callable[[], Any] | None) -> None:
        if state is not None and self.persistent:
            blob = pickle.dumps(state(), protocol=pickle.HIGHEST_PROTOCOL)
            self.db.execute("INSERT OR REPLACE INTO state (id, blob) VALUES (1, ?)", (blob,))

    def add_trials(self, archs: Sequence[Architecture], overhead_s: float = 0.0,
                   state: Callable[[], Any] | None = None) -> list[Trial]:
        """Record asked architectures (status running) with the strategy state after the ask."""
        now = time.time()
        start = max(self._trials, default=0) + 1
        new = [Trial(start + i, a, overhead_s=overhead_s) for i, a in enumerate(archs)]
        with self._transaction():
            if self.persistent:
                self.db.executemany(
                    "INSERT INTO trials (id, arch, choices, status, overhead_s, asked_at) VALUES (?, ?, ?, 'running', ?, ?)",
                    [(t.id, str(t.arch), json.dumps(list(t.arch.choices)), overhead_s, now) for t in new],
                )
            self._save_state(state)
        self._trials.update((t.id, t) for t in new)
        return new

    def record_result(self, trial: Trial, result: Result, time_s: float, cached: bool = False) -> None:
        """Commit a result (before the strategy is told, so it survives a crash during ``tell``)."""
        trial.seq = 1 + max((t.seq for t in self._trials.values() if t.seq is not None), default=0)
        trial.result, trial.time_s, trial.cached = result, time_s, cached
        trial.status = "failed" if result.failed else "done"
        if self.persistent:
            with self._transaction():
                self.db.execute(
                    "UPDATE trials SET status=?, seq=?, reward=?, metrics=?, cost=?, time_s=?, error=?, cached=?,"
                    " finished_at=? WHERE id=?",
                    (trial.status, trial.seq, _nan_to_none(result.reward), json.dumps(result.metrics, default=float),
                     result.cost, time_s, result.error, int(cached), time.time(), trial.id),
                )

    def record_attempt(self, trial: Trial, kind: str, error: str | None, worker: str, time_s: float) -> None:
        """Record a failed attempt that will be retried (kept in memory stores too, for reports)."""
        trial.attempts += 1
        with self._transaction():
            self.db.execute(
                "INSERT INTO attempts (trial_id, kind, error, worker, time_s, at) VALUES (?, ?, ?, ?, ?, ?)",
                (trial.id, kind, error, worker, time_s, time.time()),
            )

    def mark_told(self, trials: Iterable[Trial], overhead_s: float = 0.0,
                  state: Callable[[], Any] | None = None) -> None:
        """Record that the strategy learnt from these trials, with the state it reached."""
        trials = list(trials)
        for t in trials:
            t.told = True
            t.overhead_s += overhead_s
        if self.persistent:
            with self._transaction():
                self.db.executemany(
                    "UPDATE trials SET told=1, overhead_s=overhead_s+? WHERE id=?",
                    [(overhead_s, t.id) for t in trials],
                )
                self._save_state(state)

    def save_checkpoint(self, n_done: int, state: Any) -> None:
        """Keep one joint checkpoint (strategy and evaluator state after ``n_done`` results)."""
        if self.persistent:
            blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
            with self._transaction():
                self.db.execute("INSERT OR REPLACE INTO checkpoint (id, n_done, blob) VALUES (1, ?, ?)", (n_done, blob))

    def load_checkpoint(self) -> tuple[int, Any] | None:
        row = self.db.execute("SELECT n_done, blob FROM checkpoint WHERE id = 1").fetchone()
        return None if row is None else (row[0], pickle.loads(row[1]))

    def truncate(self, n_done: int) -> None:
        """Forget everything after the first ``n_done`` results (a run going back to its checkpoint)."""
        keep = {t.id for t in self._trials.values() if t.seq is not None and t.seq <= n_done}
        drop = [tid for tid in self._trials if tid not in keep]
        with self._transaction():
            self.db.executemany("DELETE FROM trials WHERE id = ?", [(tid,) for tid in drop])
            self.db.executemany("DELETE FROM attempts WHERE trial_id = ?", [(tid,) for tid in drop])
            self.db.execute("DELETE FROM snapshots WHERE n_done > ?", (n_done,))
        for tid in drop:
            del self._trials[tid]

    def add_snapshot(self, n_done: int, snapshot: Any) -> None:
        if self.persistent:
            blob = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
            with self._transaction():
                self.db.execute("INSERT OR REPLACE INTO snapshots (n_done, blob) VALUES (?, ?)", (n_done, blob))

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def _transaction(self) -> "_Txn":
        return _Txn(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Txn:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
