"""LaNAS: the tree partitions the evaluated architectures, splits separate good from bad, sampling
stays inside the selected region, and ``nasforge lanas-tree`` shows a run's tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nasforge.cli import main
from nasforge.run.loop import run_search
from nasforge.strategies.lanas import LaNAS, LaNASConfig
from nasforge.testing.tables import write_nb201_table
from nasforge.testing.toy import ToyEvaluator, ToySpace


class UnboundedToySpace(ToySpace):
    """The toy space pretending not to be enumerable, to exercise the sampling path of infinite spaces."""

    @property
    def size(self) -> None:
        return None


def _searched(space: ToySpace, budget: int = 80, seed: int = 0, **config) -> LaNAS:
    strategy = LaNAS(space, LaNASConfig(**config), seed=seed)
    run_search(space, strategy, ToyEvaluator(space), budget, seed=seed)
    return strategy


@pytest.fixture(scope="module")
def searched() -> LaNAS:
    strategy = _searched(ToySpace())
    strategy.learn()  # the tree as learnt from every sample, so that its splits describe them all
    return strategy


def _leaves(strategy: LaNAS) -> list[int]:
    return [i for i, node in enumerate(strategy.nodes) if node.is_leaf]


def test_leaves_partition_the_evaluated_architectures(searched: LaNAS) -> None:
    leaves = _leaves(searched)
    assert len(leaves) > 4, "80 samples should grow a tree with several leaves"
    inside = np.stack([searched.inside(searched._path(leaf), searched.encodings) for leaf in leaves])
    assert (inside.sum(axis=0) == 1).all(), "every evaluated architecture lies in exactly one leaf"
    counts, _, _ = searched.node_stats()
    assert counts[leaves].sum() == len(searched.rewards) == 80
    assert list(counts[leaves]) == list(inside.sum(axis=1))


def test_leaves_partition_the_whole_finite_space(searched: LaNAS) -> None:
    searched._ensure_table()
    regions = np.stack([searched._region(leaf) for leaf in _leaves(searched)])
    assert (regions.sum(axis=0) == 1).all()


def test_every_split_puts_the_better_half_left(searched: LaNAS) -> None:
    tree = searched.observe()
    splits = [n for n in tree["nodes"] if not n["leaf"]]
    assert splits
    for node in splits:
        left, right = tree["nodes"][node["left"]], tree["nodes"][node["right"]]
        assert left["side"] == "good" and right["side"] == "bad"
        assert left["count"] > 0 and right["count"] > 0
        assert left["count"] + right["count"] == node["count"]
        assert left["mean_reward"] > right["mean_reward"], f"split {node['id']}"
        assert left["mean_rank"] > right["mean_rank"]


def test_the_tree_names_its_nodes_as_the_report_reads_them(searched: LaNAS) -> None:
    from nasforge.report.lanas import node_name

    nodes = searched.observe()["nodes"]
    assert nodes[0]["parent"] is None and node_name(nodes[0]) == "root"
    assert all(node_name(n).endswith(f"of {n['parent']})") for n in nodes[1:])
    assert node_name({**nodes[0], "parent": -1}) == "root"  # as runs recorded before gave it


def test_tree_has_the_configured_height_at_most() -> None:
    strategy = _searched(ToySpace(), budget=60, height=3)
    assert max(node.depth for node in strategy.nodes) <= 2
    assert len(_leaves(strategy)) <= 4


def test_ucb_prefers_the_good_side_without_exploration(searched: LaNAS) -> None:
    greedy = LaNAS(searched.space, LaNASConfig(cp=0.0), seed=0)
    greedy.load_state_dict(searched.state_dict())
    path = greedy.select_path()
    for parent, child in zip(path, path[1:]):
        good = greedy.nodes[parent].left
        assert child == good or not greedy._open(good), "cp=0 goes to the good child unless it is exhausted"
    counts, q, _ = greedy.node_stats()
    assert q[path[-1]] >= q[0]


def test_proposals_are_new_and_inside_the_selected_leaf(searched: LaNAS) -> None:
    strategy = LaNAS(searched.space, seed=0)
    strategy.load_state_dict(searched.state_dict())
    path = strategy.select_path()
    strategy._ensure_table()
    free = int((strategy._region(path[-1]) & ~strategy.taken).sum())
    assert free > 0
    for _ in range(min(free, 10)):
        arch = strategy.ask(1)[0]
        assert not strategy.sampler.is_new(arch)  # marked as proposed
        assert strategy.inside(path, strategy.space.encode(arch).astype(np.float64))
    # an exhausted leaf: the deepest constraint is dropped, the parent's region is used
    strategy.taken |= strategy._region(path[-1])
    arch = strategy.propose(path)
    x = strategy.space.encode(arch).astype(np.float64)
    deepest_open = max(k for k in range(1, len(path)) if strategy._open(path[k - 1]))
    assert not strategy.inside(path, x) and strategy.inside(path[:deepest_open], x)


def test_sampling_in_a_space_that_is_not_enumerated() -> None:
    space = UnboundedToySpace()
    strategy = _searched(space, budget=60, seed=1)
    strategy.learn()
    assert not strategy.finite and strategy._table is None
    archs = [strategy.ask(1)[0] for _ in range(20)]
    assert len({a.choices for a in archs}) == 20
    found = 0
    for leaf in _leaves(strategy):
        path = strategy._path(leaf)
        arch = strategy._sample_region(path)
        if arch is not None:
            found += 1
            assert strategy.sampler.is_new(arch)
            assert strategy.inside(path, space.encode(arch).astype(np.float64))
    assert found >= len(_leaves(strategy)) // 2, "rejection and random-walk sampling reach most leaves"


def test_random_walk_fallback_stays_inside_the_region() -> None:
    space = UnboundedToySpace()
    strategy = _searched(space, budget=60, seed=2, sample_tries=1)
    strategy.learn()
    leaf = max(_leaves(strategy), key=lambda i: strategy.nodes[i].depth)
    path = strategy._path(leaf)
    walked = [strategy._random_walk(path) for _ in range(10)]
    found = [a for a in walked if a is not None]
    for arch in found:
        assert strategy.inside(path, space.encode(arch).astype(np.float64))


def test_learns_faster_than_random_on_the_toy_space() -> None:
    space = ToySpace()
    evaluator = ToyEvaluator(space)
    best = []
    for seed in range(3):
        strategy = LaNAS(space, seed=seed)
        record = run_search(space, strategy, evaluator, 60, seed=seed)
        best.append(np.mean(sorted(t.reward for t in record.trials)[-10:]))
    rng = np.random.default_rng(0)
    random_top = [np.mean(sorted(evaluator.evaluate(space.sample(rng)).reward for _ in range(60))[-10:])
                  for _ in range(3)]
    assert np.mean(best) > np.mean(random_top)


def test_observation_is_plain_data(searched: LaNAS) -> None:
    tree = searched.observe()
    assert json.loads(json.dumps(tree)) == tree
    assert tree["nodes"][0]["count"] == len(searched.rewards)


@pytest.fixture(scope="module")
def fake_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nb201_table(tmp_path_factory.mktemp("table") / "fake-nb201.csv")


def test_cli_prints_and_draws_the_tree_of_a_run(fake_table: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(["-q", "search", "--space", "nb201", "--benchmark", str(fake_table), "--strategy", "lanas",
                 "--budget", "40", "--seed", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    png = tmp_path / "tree.png"
    assert main(["lanas-tree", str(out), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "LaNAS tree: 40 samples" in text and "n=40" in text
    assert "good" in text and "bad" in text
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_refuses_a_run_of_another_strategy(fake_table: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "rs"
    assert main(["-q", "search", "--space", "nb201", "--benchmark", str(fake_table), "--strategy", "rs",
                 "--budget", "5", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["lanas-tree", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lanas" in err[0]
    assert main(["lanas-tree", str(tmp_path / "missing")]) == 2
