"""Conformance suites over every registered space, evaluator and executor: a plug-in is checked by adding it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import pytest

import nasforge as nf
from conftest import shared_file
from nasforge.registry import EVALUATORS, EXECUTORS, SPACES
from nasforge.testing import conformance
from nasforge.testing.tables import write_nb201_table


def _ptb(tmp: Path) -> str:
    folder = tmp / "ptb"
    folder.mkdir()
    words = " ".join(f"w{i % 23}" for i in range(4000))
    for split in ("train", "valid", "test"):
        (folder / f"ptb.{split}.txt").write_text(words + "\n")
    return str(folder)


#: the smallest meaningful run config of each built-in evaluator (a new built-in must add one here)
EXAMPLES: dict[str, Callable[[Path], nf.RunConfig]] = {
    "tabular": lambda tmp: nf.RunConfig(space="nb201", evaluator="tabular",
                                        benchmark=str(write_nb201_table(tmp / "t.csv"))),
    "surrogate": lambda tmp: nf.RunConfig(space="darts", evaluator="surrogate",
                                          benchmark=str(shared_file("nb301-surrogate"))),
    "train": lambda tmp: nf.RunConfig(space="nb201", evaluator="train", dataset="digits", evaluator_args={
        "epochs": 1, "model_args": {"C": 4, "N": 1}, "resolution": 4}),
    "supernet": lambda tmp: nf.RunConfig(space="nb201", evaluator="supernet", dataset="digits", budget=10,
                                         evaluator_args={"model_args": {"C": 4, "N": 1}, "resolution": 4}),
    "supernet-lm": lambda tmp: nf.RunConfig(space="enas-rnn", evaluator="supernet-lm", dataset="ptb", data=_ptb(tmp),
                                            budget=10, evaluator_args={"model_args": {"emb_size": 8, "hidden_size": 8},
                                                                       "batch_size": 4, "bptt": 5}),
    "zerocost": lambda tmp: nf.RunConfig(space="nb201", evaluator="zerocost", dataset="digits", evaluator_args={
        "model_args": {"C": 4, "N": 1}, "resolution": 4, "batch_size": 8, "reference": 4}),
    "toy": lambda tmp: nf.RunConfig(space="toy", evaluator="toy"),
    "faulty": lambda tmp: nf.RunConfig(space="toy", evaluator="faulty"),
}


def test_every_registered_evaluator_has_an_example() -> None:
    assert sorted(EVALUATORS.names()) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_evaluator_conformance(name: str, tmp_path: Path) -> None:
    parts = nf.build_components(EXAMPLES[name](tmp_path))
    conformance.check_evaluator(parts.evaluator)


@pytest.mark.parametrize("name", SPACES.names())
def test_space_conformance(name: str) -> None:
    conformance.check_space(nf.create_space(name))


@pytest.mark.parametrize("name", EXECUTORS.names())
def test_executor_conformance(name: str) -> None:
    if EXECUTORS.get(name).capabilities.get("distributed") and importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'nasforge[ray]')")
    conformance.check_executor(name, workers=1 if EXECUTORS.get(name).capabilities.get("in_process") else 2)
