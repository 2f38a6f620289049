"""The benchmark scripts' own logic (the scripts themselves need ../shared data and minutes of CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

import nasforge as nf

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_computation_groups_nb201_cells_by_what_they_compute() -> None:
    settings = load("supernet_nb201_settings")
    space = nf.create_space("nb201")

    def comp(text: str) -> str:
        return settings.computation(space, space.parse(text).choices)

    single_conv = comp("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert single_conv == "nor_conv_3x3(x)"
    # node 1 has no input, so its outgoing convolutions compute nothing: the same network
    assert comp("|none~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_1x1~2|") == single_conv
    # sums are unordered
    assert (comp("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
            == comp("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"))
    # a node that feeds nothing into the output does not change the computation
    assert (comp("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
            == comp("|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|") == single_conv)
    assert comp("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|") == "zero"
    groups = {settings.computation(space, a.choices) for a in space.enumerate()}
    assert len(groups) == 8765
    # the de-isomorphic sampler draws every computation with the same probability
    draw = settings.distinct_computations(space)
    rng = np.random.default_rng(0)
    drawn = [comp(str(draw(rng))) for _ in range(4000)]
    assert drawn.count(single_conv) < 10  # 341 of the 15,625 strings: about 87 of 4,000 uniform strings


def test_the_retrained_pick_is_judged_for_the_best_k_candidates(tmp_path: Path) -> None:
    judge = load("oneshot_nb201")
    space = nf.create_space("nb201")
    archs = [str(a) for a in sorted({space.sample(np.random.default_rng(s)) for s in range(12)}, key=str)][:12]
    table_csv = tmp_path / "t.csv"
    truth = {a: 90.0 + i for i, a in enumerate(archs)}
    table_csv.write_text("arch,val_acc_200,test_acc_200\n"
                         + "".join(f"{a},{v - 3},{v}\n" for a, v in truth.items()))
    table = judge.Table(table_csv, space)
    # shared weights rank the candidates backwards; the retraining gets all but the best right
    cands = [{"arch": a, "score": 50.0 + i, "retrained": 60.0 - i} for i, a in enumerate(reversed(archs))]
    cands[0]["retrained"] = 0.0
    cands[1]["retrained"] = None  # a failed training is left out
    (line,) = judge.retrained_summary({"retrained": {"epochs": 5, "candidates": cands}}, space, table)
    assert line.startswith("retrained (5 epochs) picks top 3 99.00, top 5 99.00, top 10 99.00")
    assert "best of the 11 101.00" in line and "shared -1.000" in line
    assert judge.retrained_summary({}, space, table) == []
