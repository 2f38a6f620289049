"""Data-parallel language models: two gloo processes, each on its share of the text's columns, train and score as
one process does on all of them (dropout off: its masks are drawn per process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nasforge.testing.distributed import run_replicas
from nasforge.testing.distributed_lm import lm_checks, write_tiny_ptb
from nasforge.train.distributed import Replicas

dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)

#: float summation order is the only difference without dropout (measured: at most 3e-6 on the weights)
ATOL = 1e-4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_ptb(tmp_path_factory.mktemp("lmdp") / "ptb")


@pytest.fixture(scope="module")
def runs(corpus: Path) -> dict[str, tuple[Any, dict]]:
    """One process and two replicas (one start of the replicas for all tests: it costs seconds) run
    :func:`lm_checks`: a final training of a fixed cell and a short supernet-lm search."""
    tmp = corpus.parent
    lm_checks(tmp / "one", corpus)
    run_replicas(2, lm_checks, tmp / "two", corpus)
    return {name: (np.load(tmp / f"{name}.npz"), json.loads((tmp / f"{name}.json").read_text()))
            for name in ("one.rank0", "two.rank0", "two.rank1")}


def _weights(arrays: Any, prefix: str) -> list[str]:
    return [k for k in arrays.files if k.startswith(prefix)]


@pytest.mark.slow  # starts processes (the shared fixture: ~20 s on one core)
def test_two_processes_train_a_fixed_cell_like_one(runs) -> None:
    """2 epochs of final training on 7 columns (4 + 3 per replica, varying window lengths): the replicas hold the
    same weights, equal to one process' within 1e-4, with the same losses and validation and test perplexities."""
    (one, _), (r0, _), (r1, _) = runs["one.rank0"], runs["two.rank0"], runs["two.rank1"]
    keys = _weights(one, "final:")
    assert keys and set(keys) == set(_weights(r0, "final:"))
    for key in keys:
        assert np.array_equal(r0[key], r1[key]), key
        assert np.allclose(r0[key], one[key], atol=ATOL), (key, np.abs(r0[key] - one[key]).max())
    for key in ("final_losses", "final_valid", "final_test"):
        assert np.array_equal(r0[key], r1[key]), key
        assert np.allclose(r0[key], one[key], rtol=1e-5), (key, r0[key], one[key])
    assert one["final_losses"][-1] < one["final_losses"][0], "training must have learnt something"
    # (training, columns) of the forward passes: each replica trains on its 4 or 3 of the 7 columns and scores on
    # its 3 or 2 of the 5 evaluation columns
    assert one["final_columns"].tolist() == [[0, 5], [1, 7]]
    assert r0["final_columns"].tolist() == [[0, 3], [1, 4]] and r1["final_columns"].tolist() == [[0, 2], [1, 3]]


@pytest.mark.slow  # starts processes (the shared fixture: ~20 s on one core)
def test_two_process_supernet_lm_search_is_one_process(runs) -> None:
    """8 steps of a supernet-lm search: both replicas see the same rewards (so their policies sample the same
    cells) and hold the same shared weights; rewards, losses and weights are one process' within tolerance, and
    so are the test perplexity and the derivation."""
    (one, d1), (r0, d0), (r1, dr1) = runs["one.rank0"], runs["two.rank0"], runs["two.rank1"]
    assert list(r0["archs"]) == list(r1["archs"]) == list(one["archs"])
    assert np.array_equal(r0["rewards"], r1["rewards"]) and np.array_equal(r0["train_losses"], r1["train_losses"])
    assert np.allclose(r0["rewards"], one["rewards"], rtol=1e-5)
    assert np.allclose(r0["train_losses"], one["train_losses"], rtol=1e-5)
    assert len(set(one["rewards"].tolist())) > 1
    keys = _weights(one, "search:")
    for key in keys:
        assert np.array_equal(r0[key], r1[key]), key
        assert np.allclose(r0[key], one[key], atol=ATOL), (key, np.abs(r0[key] - one[key]).max())
    assert float(r0["test_perplexity"]) == float(r1["test_perplexity"])
    assert np.isclose(float(r0["test_perplexity"]), float(one["test_perplexity"]), rtol=1e-5)
    assert d0 == dr1
    assert [c["arch"] for c in d0["ranked"]] == [c["arch"] for c in d1["ranked"]]
    assert np.allclose([c["score"] for c in d0["ranked"]], [c["score"] for c in d1["ranked"]], rtol=1e-5)


@pytest.mark.slow  # starts processes (the shared fixture: ~20 s on one core)
def test_a_checkpoint_holds_the_whole_batchs_hidden_state(runs) -> None:
    """Each replica carries the hidden state of its columns only (4 and 3 of 7); a checkpoint gathers the whole
    batch's, one process' state, and a replica loading it takes its own columns back."""
    (one, _), (r0, _), (r1, _) = runs["one.rank0"], runs["two.rank0"], runs["two.rank1"]
    assert r0["local_hidden"].shape[0] == 4 and r1["local_hidden"].shape[0] == 3
    assert np.array_equal(r0["hidden"], r1["hidden"]) and r0["hidden"].shape == one["hidden"].shape
    assert np.allclose(r0["hidden"], one["hidden"], atol=ATOL) and np.abs(one["hidden"]).sum() > 0
    assert np.array_equal(np.concatenate([r0["local_hidden"], r1["local_hidden"]]), r0["hidden"])
    for r in (r0, r1):
        assert np.array_equal(r["reloaded_hidden"], r["local_hidden"])


@pytest.mark.slow  # starts processes
def test_search_nproc_2_on_a_language_model(corpus: Path, tmp_path: Path) -> None:
    """``nasforge search --evaluator supernet-lm --nproc 2`` end to end, then the derived cell's final training
    with ``nasforge train --nproc 2``: rank 0 writes each run directory, the numbers are those of a trained
    model."""
    from nasforge.cli import main

    out = tmp_path / "search"
    code = main(["-q", "search", "--space", "enas-rnn", "--evaluator", "supernet-lm", "--strategy", "ednas",
                 "--dataset", "ptb", "--data", str(corpus), "--budget", "6", "--out", str(out), "--nproc", "2",
                 "--set", "space.nodes=4", "--set", "evaluator.batch_size=8", "--set", "evaluator.bptt=10",
                 "--set", "evaluator.valid_batch_size=8", "--set", "evaluator.model_args={emb_size: 16, hidden_size: 16}"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["n_evaluations"] == 6 and result["derived"]["sampled_best"]["arch"]
    final = tmp_path / "final"
    code = main(["-q", "train", "--from", str(out), "--dataset", "ptb", "--data", str(corpus), "--epochs", "2",
                 "--out", str(final), "--nproc", "2", "--set", "model.emb_size=16", "--set", "model.hidden_size=16",
                 "--set", "train.batch_size=8", "--set", "train.bptt=10", "--set", "train.lr=5"])
    assert code == 0
    trained = json.loads((final / "result.json").read_text())
    vocab = trained["genotype"]["model_args"]["vocab_size"]
    assert trained["replicas"] == 2 and trained["epochs"] == 2
    assert 1 < trained["test_perplexity"] < vocab
    assert {p.name for p in tmp_path.iterdir()} == {"search", "final"}


def test_too_few_columns_for_the_replicas_is_a_config_error() -> None:
    from nasforge.errors import ConfigError
    from nasforge.train.text import column_share

    data = torch.arange(20).view(10, 2)
    with pytest.raises(ConfigError, match="batch_size: 2 columns cannot be split among 3"):
        column_share(data, Replicas(0, 3))
    part, share = column_share(torch.arange(21).view(3, 7), Replicas(1, 2))
    assert part.tolist() == [[4, 5, 6], [11, 12, 13], [18, 19, 20]] and share == 3 / 7


def test_replicas_draw_dropout_from_streams_of_their_own() -> None:
    from nasforge.train.text import replica_seed

    seeds = {replica_seed(s, r) for s in (0, 1) for r in range(3)}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)


def test_the_searchs_dropout_state_moves_on_alike_on_every_replica(corpus: Path) -> None:
    """Data-parallel, each replica draws its masks from a stream of its own (rank 0's and rank 1's differ), and the
    dropout state a checkpoint keeps moves on the same on every replica, whatever each drew."""
    import nasforge as nf
    from nasforge.testing.distributed_lm import search_config

    evaluator: Any = nf.build_components(search_config(corpus)).evaluator
    start = evaluator.dropout_state.clone()
    draws, states = [], []
    for rank, n in ((0, 4), (1, 3)):
        evaluator.replicas, evaluator.dropout_state = Replicas(rank, 2), start.clone()
        with evaluator._own_randomness():
            draws.append(torch.rand(n))
        states.append(evaluator.dropout_state)
    assert not torch.equal(draws[0][:3], draws[1])
    assert torch.equal(states[0], states[1]) and not torch.equal(states[0], start)
