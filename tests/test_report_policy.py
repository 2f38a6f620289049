"""``nasforge policy RUN_DIR``: heatmaps of stored policy snapshots and cumulative sampling histograms."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

import nasforge as nf
from nasforge.cli import main
from nasforge.report.policy import pick_evenly, plot_policy_heatmaps, sample_counts
from nasforge.run.store import Trial
from test_strategies_ednas import ConditionalSpace


def _run(tmp_path, strategy: str, budget: int = 40, **kw) -> str:
    config = nf.RunConfig(space=kw.pop("space", "toy"), evaluator=kw.pop("evaluator", "toy"), strategy=strategy,
                          budget=budget, seed=0, **kw)
    out = tmp_path / f"run-{strategy}"
    nf.search(config, out)
    return str(out)


def _is_picture(path) -> bool:
    img = mpimg.imread(path)
    return img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 200 and float(img[..., :3].std()) > 0.05


def test_policy_command_plots_a_real_run(tmp_path, capsys) -> None:
    run_dir = _run(tmp_path, "ednas")
    out = tmp_path / "plots"
    assert main(["policy", run_dir, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.rsplit("/", 1)[-1] for p in printed)
    assert names == ["policy_operation.png", "policy_structure.png", "samples_operation.png", "samples_structure.png"]
    assert all(str(out) in p and _is_picture(p) for p in printed)


def test_policy_command_on_nb201_skips_the_empty_structure_group(tmp_path, capsys, nb201_table) -> None:
    run_dir = _run(tmp_path, "reinforce", 30, space="nb201", evaluator="tabular", benchmark=str(nb201_table))
    assert main(["policy", run_dir]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(p.rsplit("/", 1)[-1] for p in printed) == ["policy_operation.png", "samples_operation.png"]
    assert all(p.startswith(f"{run_dir}/policy/") for p in printed)


@pytest.mark.parametrize("strategy, said", [("rs", "no policy snapshots"), ("nao", "its snapshots record fitted")])
def test_strategy_without_policy_still_gets_histograms(strategy: str, said: str, tmp_path, capsys, caplog) -> None:
    run_dir = _run(tmp_path, strategy, 20)
    assert main(["policy", run_dir]) == 0
    out = capsys.readouterr().out
    assert sorted(p.rsplit("/", 1)[-1] for p in out.split()) == ["samples_operation.png", "samples_structure.png"]
    assert "no option probabilities to draw" in caplog.text and said in caplog.text  # why there is no heat map


def test_bad_run_directory_is_one_line_error(tmp_path, capsys) -> None:
    assert main(["policy", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasforge: error:") and "\n" not in err


def test_counts_are_cumulative_and_skip_inactive_decisions() -> None:
    space = ConditionalSpace()
    archs = [space.make(c) for c in ([0, 1, 2], [1, 1, 2], [1, 0, 1], [0, 2, 0], [1, 2, 2])]
    trials = [Trial(i + 1, a) for i, a in enumerate(archs)]
    counts = sample_counts(space, trials, [2, 5])
    np.testing.assert_array_equal(counts[0], [[1, 1], [1, 2]])
    np.testing.assert_array_equal(counts[1], [[0, 2, 0], [1, 0, 2]])
    np.testing.assert_array_equal(counts[2], [[0, 0, 1], [0, 1, 1]])  # only when n2 takes input 1
    assert counts[2].sum() == sum(a.choices[0] == 1 for a in archs)


def test_heatmap_panels_are_chosen_evenly(tmp_path) -> None:
    assert pick_evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert pick_evenly([1, 2], 4) == [1, 2]
    space = ConditionalSpace()
    snaps = [(n, {"structure": {"n2": [0.5, 0.5]}, "operation": {"e0": [0.2, 0.3, 0.5], "e1": [1 / 3] * 3}})
             for n in (10, 20, 30)]
    paths = plot_policy_heatmaps(space, snaps, tmp_path, max_panels=2)
    assert [p.name for p in paths] == ["policy_structure.png", "policy_operation.png"]
    assert all(_is_picture(p) for p in paths)



def test_heatmap_colours_and_numbers_are_the_same_probabilities(tmp_path) -> None:
    import matplotlib.pyplot as plt

    from nasforge.report.policy import Normalize, _heat_panel

    space = ConditionalSpace()
    decisions = list(space.decisions[:2])
    values = np.array([[0.7, 0.3, np.nan], [0.2, 0.5, 0.3]])[:, : max(d.n_choices for d in decisions)]
    fig, ax = plt.subplots()
    image = _heat_panel(ax, decisions, values, None, Normalize(0.0, 0.7), "t")
    shown = np.ma.filled(image.get_array(), np.nan)
    assert np.allclose(shown, values, equal_nan=True)  # the colour is the printed probability, not a ratio
    texts = [t.get_text() for t in ax.texts]
    assert any(t.endswith("0.70") for t in texts)
    assert all("uniform" in label.get_text() for label in ax.get_yticklabels())
    plt.close(fig)


def test_lanas_tree_names_every_node() -> None:
    from nasforge.report.lanas import node_name

    nodes = [{"id": 0, "parent": None, "leaf": False, "side": "root"},
             {"id": 1, "parent": 0, "leaf": True, "side": "good"},
             {"id": 2, "parent": 0, "leaf": False, "side": "bad"}]
    assert [node_name(n) for n in nodes] == ["root", "leaf 1 (good of 0)", "split 2 (bad of 0)"]
