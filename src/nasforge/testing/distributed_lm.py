"""Helpers for testing data-parallel language-model training: a tiny corpus in Penn Treebank's layout, and the
final training and one-shot search a replica runs on it (start the replicas with
:func:`nasforge.testing.distributed.run_replicas`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["NO_DROPOUT", "FIXED_CELL", "lm_checks", "search_config", "write_tiny_ptb"]

#: a small language model without dropout: data-parallel training is then one process' up to float order
NO_DROPOUT = {"emb_size": 16, "hidden_size": 16, "dropout_embedding": 0.0, "dropout_input": 0.0,
              "dropout_hidden": 0.0, "dropout_output": 0.0}
#: a fixed recurrent cell of the ``enas-rnn`` space with 4 nodes
FIXED_CELL = "0:tanh 1:relu<-0 2:sigmoid<-1 3:tanh<-1"


def write_tiny_ptb(folder: str | Path) -> Path:
    """A tiny corpus in PTB's layout (``ptb.{train,valid,test}.txt``) whose sentences follow a few fixed patterns,
    so that a model learns it in a few steps."""
    folder = Path(folder)
    rng = np.random.default_rng(0)
    patterns = ["the cat sat on the mat", "a dog ran to the park", "the bird sang in a tree",
                "a fish swam in the sea"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 250), ("valid", 80), ("test", 40)):
        lines = [patterns[i] for i in rng.integers(len(patterns), size=n)]
        (folder / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def search_config(data: str | Path, budget: int = 8, **evaluator_args: Any) -> Any:
    """A short ``supernet-lm`` search (EDNAS) on the corpus ``data``, without dropout, on 7 training columns
    (an uneven split between 2 replicas) and 5 validation columns."""
    import nasforge as nf

    args = {"model_args": NO_DROPOUT, "batch_size": 7, "bptt": 10, "valid_batch_size": 5, "lr": 5.0,
            **evaluator_args}
    return nf.RunConfig(space="enas-rnn", space_args={"nodes": 4}, evaluator="supernet-lm", strategy="ednas",
                        budget=budget, seed=0, dataset="ptb", data=str(data), evaluator_args=args)


def lm_checks(out: str | Path, data: str | Path) -> None:
    """A final training of :data:`FIXED_CELL` (2 epochs, 7 columns) and a short search (:func:`search_config`) on
    the corpus ``data``, replicated when this process is in a process group; each replica saves what it got to
    ``out`` with ``.rankR.npz`` (weights, losses, perplexities, the columns the final training forwarded, rewards,
    the checkpoint's hidden state) and
    ``.rankR.json`` (the search's derivation)."""
    import nasforge as nf

    from ..models.rnn_lm import RNNLanguageModel
    from ..train.distributed import Replicas, init_from_env, shutdown
    from ..train.lm import LMTrainConfig, train_language_model
    from ..train.text import load_corpus

    init_from_env("cpu")
    torch.set_num_threads(1)
    replicas = Replicas.current()
    rank = 0 if replicas is None else replicas.rank
    arrays: dict[str, np.ndarray] = {}
    space = nf.create_space("enas-rnn", nodes=4)
    config = LMTrainConfig(epochs=2, batch_size=7, eval_batch_size=5, bptt=10, lr=5.0)
    columns: set[tuple[bool, int]] = set()

    def count(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if isinstance(module, RNNLanguageModel):
            columns.add((module.training, int(args[0].shape[1])))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        done = train_language_model(space, space.parse(FIXED_CELL), load_corpus(data), config,
                                    model_args=NO_DROPOUT, seed=0)
    finally:
        hook.remove()
    arrays["final_columns"] = np.array(sorted(columns))  # (training, columns) of every forward pass
    arrays.update({f"final:{k}": v.detach().numpy() for k, v in done.model.state_dict().items()})
    arrays["final_losses"] = np.array([r["train_loss"] for r in done.history])
    arrays["final_valid"] = np.array([r["valid_perplexity"] for r in done.history])
    arrays["final_test"] = np.array(done.test_perplexity)

    parts = nf.build_components(search_config(data))
    record, result = nf.search(parts.config, components=parts)
    evaluator: Any = parts.evaluator
    arrays.update({f"search:{k}": v.detach().numpy() for k, v in evaluator.supernet.state_dict().items()})
    arrays["rewards"] = np.array([t.reward for t in record.trials])
    arrays["train_losses"] = np.array([t.result.metrics["train_loss"] for t in record.trials if t.result is not None])
    arrays["archs"] = np.array([str(t.arch) for t in record.trials])
    arrays["test_perplexity"] = np.array(evaluator.test_perplexity(record.trials[-1].arch))
    state = evaluator.state_dict()  # every replica alike: the hidden state is gathered
    arrays["hidden"] = state["hidden"].numpy()
    arrays["local_hidden"] = evaluator.hidden.numpy()
    again: Any = nf.build_components(parts.config).evaluator
    again.load_state_dict(state)  # a resumed replica takes its columns of the saved state back
    arrays["reloaded_hidden"] = again.hidden.numpy()
    np.savez(f"{out}.rank{rank}.npz", **arrays)  # type: ignore[arg-type]
    Path(f"{out}.rank{rank}.json").write_text(json.dumps(result["derived"], default=float))
    shutdown()
