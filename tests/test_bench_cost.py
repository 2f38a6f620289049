"""Cost-aware benchmarking: incumbent over cumulative cost, samples to the optimum, the bench's texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nasforge.bench import cost_to_reach, incumbent_at_cost, to_optimum_text
from nasforge.cli import main


def _run(acc: list[float | None], cost: list[float]) -> dict:
    return {"incumbent_test_accuracy": acc, "cumulative_cost": cost, "samples_to_optimum": None}


def test_incumbent_at_cost_takes_the_last_evaluation_within_the_cost_and_stops_with_the_cheapest_seed() -> None:
    runs = [_run([None, 90.0, 92.0], [1.0, 2.0, 12.0]), _run([80.0, 94.0], [5.0, 10.0])]
    mat = incumbent_at_cost(runs, np.array([0.5, 1.0, 5.0, 10.0, 12.0]))
    assert np.isnan(mat[0, :2]).all() and mat[0, 2:4].tolist() == [90.0, 90.0]
    assert np.isnan(mat[1, 0:2]).all() and mat[1, 2:4].tolist() == [80.0, 94.0]
    assert np.isnan(mat[:, 4]).all()  # past 10, the cheapest seed's total: no point averages fewer seeds
    assert cost_to_reach(runs, 92.0) == 10.0  # mean of 90 and 94
    assert cost_to_reach(runs, 95.0) is None


def test_to_optimum_says_how_many_seeds_found_it() -> None:
    none = {"samples_to_optimum": {"mean": 50.0, "median": 50.0, "found_fraction": 0.0, "n_found": 0,
                                   "mean_found": None}}
    assert to_optimum_text(none, 3) == "— (0/3 found)"
    some = {"samples_to_optimum": {"mean": 40.0, "median": 30.0, "found_fraction": 2 / 3, "n_found": 2,
                                   "mean_found": 35.0}}
    assert to_optimum_text(some, 3) == "35 (2/3 found)"


def test_bench_reports_incumbent_by_cumulative_cost_and_samples_to_the_optimum(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "--space", "toy", "--evaluator", "toy", "--strategies", "hyperband,rs", "--budget", "40",
                 "--seeds", "3", "--jobs", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost_unit"] == "full trainings"
    by_cost = summary["incumbent_test_accuracy_by_cost"]
    assert set(by_cost) == {"hyperband", "rs"}
    for name, points in by_cost.items():
        costs = [float(c) for c in points]
        assert costs == sorted(costs) and len(costs) > 5
        assert all(set(v) == {"mean", "q25", "q75"} and v["q25"] <= v["q75"] for v in points.values())
        run = json.loads((out / "runs" / name / "seed_0.json").read_text())
        assert len(run["cumulative_cost"]) == 40 and np.all(np.diff(run["cumulative_cost"]) >= 0)
    # hyperband's 40 evaluations cost fewer full trainings than random search's 40 (most are at 1/9 or 1/3)
    assert summary["strategies"]["hyperband"]["cost_per_seed"] < 0.5 * summary["strategies"]["rs"]["cost_per_seed"]
    assert max(map(float, by_cost["hyperband"])) < max(map(float, by_cost["rs"]))
    for figure in ("curves.png", "curves_by_cost.png", "samples_to_optimum.png"):
        assert (out / figure).stat().st_size > 10_000
    text = (out / "summary.md").read_text()
    assert "budget 40, 3 seeds" in text and "can dip" in text and "found)" in text


def test_a_budget_below_the_report_budgets_is_reported_at_itself(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert main(["-q", "bench", "--space", "toy", "--evaluator", "toy", "--strategies", "rs", "--budget", "12",
                 "--seeds", "2", "--jobs", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["strategies"]["rs"]["incumbent_test_accuracy"]) == ["12"]
    header = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| strategy"))
    assert header == "| strategy | @12 | to optimum | cost/seed | ms/query |"


def test_bench_refuses_no_parallel_processes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "--space", "toy", "--evaluator", "toy", "--strategies", "rs", "--budget", "5", "--seeds",
                 "1", "--jobs", "0", "--out", str(out)]) == 2
    assert "--jobs: must be at least 1, got 0" in capsys.readouterr().err
    assert not out.exists()  # refused before anything is written
