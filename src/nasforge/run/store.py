"""The run store: one SQLite database per run directory, one row per evaluation.

Every change of the search is committed in one transaction together with an event that records it
(``ask``: the trials proposed; ``tell``: the trials the strategy learnt from, in order). The strategy's
state is saved now and then as plain data (:mod:`nasforge.codec`, never pickle) with the number
of the last event it includes; a resumed run restores it and replays the later events, checking that
the strategy proposes again exactly what was recorded. So a run killed at any moment (``kill -9``
included) resumes with nothing lost and nothing evaluated twice: asked-but-unfinished trials are
evaluated again, results recorded but not yet told are told from the record.
``RunStore(None)`` keeps trials in memory only and records neither events nor states (benchmarks).

The database carries its schema version (``PRAGMA user_version``); a database of another version, a
damaged one or a file that is not one is a :class:`~nasforge.errors.RunDirError` naming the file, except
version 2, which lacks only the trials' fidelity (added in 3): opened for writing it is migrated (its
trials were all evaluated at the run's fidelity, recorded as NULL), opened read-only it is read as such.
``readonly=True`` opens it for reading only (``mode=ro``), so that a read-only copy of a run can be read.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .. import codec
from ..arch import Architecture
from ..errors import RunDirError
from ..interrupts import deferred_interrupts
from ..result import Result

#: version of the tables below; a database of another version is refused (1 was never written; databases
#: before versions were recorded read 0 and pickled their strategy states), but for 2 (see MIGRATIONS)
SCHEMA_VERSION = 3
#: from an older version to this one: the statements that migrate it (2 lacks the trials' fidelity)
MIGRATIONS = {2: "ALTER TABLE trials ADD COLUMN fidelity REAL;"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    choices TEXT NOT NULL,
    status TEXT NOT NULL,             -- running | done | failed
    seq INTEGER,                      -- order in which results arrived
    reward REAL,
    metrics TEXT,
    cost REAL,                        -- the evaluator's cost unit (epochs, seconds of a table's training)
    time_s REAL,                      -- evaluation wall time
    overhead_s REAL DEFAULT 0,        -- strategy time (ask + tell) spent on this trial
    error TEXT,
    cached INTEGER DEFAULT 0,         -- result reused from an earlier trial of the same architecture
    told INTEGER DEFAULT 0,
    asked_at REAL,
    finished_at REAL,
    fidelity REAL                     -- the fidelity the strategy asked for (NULL: the run's, the evaluator's default)
);
CREATE TABLE IF NOT EXISTS attempts (      -- failed attempts that were retried (worker raised, timed out, was lost)
    trial_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    error TEXT,
    worker TEXT,
    time_s REAL,
    at REAL
);
CREATE TABLE IF NOT EXISTS events (        -- what the strategy was asked and told, in order
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('ask', 'tell')),
    n INTEGER NOT NULL,                    -- ask: architectures requested
    trials TEXT NOT NULL                   -- JSON list of trial ids (proposed, or told in this order)
);
-- the strategy state after event ``event_seq`` (codec blob)
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), event_seq INTEGER NOT NULL,
    blob BLOB NOT NULL);
-- strategy and evaluator state of a stateful (one-shot) evaluator's search after ``n_done`` results
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), n_done INTEGER NOT NULL,
    event_seq INTEGER NOT NULL, strategy BLOB NOT NULL, evaluator BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (n_done INTEGER PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Event:
    """One recorded call of the strategy: ``ask`` (``n`` requested, ``trials`` proposed) or ``tell``."""

    seq: int
    kind: str
    n: int
    trials: tuple[int, ...]


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
    fidelity: float | None = None  # asked by the strategy, or the run's (None: the evaluator's default)

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def outcome(self) -> Result:
        """The result of a finished trial (an error to ask a running one)."""
        if self.result is None:
            raise RuntimeError(f"trial {self.id} is still running: it has no result yet")
        return self.result

    @property
    def reward(self) -> float:
        return math.nan if self.result is None else self.result.reward


#: queued as (id, arch, choices, overhead_s, asked_at, fidelity), inserted as a whole row (see RunStore.flush)
_INSERT_TRIAL = ("INSERT INTO trials (id, arch, choices, status, seq, reward, metrics, cost, time_s, error, cached,"
                 " finished_at, told, overhead_s, asked_at, fidelity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_RECORD_RESULT = ("UPDATE trials SET status=?, seq=?, reward=?, metrics=?, cost=?, time_s=?, error=?, cached=?,"
                  " finished_at=? WHERE id=?")
_MARK_TOLD = "UPDATE trials SET told=1, overhead_s=overhead_s+? WHERE id=?"
_INSERT_EVENT = "INSERT INTO events (seq, kind, n, trials) VALUES (?, ?, ?, ?)"
#: the order in which a group of writes is applied (other statements follow, in the order first queued)
_ORDER = (_INSERT_TRIAL, _RECORD_RESULT, _MARK_TOLD, _INSERT_EVENT)
_metrics_json = json.JSONEncoder(default=float).encode


def _nan_to_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _connect_readonly(path: Path) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    if not path.with_name(path.name + "-wal").exists():
        # no writer has pending changes: read the file as it is, creating nothing beside it (-shm, -wal)
        return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        # a write-ahead-log database in a directory nobody may write to (a read-only copy): its shared
        # memory file cannot be made, and nothing can change the file either, so read it as immutable
        db.close()
    return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)


class RunStore:
    """Trials, events, strategy state and snapshots of one search, on disk (a path) or in memory (None).

    ``readonly`` opens an existing database for reading only (no write-ahead-log switch, no writes).
    ``lock`` is an object with ``release()`` that the store releases when closed (the run directory's lock).
    """

    def __init__(self, path: str | Path | None = None, *, readonly: bool = False, lock: Any = None) -> None:
        self.path = None if path is None else Path(path)
        self.persistent = self.path is not None
        self.readonly = readonly
        self._lock = lock
        #: group commits: writes join one open transaction, committed once it is ``commit_delay`` seconds old or
        #: holds results of ``commit_risk`` seconds of evaluation (0: every write commits at once)
        self.commit_delay = 0.0
        self.commit_risk = 0.05
        self._pending: list[tuple[tuple[str, Any, bool], ...]] = []
        self._open_since = 0.0
        self._at_risk = 0.0
        self._trials: dict[int, Trial] = {}
        self._last_id = 0
        self._last_seq = 0
        self._last_event = 0
        self._has_fidelity = True  # False: a version-2 database read without migrating it
        if self.path is None:
            self.db = sqlite3.connect(":memory:", isolation_level=None)
            self.db.executescript(SCHEMA)
            return
        try:
            self.db = self._open(self.path)
        except BaseException:
            self._release()
            raise

    def _open(self, path: Path) -> sqlite3.Connection:
        if self.readonly:
            if not path.is_file():
                raise RunDirError(f"{path}: no such run database")
            try:
                db = _connect_readonly(path)
            except sqlite3.DatabaseError as exc:
                raise RunDirError(f"{path}: not a readable nasforge run database ({exc})") from None
        else:
            fresh = not path.exists() or path.stat().st_size == 0
            try:
                db = sqlite3.connect(str(path), isolation_level=None)
                if fresh:  # an empty record needs no flushing to disk: what is recorded later does (NORMAL)
                    db.execute("PRAGMA synchronous=OFF")
                    db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error as exc:
                raise RunDirError(f"{path}: cannot open the run database for writing ({exc})") from None
        try:
            self._check(db, path)
            if not self.readonly:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            db.close()
            raise
        return db

    def _check(self, db: sqlite3.Connection, path: Path) -> None:
        """A database of this schema version, undamaged; a writable store creates the tables in an empty one."""
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables and not self.readonly:
                db.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
                return
            check = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            raise RunDirError(f"{path}: not a readable nasforge run database ({exc})") from None
        if check != ["ok"]:
            raise RunDirError(f"{path}: damaged run database ({check[0]})")
        if "trials" not in tables:
            raise RunDirError(f"{path}: not a nasforge run database (no trials table)")
        if version in MIGRATIONS:
            if self.readonly:
                self._has_fidelity = False
                return
            try:
                db.executescript(f"BEGIN; {MIGRATIONS[version]} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            except sqlite3.Error as exc:
                raise RunDirError(f"{path}: cannot migrate the run database from schema version {version} "
                                  f"to {SCHEMA_VERSION} ({exc})") from None
            return
        if version != SCHEMA_VERSION:
            old = " (before versions were recorded, with pickled strategy states, which are no longer read)" \
                if version == 0 else ""
            raise RunDirError(f"{path}: a run database of schema version {version}{old}; this nasforge reads "
                              f"version {SCHEMA_VERSION}: continue it with the nasforge that wrote it, "
                              "or start a new run")

    # ----------------------------------------------------------------- reading
    def load(self, parse: Callable[[dict[str, Any]], Architecture]) -> list[Trial]:
        """All recorded trials, by id; ``parse`` turns ``{"arch", "choices"}`` back into an Architecture."""
        self.flush()
        try:
            fidelity = "fidelity" if self._has_fidelity else "NULL"
            rows = self.db.execute(
                "SELECT id, arch, choices, status, seq, reward, metrics, cost, time_s, overhead_s, error, cached, told,"
                f" {fidelity} FROM trials ORDER BY id"
            ).fetchall()
            attempts = self.db.execute("SELECT trial_id, COUNT(*) FROM attempts GROUP BY trial_id").fetchall()
            last_event = self.db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise RunDirError(f"{self.path}: unreadable run database ({exc})") from None
        self._trials = {}
        for (tid, text, choices, status, seq, reward, metrics, cost, time_s, overhead, error, cached, told,
             fid) in rows:
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
                                      bool(cached), bool(told), fidelity=fid)
        for tid, n in attempts:
            if tid in self._trials:
                self._trials[tid].attempts = n
        self._recount()
        self._last_event = last_event or 0
        return list(self._trials.values())

    def _recount(self) -> None:
        self._last_id = max(self._trials, default=0)
        self._last_seq = max((t.seq for t in self._trials.values() if t.seq is not None), default=0)

    def attempts(self) -> list[dict[str, Any]]:
        """Every failed attempt that was retried, oldest first."""
        self.flush()
        rows = self.db.execute("SELECT trial_id, kind, error, worker, time_s FROM attempts ORDER BY rowid").fetchall()
        return [dict(zip(("trial_id", "kind", "error", "worker", "time_s"), r)) for r in rows]

    @property
    def trials(self) -> list[Trial]:
        return list(self._trials.values())

    def finished(self) -> list[Trial]:
        """Finished trials in the order their results arrived."""
        return sorted((t for t in self._trials.values() if t.finished), key=lambda t: t.seq or 0)

    def n_finished(self) -> int:
        return sum(t.finished for t in self._trials.values())

    def count_finished(self) -> int:
        """Finished trials in the database (without loading them)."""
        self.flush()
        return self.db.execute("SELECT COUNT(*) FROM trials WHERE status != 'running'").fetchone()[0]

    @property
    def last_event(self) -> int:
        """Number of the last recorded event (0: none)."""
        return self._last_event

    def events(self, after: int = 0) -> list[Event]:
        """Recorded asks and tells after event number ``after``, in order."""
        self.flush()
        rows = self.db.execute("SELECT seq, kind, n, trials FROM events WHERE seq > ? ORDER BY seq", (after,))
        return [Event(seq, kind, n, tuple(json.loads(ids))) for seq, kind, n, ids in rows]

    def _decode(self, blob: bytes, what: str) -> codec.Encoded:
        return codec.Encoded.from_bytes(blob, f"{self.path or 'memory'} ({what})")

    def load_state(self) -> tuple[int, codec.Encoded] | None:
        """The last saved strategy state and the number of the last event it includes, or None."""
        self.flush()
        row = self.db.execute("SELECT event_seq, blob FROM state WHERE id = 1").fetchone()
        return None if row is None else (row[0], self._decode(row[1], "strategy state"))

    def snapshots(self) -> list[tuple[int, Any]]:
        self.flush()
        rows = self.db.execute("SELECT n_done, blob FROM snapshots ORDER BY n_done").fetchall()
        return [(n, codec.decode(self._decode(b, f"snapshot after {n}"))) for n, b in rows]

    def get_meta(self, key: str) -> Any | None:
        self.flush()
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # ----------------------------------------------------------------- writing
    def _write(self, *ops: tuple[str, Any, bool]) -> None:
        """Queue one write (``(sql, parameters, executemany)`` statements applied together or not at all) and
        commit the queue unless it groups commits and is young (``commit_delay``) and cheap (``commit_risk``).

        Queuing a write is one list append, so a write interrupted half-way (Ctrl-C) never reaches the database.
        """
        now = time.perf_counter()
        if not self._pending:
            self._open_since = now
        self._pending.append(ops)
        if not self.commit_delay or self._at_risk >= self.commit_risk or now - self._open_since >= self.commit_delay:
            self.flush()

    def flush(self) -> None:
        """Commit the queued writes in one transaction.

        Statements of one kind run together (``executemany``) in a fixed order: a trial's row is inserted
        before its result and its telling update it (or, queued together, the three become one insert), and
        those two touch different columns; every other kind of write touches a table of its own, in the order
        queued.
        """
        if not self._pending:
            return
        pending = list(self._pending)
        batches: dict[str, list[Any]] = {sql: [] for sql in _ORDER}
        new: dict[int, list[Any]] = {}  # trials first inserted by this group: id -> full row
        for ops in pending:
            for sql, params, many in ops:
                for p in (params if many else (params,)):
                    if sql == _INSERT_TRIAL:
                        row = new[p[0]] = [p[0], p[1], p[2], "running", None, None, None, None, None, None, 0, None,
                                           0, p[3], p[4], p[5]]
                        batches[sql].append(row)
                    elif sql == _RECORD_RESULT and p[9] in new:
                        new[p[9]][3:12] = p[:9]
                    elif sql == _MARK_TOLD and p[1] in new:
                        row = new[p[1]]
                        row[12], row[13] = 1, row[13] + p[0]
                    else:
                        batches.setdefault(sql, []).append(p)
        with deferred_interrupts():  # committed writes must leave the queue with the commit
            with _Txn(self.db):
                for sql, rows in batches.items():
                    if rows:
                        self.db.executemany(sql, rows)
            del self._pending[: len(pending)]
            self._at_risk = 0.0

    def _event(self, kind: str, n: int, trials: Sequence[Trial]) -> tuple[str, Any, bool]:
        self._last_event += 1
        ids = f"[{trials[0].id}]" if len(trials) == 1 else f"[{','.join(str(t.id) for t in trials)}]"
        return _INSERT_EVENT, (self._last_event, kind, n, ids), False

    def add_trials(self, archs: Sequence[Architecture], overhead_s: float = 0.0,
                   n_asked: int | None = None, fidelities: Sequence[float | None] | None = None) -> list[Trial]:
        """Record asked architectures (status running) at their ``fidelities`` (default: None each) and the ask
        that proposed them (``n_asked`` requested)."""
        now = time.time()
        start = self._last_id + 1
        fids = [None] * len(archs) if fidelities is None else list(fidelities)
        new = [Trial(start + i, a, overhead_s=overhead_s, fidelity=f) for i, (a, f) in enumerate(zip(archs, fids))]
        if self.persistent:
            # tuples of plain values only, so that the garbage collector stops tracking what waits to be committed
            rows = tuple((t.id, str(t.arch), str(list(t.arch.choices)), overhead_s, now, t.fidelity) for t in new)
            self._write((_INSERT_TRIAL, rows, True),
                        self._event("ask", len(new) if n_asked is None else n_asked, new))
        self._trials.update((t.id, t) for t in new)
        self._last_id += len(new)
        return new

    def record_result(self, trial: Trial, result: Result, time_s: float, cached: bool = False) -> None:
        """Record a result (committed before the strategy is told if its evaluation took ``commit_risk`` or
        more, so that a crash during ``tell`` does not lose it)."""
        self._last_seq += 1
        trial.seq = self._last_seq
        trial.result, trial.time_s, trial.cached = result, time_s, cached
        trial.status = "failed" if result.failed else "done"
        if self.persistent:
            self._at_risk += time_s
            self._write((_RECORD_RESULT,
                         (trial.status, trial.seq, _nan_to_none(result.reward), _metrics_json(result.metrics),
                          result.cost, time_s, result.error, int(cached), time.time(), trial.id), False))

    def record_attempt(self, trial: Trial, kind: str, error: str | None, worker: str, time_s: float) -> None:
        """Record a failed attempt that will be retried (kept in memory stores too, for reports)."""
        trial.attempts += 1
        self._write(("INSERT INTO attempts (trial_id, kind, error, worker, time_s, at) VALUES (?, ?, ?, ?, ?, ?)",
                     (trial.id, kind, error, worker, time_s, time.time()), False))

    def mark_told(self, trials: Iterable[Trial], overhead_s: float = 0.0) -> None:
        """Record that the strategy learnt from these trials (in this order)."""
        trials = list(trials)
        for t in trials:
            t.told = True
            t.overhead_s += overhead_s
        if self.persistent:
            self._write((_MARK_TOLD, tuple((overhead_s, t.id) for t in trials), True),
                        self._event("tell", len(trials), trials))

    def save_state(self, state: codec.Encoded | bytes, event_seq: int | None = None) -> None:
        """Keep one strategy state: the one after event ``event_seq`` (default: the last recorded event)."""
        if self.persistent:
            blob = state.to_bytes() if isinstance(state, codec.Encoded) else state
            seq = self._last_event if event_seq is None else event_seq
            self._write(("INSERT OR REPLACE INTO state (id, event_seq, blob) VALUES (1, ?, ?)", (seq, blob), False))
            self.flush()

    def save_checkpoint(self, n_done: int, strategy: codec.Encoded | bytes, evaluator: codec.Encoded | bytes) -> None:
        """Keep one joint checkpoint: strategy and evaluator state after ``n_done`` results (and the last event)."""
        if self.persistent:
            blobs = [x.to_bytes() if isinstance(x, codec.Encoded) else x for x in (strategy, evaluator)]
            sql = ("INSERT OR REPLACE INTO checkpoint (id, n_done, event_seq, strategy, evaluator)"
                   " VALUES (1, ?, ?, ?, ?)")
            self._write((sql, (n_done, self._last_event, *blobs), False))
            self.flush()

    def load_checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """``(n_done, {"strategy": Encoded, "evaluator": state dict})``: give the first to the strategy's
        ``load_state_dict`` (it restores into the strategy's own modules), the second to the evaluator's."""
        self.flush()
        row = self.db.execute("SELECT n_done, strategy, evaluator FROM checkpoint WHERE id = 1").fetchone()
        if row is None:
            return None
        evaluator = codec.decode(self._decode(row[2], "evaluator checkpoint"))
        return row[0], {"strategy": self._decode(row[1], "strategy checkpoint"), "evaluator": evaluator}

    def truncate(self, n_done: int) -> None:
        """Forget everything after the first ``n_done`` results and after the checkpoint's last event
        (a run going back to its checkpoint)."""
        self.flush()
        keep = {t.id for t in self._trials.values() if t.seq is not None and t.seq <= n_done}
        drop = [tid for tid in self._trials if tid not in keep]
        row = self.db.execute("SELECT event_seq FROM checkpoint WHERE id = 1").fetchone()
        last_event = row[0] if row is not None else 0
        with deferred_interrupts():
            with _Txn(self.db):
                self.db.executemany("DELETE FROM trials WHERE id = ?", [(tid,) for tid in drop])
                self.db.executemany("DELETE FROM attempts WHERE trial_id = ?", [(tid,) for tid in drop])
                self.db.execute("DELETE FROM snapshots WHERE n_done > ?", (n_done,))
                self.db.execute("DELETE FROM events WHERE seq > ?", (last_event,))
                self.db.execute("DELETE FROM state")
            for tid in drop:
                del self._trials[tid]
            self._recount()
            self._last_event = last_event

    def add_snapshot(self, n_done: int, snapshot: Any) -> None:
        if self.persistent:
            self._write(("INSERT OR REPLACE INTO snapshots (n_done, blob) VALUES (?, ?)",
                         (n_done, codec.dumps(snapshot)), False))

    def set_meta(self, key: str, value: Any) -> None:
        self._write(("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)), False))

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()
            self._release()

    def __enter__(self) -> RunStore:
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
