"""The run store: plain-data states (no pickle), events and replay, schema version, damaged databases."""

from __future__ import annotations

import collections
import io
import math
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.codec import CodecError, Encoded, decode, dumps, encode, loads
from nasforge.errors import NasforgeError, RunDirError
from nasforge.registry import STRATEGIES
from nasforge.run import RunStore, run_search
from nasforge.run.store import SCHEMA_VERSION
from nasforge.testing import conformance
from nasforge.testing.toy import ToyConfig, ToyEvaluator

# differentiable strategies run only through a super-network (tests/test_strategies_darts.py)
NAMES = [n for n in STRATEGIES.names() if not STRATEGIES.get(n).capabilities.get("differentiable")]
SRC = Path(nf.__file__).parent


@dataclass
class Point:  # a nasforge-free class: the codec must refuse it
    x: int


# ----------------------------------------------------------------------------- codec
def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, np.ndarray):
        return (type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("value", [
    None, True, 3, -(2**100), 1.5, math.inf, -math.inf, "text", "$not-a-tag",
    [1, [2.0, None]], (1, "a", (2,)), {"a": 1}, {"$x": 1, 2: "b", (1, 2): [3], None: 0.5},
    {1, 2, 3}, frozenset({(1, 2)}), collections.deque([1, 2], maxlen=5),
    {(i, i + 1, -i) for i in range(40)}, {(i, "x") for i in range(40)}, {(True, i) for i in range(20)},
    np.float32(2.5), np.int64(-7), np.bool_(True),
    nf.Architecture("toy", (1, 2, 3), "t"), nf.Result(0.5, {"test_accuracy": 0.25}, 1.0),
    nf.Result.failure("boom"),
])
def test_plain_values_round_trip(value) -> None:
    back = loads(dumps(value))
    if isinstance(value, set):
        assert {tuple(map(type, m)) for m in value if isinstance(m, tuple)} == \
            {tuple(map(type, m)) for m in back if isinstance(m, tuple)}
    assert _same(value, back) or (isinstance(value, nf.Result) and value.failed and back.failed
                                  and back.error == value.error and math.isnan(back.reward))
    if isinstance(value, collections.deque):
        assert back.maxlen == 5


def test_nan_arrays_and_their_dtypes_round_trip() -> None:
    values = {"nan": math.nan, "f64": np.array([[1.0, np.nan], [np.inf, 2.0]]), "i8": np.arange(5, dtype=np.int8),
              "bool": np.array([True, False]), "empty": np.zeros((0, 3)), "u8": np.frombuffer(b"xyz", dtype=np.uint8)}
    back = loads(dumps(values))
    assert math.isnan(back["nan"])
    for key in values:
        if key != "nan":
            assert _same(values[key], back[key]), key
            assert back[key].flags.writeable  # restored arrays own their memory


def test_generators_continue_their_streams() -> None:
    rng, gen = np.random.default_rng(3), torch.Generator().manual_seed(5)
    rng.random(7), torch.rand(3, generator=gen)
    back = loads(dumps({"rng": rng, "gen": gen}))
    assert np.array_equal(back["rng"].random(4), rng.random(4))
    assert torch.equal(torch.rand(4, generator=back["gen"]), torch.rand(4, generator=gen))


def test_tensors_keep_dtype_and_requires_grad() -> None:
    tree = {"bf16": torch.tensor([1.5, -2.25], dtype=torch.bfloat16, requires_grad=True),
            "param": torch.nn.Parameter(torch.ones(2, 2)),
            "frozen": torch.nn.Parameter(torch.ones(1), requires_grad=False),
            "long": torch.arange(4), "half": torch.tensor([0.5], dtype=torch.float16)}
    back = loads(dumps(tree))
    for key, t in tree.items():
        assert back[key].dtype == t.dtype and back[key].requires_grad == t.requires_grad and torch.equal(back[key], t)
        assert isinstance(back[key], torch.nn.Parameter) == isinstance(t, torch.nn.Parameter)


def test_shared_objects_stay_shared() -> None:
    inner = [1, 2]
    arr = np.zeros(3)
    back = loads(dumps({"a": inner, "b": inner, "c": (inner, arr), "d": arr}))
    assert back["a"] is back["b"] is back["c"][0] and back["c"][1] is back["d"]


def test_modules_and_optimisers_are_loaded_into_the_live_objects() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    net(torch.randn(4, 3)).sum().backward()
    opt.step(), sched.step()
    saved = dumps({"net": net, "opt": opt, "sched": sched})
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.1)
    live = {"net": fresh, "opt": fresh_opt, "sched": torch.optim.lr_scheduler.StepLR(fresh_opt, 2)}
    back = loads(saved, live=live)
    assert back["net"] is fresh and back["opt"] is fresh_opt
    for a, b in zip(net.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh_opt.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    assert all(p is q for p, q in zip(fresh_opt.param_groups[0]["params"], fresh.parameters()))
    assert live["sched"].last_epoch == sched.last_epoch
    with pytest.raises(CodecError, match="restored into the live object"):
        loads(saved)  # nowhere to load a module into: it is never built from the file


def test_a_strategy_restored_from_bytes_shares_policy_and_optimiser() -> None:
    space = nf.create_space("toy")
    a = nf.create_strategy("reinforce", space, 1)
    run_search(space, a, ToyEvaluator(space), 12)
    b = nf.create_strategy("reinforce", space, 2)
    policy, optimizer = b.policy, b.learner.optimizer
    b.restore_state(Encoded.from_bytes(a.save_state().to_bytes()))
    assert b.policy is policy and b.learner.policy is policy and b.learner.optimizer is optimizer
    assert all(p is q for p, q in zip(optimizer.param_groups[0]["params"], policy.parameters()))
    assert b.sampler.space is space  # the space is a reference, not a copy from the file
    assert b.learner.n_updates == a.learner.n_updates > 0


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_continues_from_its_state_saved_as_bytes(name: str) -> None:
    conformance.check_saved_state_round_trip(name)


@pytest.mark.parametrize("value", [lambda: 1, Point(1), np.array([object()]), io.BytesIO()])
def test_what_is_not_plain_data_is_refused_with_its_place(value) -> None:
    with pytest.raises(CodecError, match=r"state\.inner\[0\]"):
        encode({"inner": [value]})


def test_decoding_never_creates_objects_of_other_modules(tmp_path: Path) -> None:
    for name in ("os:system", "builtins:eval", "subprocess:Popen", "nasforge.not_a_module:X",
                 "nasforge.arch:<locals>.X", "nasforge.arch:json"):
        with pytest.raises(CodecError):
            decode(Encoded({"$obj": name, "attrs": {}}))
    with pytest.raises(CodecError, match="unknown tag"):
        decode(Encoded({"$__init__": 1}))
    # a blob holding a pickled object array (what np.save writes for dtype=object) is refused, not unpickled
    marker = tmp_path / "ran"
    buf = io.BytesIO()
    np.savez(buf, __tree__=np.frombuffer(b'{"format":1,"tree":null,"arrays":{},"groups":[]}', dtype=np.uint8),
             g0=np.array([_Boom(marker)], dtype=object))
    blob = buf.getvalue()
    with pytest.raises(CodecError):
        data = Encoded.from_bytes(blob)
        decode(Encoded(data.tree, {"x": data.arrays["g0"]}))
    assert not marker.exists()
    with pytest.raises(CodecError, match="not a saved nasforge state"):
        Encoded.from_bytes(b"\x80\x04random bytes")


class _Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_no_pickle_in_the_run_layer() -> None:
    unpickling = re.compile(r"^\s*(import|from)\s+(pickle|dill|cloudpickle)\b|pickle\.loads?\(|torch\.load\(|"
                            r"allow_pickle\s*=\s*True", re.M)
    for path in (SRC / "run").glob("*.py"):
        assert not unpickling.search(path.read_text()), path


# ----------------------------------------------------------------------------- events and replay
def _toy(name: str, seed: int = 5):
    space, _ = conformance._toy(name)  # the toy space the strategy can search (a growable one for pnas)
    return space, nf.create_strategy(name, space, seed), ToyEvaluator(space)


class _Killed(BaseException):
    """A kill -9: the process ends without saving anything more."""


def _killed_run(path: Path, name: str, at: int, state_every: int, budget: int = 60) -> RunStore:
    space, strategy, evaluator = _toy(name)
    store = RunStore(path)

    def kill(trial, record) -> None:
        if record.n_evaluations == at:
            store.save_state = lambda *a, **k: None  # nothing more reaches the disk but what was recorded
            raise _Killed

    with pytest.raises(_Killed):
        run_search(space, strategy, evaluator, budget, store=store, seed=5, state_every=state_every,
                   callbacks=[kill])
    store.close()
    return store


@pytest.mark.parametrize("name", NAMES)
def test_resume_replays_the_events_after_a_sparse_save(tmp_path: Path, name: str) -> None:
    path = tmp_path / "run.db"
    _killed_run(path, name, at=33, state_every=7)
    with RunStore(path, readonly=True) as store:
        saved_after, _ = store.load_state()
        store.load(conformance._toy(name)[0].from_dict)
        assert 0 < saved_after < store.last_event, "the test needs events after the saved state"
    space, strategy, evaluator = _toy(name)
    resumed = run_search(space, strategy, evaluator, 60, store=RunStore(path), seed=5)
    assert evaluator.queries == 60 - 33
    space, strategy, evaluator = _toy(name)
    straight = run_search(space, strategy, evaluator, 60, seed=5)
    assert [t.arch for t in resumed.trials] == [t.arch for t in straight.trials]


def test_resume_without_any_saved_state_replays_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    _killed_run(path, "reinforce", at=20, state_every=0)
    with RunStore(path, readonly=True) as store:
        assert store.load_state() is None and len(store.events()) > 20
    space, strategy, evaluator = _toy("reinforce")
    resumed = run_search(space, strategy, evaluator, 40, store=RunStore(path), seed=5)
    space, strategy, evaluator = _toy("reinforce")
    straight = run_search(space, strategy, evaluator, 40, seed=5)
    assert [t.arch for t in resumed.trials] == [t.arch for t in straight.trials]


def test_events_record_asks_and_tells_in_order(tmp_path: Path) -> None:
    space, strategy, evaluator = _toy("re")
    with RunStore(tmp_path / "run.db") as store:
        run_search(space, strategy, evaluator, 5, store=store)
        events = store.events()
    assert [(e.kind, e.trials) for e in events] == [(k, (i,)) for i in range(1, 6) for k in ("ask", "tell")]
    assert all(e.n == 1 for e in events)


def test_a_replay_that_proposes_something_else_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    _killed_run(path, "re", at=12, state_every=0)
    space = nf.create_space("toy")
    other = nf.create_strategy("re", space, 6)  # another seed proposes other architectures
    with pytest.raises(RunDirError, match="diverged"):
        run_search(space, other, ToyEvaluator(space), 30, store=RunStore(path), seed=5)


def test_states_are_saved_sparsely_and_at_the_end(tmp_path: Path) -> None:
    space, strategy, evaluator = _toy("rs")
    saves = []
    store = RunStore(tmp_path / "run.db")
    save = store.save_state
    store.save_state = lambda *a, **k: (saves.append(store.last_event), save(*a, **k))  # type: ignore[method-assign]
    run_search(space, strategy, evaluator, 50, store=store, state_every=20)
    assert saves == [40, 80, 100]  # after tells 20 and 40 (an ask and a tell per evaluation), and at the end
    assert store.load_state()[0] == store.last_event == 100
    store.close()


def test_a_search_stopped_between_strategy_calls_saves_its_state(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    space, strategy, evaluator = _toy("ednas")

    def stop(trial, record) -> None:
        if record.n_evaluations == 9:
            raise KeyboardInterrupt

    with RunStore(path) as store, pytest.raises(KeyboardInterrupt):
        run_search(space, strategy, evaluator, 30, store=store, state_every=0, callbacks=[stop])
    with RunStore(path, readonly=True) as store:
        store.load(space.from_dict)
        assert store.load_state()[0] == store.last_event  # nothing to replay


def test_a_state_of_a_strategy_interrupted_inside_tell_is_not_saved(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    space, strategy, evaluator = _toy("re")
    calls = [0]

    class Interrupted(type(strategy)):
        def tell(self, archs, results) -> None:
            calls[0] += 1
            if calls[0] == 8:
                self.rng.random()  # half-way through: the strategy has changed but its tell is not recorded
                raise KeyboardInterrupt
            super().tell(archs, results)

    strategy = Interrupted(space, seed=5)
    with RunStore(path) as store, pytest.raises(KeyboardInterrupt):
        run_search(space, strategy, evaluator, 30, store=store, state_every=3)
    with RunStore(path, readonly=True) as store:
        store.load(space.from_dict)
        assert store.load_state()[0] < store.last_event
    space, strategy, evaluator = _toy("re")
    resumed = run_search(space, strategy, evaluator, 30, store=RunStore(path), seed=0)
    space, strategy, evaluator = _toy("re")
    assert [t.arch for t in resumed.trials] == [t.arch for t in run_search(space, strategy, evaluator, 30).trials]


# ----------------------------------------------------------------------------- the database file
def _recorded(tmp_path: Path) -> Path:
    space, strategy, evaluator = _toy("re")
    path = tmp_path / "run.db"
    with RunStore(path) as store:
        run_search(space, strategy, evaluator, 20, store=store)
    return path


def test_the_schema_version_is_recorded_and_another_is_refused(tmp_path: Path) -> None:
    path = _recorded(tmp_path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    for readonly in (False, True):
        with pytest.raises(RunDirError, match=rf"{path}: a run database of schema version 0"):
            RunStore(path, readonly=readonly)


@pytest.mark.parametrize("damage", ["random", "truncated", "header"])
def test_a_damaged_database_is_an_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    path = _recorded(tmp_path)
    data = path.read_bytes()
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(data[:50])
    for readonly in (False, True):
        with pytest.raises(RunDirError, match=str(path)):
            store = RunStore(path, readonly=readonly)
            store.load(nf.create_space("toy").from_dict)


def test_events_naming_trials_that_are_gone_are_an_error(tmp_path: Path) -> None:
    path = _recorded(tmp_path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM trials WHERE id > 5")
    db.execute("DELETE FROM state")
    db.commit()
    db.close()
    space, strategy, evaluator = _toy("re")
    with pytest.raises(RunDirError, match="no record of"):
        run_search(space, strategy, evaluator, 30, store=RunStore(path))


def test_a_readonly_store_reads_without_writing(tmp_path: Path) -> None:
    path = _recorded(tmp_path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=DELETE")  # as a copied or archived run may be
    db.close()
    before = path.read_bytes()
    with RunStore(path, readonly=True) as store:
        assert len(store.load(nf.create_space("toy").from_dict)) == 20
        assert store.load_state() is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.db.execute("DELETE FROM trials")
    assert path.read_bytes() == before
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not path.with_name("run.db-wal").exists()


def test_a_readonly_store_falls_back_to_immutable_when_no_shared_memory_can_be_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _recorded(tmp_path)
    monkeypatch.setattr(sqlite3, "connect", _lazy_failing(sqlite3.connect))
    with RunStore(path, readonly=True) as store:
        assert len(store.load(nf.create_space("toy").from_dict)) == 20


def _lazy_failing(connect):
    """sqlite3.connect whose connections fail on first use unless opened immutable (no -shm can be created)."""
    class Failing:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def execute(self, *a, **k):
            raise sqlite3.OperationalError("unable to open database file")

        def close(self) -> None:
            self.db.close()

    def wrapped(database, *args, **kw):
        db = connect(database, *args, **kw)
        return db if "immutable=1" in str(database) else Failing(db)

    return wrapped


def test_commits_are_grouped_but_nothing_is_lost_at_the_end(tmp_path: Path) -> None:
    space, strategy, evaluator = _toy("rs")
    path = tmp_path / "run.db"
    with RunStore(path) as store:
        record = run_search(space, strategy, evaluator, 200, store=store)
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM trials WHERE status = 'done' AND told = 1").fetchone()[0] == 200
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 400
    rows = db.execute("SELECT arch FROM trials ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [str(t.arch) for t in record.trials]


def test_an_expensive_result_is_committed_before_the_strategy_learns_from_it(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    space, strategy, evaluator = _toy("re")
    seen = []

    class Watching(type(strategy)):
        def tell(self, archs, results) -> None:
            seen.append(sqlite3.connect(path).execute("SELECT COUNT(*) FROM trials WHERE status != 'running'")
                        .fetchone()[0])
            super().tell(archs, results)

    slow = ToyEvaluator(space, ToyConfig(delay=0.06))  # longer than RunStore.commit_risk
    with RunStore(path) as store:
        run_search(space, Watching(space, seed=0), slow, 4, store=store)
    assert seen == [1, 2, 3, 4]


def test_store_errors_are_nasforge_errors() -> None:
    assert issubclass(RunDirError, NasforgeError) and issubclass(CodecError, NasforgeError)
