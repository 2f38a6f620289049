"""Multi-objective search: objectives and constraints, Pareto ranking and hypervolume, costs of architectures,
infeasible architectures skipped before evaluation, nsga2, MnasNet's reward and the bench's hypervolume."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.cli import main
from nasforge.config import make_run_config
from nasforge.errors import ConfigError
from nasforge.evaluators.base import Evaluator
from nasforge.evaluators.costs import CostModel, static_costs, table_costs
from nasforge.hypervolume import summarise_hypervolume
from nasforge.objectives import (
    MnasConfig,
    crowding_distance,
    hypervolume,
    hypervolume_curve,
    mnas_reward,
    nondominated_sort,
    pareto_front,
    parse_constraint,
    parse_objectives,
)
from nasforge.ops.measure import measure_latency
from nasforge.result import Result
from nasforge.testing.tables import write_nb201_table
from nasforge.testing.toy import ToySpace, toy_reward

SMALL = {"C": 2, "N": 1}  # NB201 networks small enough to count by the thousand in a test


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nb201_table(tmp_path_factory.mktemp("mo") / "t.csv")


# ---------------------------------------------------------------------- parsing
def test_objectives_parse_signs_and_refuse_nonsense() -> None:
    objs = parse_objectives("accuracy,-params")
    assert [(o.metric, o.maximise) for o in objs] == [("reward", True), ("params", False)]
    assert [str(o) for o in parse_objectives(["accuracy", "-latency_ms"])] == ["accuracy", "-latency_ms"]
    for bad, words in (("accuracy,params", "write -params"), ("-accuracy", "only be maximised"),
                       ("accuracy,-test_accuracy", "held-out"), ("accuracy,-bogus", "unknown metric"),
                       ("accuracy,,-params", "empty objective"), ("accuracy,reward", "named twice")):
        with pytest.raises(ConfigError, match="--objective") as err:
            parse_objectives(bad)
        assert words in str(err.value)


def test_constraints_parse_strictly() -> None:
    c = parse_constraint("params<=1.5e6")
    assert (c.metric, c.op, c.bound) == ("params", "<=", 1.5e6)
    assert parse_constraint(" latency_ms <= 5 ").violation(4.0) == 0
    assert parse_constraint("latency_ms<=5").violation(7.5) == pytest.approx(0.5)
    for bad in ("params", "params=<3", "params<=3x", "params<=nan", "foo<=3", "test_accuracy>=90", "params<=inf"):
        with pytest.raises(ConfigError, match="--constraint"):
            parse_constraint(bad)


def test_run_config_keeps_objectives_constraints_and_measure_through_yaml() -> None:
    config = make_run_config({"objectives": ["accuracy,-flops"], "constraints": ["params<=1e6"],
                              "measure": {"metrics": ["latency_ms"], "batch": 8}})
    assert config.objectives == ["accuracy", "-flops"]
    again = make_run_config(config.to_yaml_dict())
    assert again == config and again.measure.batch == 8
    with pytest.raises(ConfigError, match="measure.metrics"):
        make_run_config({"measure": {"metrics": ["accuracy"]}})
    with pytest.raises(ConfigError, match="constraints"):
        make_run_config({"constraints": ["params<3"], "objectives": []}, ["constraints=[params<<3]"])


# ---------------------------------------------------------------------- Pareto ranking and hypervolume
def _brute_fronts(p: np.ndarray) -> list[set[int]]:
    left, fronts = set(range(len(p))), []
    while left:
        front = {i for i in left if not any(np.all(p[j] >= p[i]) and np.any(p[j] > p[i]) for j in left)}
        fronts.append(front)
        left -= front
    return fronts


def _grid_hypervolume(p: np.ndarray, ref: np.ndarray) -> int:
    """Unit cells dominated by integer points: the definition, counted."""
    axes = [range(int(r), int(p[:, k].max())) for k, r in enumerate(ref)]
    return sum(any(np.all(np.array(cell) + 1 <= q) for q in p) for cell in itertools.product(*axes))


def test_nondominated_sort_and_hypervolume_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    for m in (2, 3):
        for _ in range(5):
            p = rng.integers(0, 7, size=(15, m)).astype(float)
            assert [set(f) for f in nondominated_sort(p)] == _brute_fronts(p)
            ref = np.full(m, -1.0)
            assert hypervolume(p, ref) == pytest.approx(_grid_hypervolume(p, ref))
            curve = hypervolume_curve(p, ref)
            assert curve[-1] == pytest.approx(hypervolume(p, ref))
            assert np.all(np.diff(curve) >= -1e-9)
            assert list(hypervolume_curve(p, ref, at=[5, 15])) == pytest.approx([hypervolume(p[:5], ref), curve[-1]])


def test_crowding_distance_favours_the_ends_and_the_sparse() -> None:
    d = crowding_distance([[0, 4], [1, 3], [1.2, 2.8], [4, 0]])
    assert np.isinf(d[0]) and np.isinf(d[3]) and d[2] > d[1]


def test_pareto_front_of_results() -> None:
    objs = parse_objectives("accuracy,-params")
    items = [("a", Result(90, {"params": 10})), ("b", Result(80, {"params": 5})), ("c", Result(70, {"params": 7})),
             ("a", Result(90, {"params": 10})), ("d", Result.failure("x", params=1)), ("e", Result(95, {}))]
    front = pareto_front(items, objs)
    assert [f["arch"] for f in front] == ["a", "b"]
    assert front[1]["objectives"] == {"accuracy": 80.0, "params": 5.0}


# ---------------------------------------------------------------------- costs
def test_nb201_table_costs_add_up_and_are_cached(tmp_path: Path) -> None:
    space = nf.create_space("nb201")

    def build(arch: Any) -> torch.nn.Module:
        return space.build(arch, num_classes=10, in_channels=3, **SMALL)

    archs = list(space.enumerate())
    values = table_costs(space, build, (3, 8, 8), archs, {"model": SMALL}, tmp_path, additive=True)
    rng = np.random.default_rng(3)
    for i in rng.choice(len(archs), 5, replace=False):  # the sum is the count
        direct = static_costs(build(archs[i]), (3, 8, 8))
        assert list(values[i]) == [direct["params"], direct["flops"]]
    assert values[archs.index(space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))][0] == values[:, 0].min()
    cached = list((tmp_path / "costs").glob("nb201-additive-*.npz"))
    assert len(cached) == 1
    again = table_costs(space, lambda a: pytest.fail("counted again"), (3, 8, 8), archs[::7], {"model": SMALL},
                        tmp_path, additive=True)  # another table of the space: a sum, nothing counted
    assert np.array_equal(again, values[::7])
    few = archs[:3]  # without the decomposition: each network counted, and cached for that table
    direct = table_costs(space, build, (3, 8, 8), few, {"model": SMALL}, tmp_path)
    assert np.array_equal(direct, values[:3])
    assert np.array_equal(table_costs(space, lambda a: pytest.fail("counted again"), (3, 8, 8), few,
                                      {"model": SMALL}, tmp_path), direct)


def test_latency_is_a_median_of_repeats_and_cached_per_architecture() -> None:
    space = ToySpace()
    built: list[Any] = []

    def build(arch: Any) -> torch.nn.Module:
        built.append(arch)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))

    assert measure_latency(build(None), (2, 3, 2, 2), warmup=1, repeats=3) > 0
    assert measure_latency(build(None), (2, 3, 2, 2), warmup=0, repeats=2, clock="cpu") >= 0
    with pytest.raises(ConfigError, match="measure.clock"):
        make_run_config({"measure": {"clock": "sundial"}})
    model = CostModel(space, build, (3, 2, 2), nf.config.build(nf.objectives.MeasureConfig, {"batch": 4,
                                                                                               "repeats": 3}, "m"))
    arch = space.make([0] * len(space.decisions))
    built.clear()
    first = model.costs(arch, {"latency_ms", "params"})
    assert set(first) >= {"latency_ms", "latency_ms_batch", "params", "flops"} and first["latency_batch"] == 4
    assert model.costs(arch, {"latency_ms", "params"}) == first and len(built) == 2  # one build each, then cached


class _Costly(Evaluator):
    """The toy reward; "params" from the architecture; records what it evaluated."""

    reports_costs = True

    def __init__(self, space: Any, config: Any = None, context: Any = None) -> None:
        super().__init__(space, config, context)
        self.evaluated: list[Any] = []

    def cost_model(self) -> Any:
        class Model:
            def costs(self, arch: Any, wanted: set[str]) -> dict[str, float]:
                return {"params": 1000.0 * (1 + arch.choices[0]), "flops": 1.0}
        return Model()

    def _evaluate(self, arch: Any, fidelity: Any, seed: int) -> Result:
        self.evaluated.append(arch)
        return Result(toy_reward(self.space, arch.choices), {"test_accuracy": 1.0}, cost=1.0)


def test_infeasible_architectures_are_never_evaluated_and_counted() -> None:
    space = ToySpace()
    ev = _Costly(space, context=nf.RunConfig(space="toy", constraints=["params<=2000"]))
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(40)]
    results = [ev.evaluate(a) for a in archs]
    for a, r in zip(archs, results):
        feasible = 1000.0 * (1 + a.choices[0]) <= 2000
        assert r.failed != feasible and r.metrics["params"] == 1000.0 * (1 + a.choices[0])
        if not feasible:
            assert r.metrics["infeasible"] and r.metrics["violation"] > 0 and r.cost == 0
            assert "breaks params<=2000" in (r.error or "")
    assert ev.evaluated == [a for a, r in zip(archs, results) if not r.failed]
    assert ev.n_infeasible == sum(r.failed for r in results) > 0


def test_a_constraint_known_only_after_evaluating_is_judged_then() -> None:
    space = ToySpace()
    ev = _Costly(space, context=nf.RunConfig(space="toy", constraints=["accuracy>=75"]))
    rng = np.random.default_rng(1)
    results = [ev.evaluate(space.sample(rng)) for _ in range(20)]
    bad = [r for r in results if r.failed]
    assert bad and len(ev.evaluated) == 20
    assert all(r.metrics["infeasible"] and r.cost == 1.0 and r.metrics["infeasible_reward"] < 75 for r in bad)


# ---------------------------------------------------------------------- searches
def test_constrained_multiobjective_search_records_front_and_infeasible(table: Path, tmp_path: Path) -> None:
    config = nf.RunConfig(space="nb201", strategy="nsga2", benchmark=str(table), budget=60, seed=0,
                          objectives=["accuracy", "-params"], constraints=["params<=3000"],
                          evaluator_args={"cost_model_args": SMALL, "cost_input": [3, 8, 8]})
    record, result = nf.search(config, out=tmp_path / "run")
    assert nf.api.read_run_config(tmp_path / "run").strategy_args["objectives"] == ["accuracy", "-params"]
    infeasible = [t for t in record.trials if t.outcome.metrics.get("infeasible")]
    assert result["n_infeasible"] == len(infeasible) > 0
    assert all(t.outcome.cost == 0 and t.outcome.metrics["params"] > 3000 for t in infeasible)
    front = result["pareto_front"]
    assert result["objectives"] == ["accuracy", "-params"] and front
    feasible = [(t.reward, t.outcome.metrics["params"]) for t in record.trials if not t.outcome.failed]
    for f in front:  # nothing evaluated dominates a front member
        acc, params = f["objectives"]["accuracy"], f["objectives"]["params"]
        assert params <= 3000
        assert not any(a >= acc and p <= params and (a > acc or p < params) for a, p in feasible)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["pareto_front"] == front


def test_nsga2_tournament_prefers_front_then_feasible() -> None:
    space = ToySpace()
    s = nf.create_strategy("nsga2", space, 0, objectives=["accuracy", "-params"], population=10)
    archs = [space.make([i % d.n_choices for d in space.decisions]) for i in range(4)]
    s.tell(archs, [Result(90, {"params": 10}), Result(80, {"params": 20}),  # the second is dominated
                   Result.failure("infeasible: x", infeasible=True, violation=0.5),
                   Result.failure("infeasible: y", infeasible=True, violation=0.1)])
    front, _ = s.ranking()
    assert list(front) == [0, 1, 3, 2]
    s.tell([archs[0]], [Result.failure("crashed")])  # other failures teach nothing
    assert len(s.population) == 4


def test_multiple_objectives_need_a_strategy_that_takes_them(table: Path) -> None:
    with pytest.raises(ConfigError, match="nsga2"):
        nf.build_components(nf.RunConfig(space="nb201", strategy="re", benchmark=str(table),
                                         objectives=["accuracy", "-params"]))


def test_mnas_reward_shapes_policy_rewards() -> None:
    cfg = MnasConfig(mnas_target=5.0, mnas_alpha=-0.07, mnas_beta=-1.0)
    assert mnas_reward(Result(80.0, {"latency_ms": 5.0}), cfg) == pytest.approx(80.0)
    assert mnas_reward(Result(80.0, {"latency_ms": 10.0}), cfg) == pytest.approx(40.0)
    assert mnas_reward(Result(80.0, {"latency_ms": 2.5}), cfg) == pytest.approx(80.0 * 0.5 ** -0.07)
    assert mnas_reward(Result(80.0, {}), MnasConfig()) == 80.0
    space = ToySpace()
    for name in ("ednas", "reinforce"):
        s = nf.create_strategy(name, space, 0, mnas_target=5.0, mnas_beta=-1.0, batch_size=10)
        arch = s.ask(1)[0]
        s.tell([arch], [Result(80.0, {"latency_ms": 10.0})])
        assert s.batch[-1][1] == pytest.approx(40.0)
    with pytest.raises(ConfigError, match="mnas_metric"):
        nf.create_strategy("ednas", space, 0, mnas_target=5.0, mnas_metric="accuracy")
    config = nf.factory.resolve(nf.RunConfig(space="toy", evaluator="toy", strategy="reinforce",
                                             strategy_args={"mnas_target": 3.0}))
    assert "latency_ms" in config.measure.metrics  # the evaluator is made to measure it


def test_cli_flags_are_checked_by_name(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["search", "--space", "nb201", "--strategy", "nsga2", "--benchmark", str(table), "--budget", "2"]
    assert main([*base, "--constraint", "params<=abc", "--out", str(tmp_path / "a")]) == 2
    assert "--constraint: 'params<=abc'" in capsys.readouterr().err
    assert main([*base, "--objective", "accuracy,params", "--out", str(tmp_path / "b")]) == 2
    assert "--objective: 'params' is a cost" in capsys.readouterr().err


def test_bench_hypervolume_summary_orders_strategies() -> None:
    good = [[90.0, -1.0], [80.0, -0.5], [60.0, -0.1]]
    poor = [[60.0, -1.0], None, [50.0, -0.9]]
    results = {"good": [{"objective_values": good}], "poor": [{"objective_values": poor}]}
    summary, curves = summarise_hypervolume(results, ["accuracy", "-params"], (1, 3))
    hv = summary["strategies"]
    assert hv["good"]["3"]["median"] > hv["poor"]["3"]["median"] > 0
    assert curves["good"].shape == (1, 3) and np.all(np.diff(curves["good"][0]) >= 0)


def test_a_tables_own_cost_columns_win_and_are_checked_before_the_look_up(tmp_path: Path) -> None:
    space = nf.create_space("nb201")
    archs = [space.make([i] * 6) for i in range(3)]
    path = tmp_path / "own.csv"
    path.write_text("arch,val_acc_200,test_acc_200,params,latency_ms\n" + "".join(
        f"{a},{80 + i},{81 + i},{1000 * (i + 1)},{i + 0.5}\n" for i, a in enumerate(archs)))
    config = nf.RunConfig(space="nb201", strategy="rs", benchmark=str(path), constraints=["latency_ms<=2"],
                          evaluator_args={"cost_model_args": SMALL, "cost_input": [3, 8, 8], "partial": True})
    ev = nf.build_components(config).evaluator
    results = [ev.evaluate(a) for a in archs]
    assert [r.failed for r in results] == [False, False, True]
    assert results[2].cost == 0 and results[2].metrics["latency_ms"] == 2.5
    assert results[1].metrics["params"] == 2000 and results[1].metrics["flops"] > 0  # the column, and the count


def test_the_train_evaluator_never_trains_an_infeasible_network() -> None:
    config = nf.RunConfig(space="nb201", evaluator="train", dataset="digits", constraints=["params<=10000"],
                          evaluator_args={"epochs": 1, "model_args": {"C": 4, "N": 1}, "resolution": 4,
                                          "fraction": 0.2})
    ev = nf.build_components(config).evaluator
    space = ev.space
    cheap = space.parse("|none~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    costly = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    ok, skipped = ev.evaluate(cheap), ev.evaluate(costly)
    assert not ok.failed and ok.metrics["params"] <= 10000 and "train_time_s" in ok.metrics
    assert skipped.failed and skipped.metrics["infeasible"] and skipped.cost == 0
    assert skipped.metrics["params"] > 10000 and "train_time_s" not in skipped.metrics  # never trained
