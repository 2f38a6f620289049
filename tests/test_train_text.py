"""Language-model data (PTB layout, folder or zip), batches for truncated BPTT, perplexity and training."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_file
from nasforge import create_space
from nasforge.errors import DataError
from nasforge.train.text import (
    EOS,
    Corpus,
    TrainingDiverged,
    batchify,
    bptt_batches,
    evaluate_perplexity,
    load_corpus,
    train_lm_epoch,
    window_lengths,
)

TEXTS = {
    "train": "the cat sat\nthe dog ran <unk>\n",
    "valid": "the cat ran\nthe bird sat\n",  # 'bird' is not in the training text
    "test": "a dog\n",  # 'a' neither
}


def _write_folder(folder: Path, texts: dict[str, str] = TEXTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in texts.items():
        (folder / f"ptb.{split}.txt").write_text(text)
    return folder


def test_corpus_appends_end_of_sentence_and_builds_the_vocabulary_from_training() -> None:
    corpus = Corpus.from_lines(*(TEXTS[s].splitlines() for s in ("train", "valid", "test")))
    assert corpus.words == ["the", "cat", "sat", EOS, "dog", "ran", "<unk>"]
    assert corpus.train.dtype == torch.long and corpus.train.tolist() == [0, 1, 2, 3, 0, 4, 5, 6, 3]
    assert corpus.decode(corpus.valid) == ["the", "cat", "ran", EOS, "the", "<unk>", "sat", EOS]
    assert corpus.decode(corpus.test) == ["<unk>", "dog", EOS]


def test_unknown_words_without_unk_token_are_an_error() -> None:
    with pytest.raises(DataError, match="valid: 1 word.*'bird'.*no <unk>"):
        Corpus.from_lines(["the cat"], ["the bird"], ["the"])
    with pytest.raises(DataError, match="training text is empty"):
        Corpus.from_lines([], ["a"], ["b"])


def test_folder_and_zip_with_macosx_folder_read_the_same(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "ptb")
    archive = tmp_path / "ptb.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for split, text in TEXTS.items():
            z.writestr(f"data/ptb.{split}.txt", text)
            z.writestr(f"__MACOSX/data/._ptb.{split}.txt", b"\x00\x05\x16\x07\xff\xfe")
    from_folder, from_zip = load_corpus(folder), load_corpus(archive)
    assert from_folder.words == from_zip.words
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(from_folder, split), getattr(from_zip, split))


def test_bad_paths_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_corpus(tmp_path / "nowhere")
    folder = _write_folder(tmp_path / "partial", {"train": "a b\n", "valid": "a\n"})
    with pytest.raises(DataError, match="missing ptb.test.txt"):
        load_corpus(folder)
    not_zip = tmp_path / "ptb.zip"
    not_zip.write_text("hello")
    with pytest.raises(DataError, match="not a zip file"):
        load_corpus(not_zip)
    incomplete = tmp_path / "incomplete.zip"
    with zipfile.ZipFile(incomplete, "w") as z:
        z.writestr("ptb.train.txt", "a b\n")
        z.writestr("__MACOSX/ptb.valid.txt", "a\n")
    with pytest.raises(DataError, match="no ptb.valid.txt, ptb.test.txt"):
        load_corpus(incomplete)
    binary = _write_folder(tmp_path / "binary")
    (binary / "ptb.valid.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="ptb.valid.txt: not UTF-8"):
        load_corpus(binary)


def test_real_ptb_counts() -> None:
    corpus = load_corpus(shared_file("ptb.zip"))
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929_589, 73_760, 82_430)
    assert corpus.vocab_size == 10_000
    assert {EOS, "<unk>", "N"} <= set(corpus.words)


# --------------------------------------------------------------------------- batches
def test_batchify_makes_columns_of_the_stream() -> None:
    data = batchify(torch.arange(23), 4)
    assert data.shape == (5, 4)
    assert data[:, 1].tolist() == [5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="too few"):
        batchify(torch.arange(5), 4)


def test_fixed_windows_cover_the_stream_with_shifted_targets() -> None:
    data = batchify(torch.arange(100), 2)  # 50 steps
    windows = list(bptt_batches(data, 7))
    assert [x.shape[0] for x, _ in windows] == [7] * 7
    assert torch.equal(torch.cat([x for x, _ in windows]), data[:49])
    assert torch.equal(torch.cat([y for _, y in windows]), data[1:])


def test_variable_windows_are_seeded_and_cover_the_stream() -> None:
    a = window_lengths(5000, 35, torch.Generator().manual_seed(0))
    b = window_lengths(5000, 35, torch.Generator().manual_seed(0))
    c = window_lengths(5000, 35, torch.Generator().manual_seed(1))
    assert a == b != c
    assert sum(a) == 4999 and len(set(a)) > 5
    assert min(a[:-1]) >= 5 and max(a) <= 55
    assert 30 < np.mean(a) < 36  # mostly around bptt, sometimes around bptt / 2
    data = batchify(torch.arange(600), 3)
    windows = list(bptt_batches(data, 10, torch.Generator().manual_seed(2)))
    assert torch.equal(torch.cat([y for _, y in windows]), data[1:])


# --------------------------------------------------------------------------- perplexity and training
def _lm(vocab: int, seed: int = 0, **args):
    space = create_space("enas-rnn", nodes=3)
    arch = space.parse("0:tanh 1:relu<-0 2:tanh<-1")
    torch.manual_seed(seed)
    return space.build(arch, vocab_size=vocab, **{"emb_size": 16, "hidden_size": 16, **args})


def test_untrained_perplexity_is_of_the_order_of_the_vocabulary() -> None:
    tokens = torch.randint(0, 200, (2000,), generator=torch.Generator().manual_seed(0))
    ppl = evaluate_perplexity(_lm(200), tokens, bptt=20, batch_size=4, device="cpu")
    assert 200 / 1.5 < ppl < 200 * 1.5


def _synthetic_corpus() -> Corpus:
    # Sentences from a tiny grammar: the next word is predictable, so a model must beat the unigram rate.
    rng = np.random.default_rng(0)
    subjects, verbs, objects = ["cat", "dog", "bird"], ["eats", "sees"], ["fish", "seeds", "mice"]
    lines = [
        f"the {rng.choice(subjects)} {verbs[i % 2]} {objects[i % 3]}" for i in range(300)
    ]
    return Corpus.from_lines(lines[:250], lines[250:], lines[250:])


def test_training_reduces_perplexity_on_a_small_corpus() -> None:
    corpus = _synthetic_corpus()
    model = _lm(corpus.vocab_size, dropout_embedding=0.0, dropout_input=0.0, dropout_hidden=0.0, dropout_output=0.0)
    before = evaluate_perplexity(model, corpus.valid, bptt=10, batch_size=2, device="cpu")
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    data = batchify(corpus.train, 8)
    generator = torch.Generator().manual_seed(0)
    losses = [train_lm_epoch(model, data, optimizer, bptt=10, clip=0.25, device="cpu", generator=generator)
              for _ in range(3)]
    after = evaluate_perplexity(model, corpus.valid, bptt=10, batch_size=2, device="cpu")
    assert losses[-1] < losses[0]
    assert before > 8 and after < before / 3, (before, after)  # 10 words: untrained ~10, learnt ~2
    assert optimizer.param_groups[0]["lr"] == 5.0  # the per-window scaling is undone


def test_hidden_state_is_carried_but_detached_between_windows() -> None:
    model = _lm(20)
    calls = []
    original = model.forward

    def spy(tokens, hidden, plan=None):
        calls.append((hidden.requires_grad, hidden.grad_fn is None, float(hidden.abs().sum())))
        return original(tokens, hidden, plan)

    model.forward = spy
    data = batchify(torch.randint(0, 20, (200,), generator=torch.Generator().manual_seed(0)), 4)
    train_lm_epoch(model, data, torch.optim.SGD(model.parameters(), lr=0.1), bptt=10, clip=0.25, device="cpu")
    assert len(calls) == 5
    assert calls[0][2] == 0.0 and all(total > 0 for *_, total in calls[1:])
    assert all(detached for _, detached, _ in calls)


def test_a_loss_that_is_not_finite_raises_before_any_update() -> None:
    model = _lm(20)
    with torch.no_grad():
        model.cell.w_h.fill_(float("nan"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = batchify(torch.randint(0, 20, (200,)), 4)
    with pytest.raises(TrainingDiverged, match="loss became nan at window 1.*lower the learning rate"):
        train_lm_epoch(model, data, torch.optim.SGD(model.parameters(), lr=0.1), bptt=10, clip=0.25, device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) or (v.isnan().all() and before[k].isnan().all())


def test_perplexity_is_the_exponential_of_the_mean_token_loss() -> None:
    model = _lm(30)
    tokens = torch.randint(0, 30, (121,), generator=torch.Generator().manual_seed(3))
    ppl = evaluate_perplexity(model, tokens, bptt=7, batch_size=3, device="cpu")
    # The same in one window per column: the state carried across windows makes no difference.
    data = batchify(tokens, 3)
    with torch.no_grad():
        logits, _ = model.eval()(data[:-1], model.init_hidden(3))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 30), data[1:].reshape(-1))
    assert ppl == pytest.approx(math.exp(float(loss)), rel=1e-5)


class _Confident(torch.nn.Module):
    """A language model sure of the wrong word: its loss is ~1000 nats per word."""

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 1)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor):
        logits = torch.zeros(*tokens.shape, 2)
        logits[..., 1] = 1000.0
        return logits, hidden


def test_a_huge_loss_gives_a_capped_perplexity_not_an_overflow() -> None:
    from nasforge.train.text import MAX_LOG_PERPLEXITY, perplexity

    ppl = evaluate_perplexity(_Confident(), torch.zeros(40, dtype=torch.long), bptt=5, batch_size=2, device="cpu")
    assert ppl == math.exp(MAX_LOG_PERPLEXITY) and math.isfinite(ppl)
    assert perplexity(2.0) == pytest.approx(math.exp(2.0)) and math.isnan(perplexity(float("nan")))


def test_the_lm_step_scales_the_rate_by_the_window_and_leaves_the_base_rate() -> None:
    from nasforge.train.text import LMStepper

    model = _lm(20, dropout_embedding=0.0, dropout_input=0.0, dropout_hidden=0.0, dropout_output=0.0)
    x = torch.randint(0, 20, (5, 2), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 20, (5, 2), generator=torch.Generator().manual_seed(1))
    hidden = model.init_hidden(2)
    steps = {}
    for scale, bptt in (("half", 10), ("full", 5)):  # a 5-word window is half of bptt 10: half the rate
        m = _lm(20, dropout_embedding=0.0, dropout_input=0.0, dropout_hidden=0.0, dropout_output=0.0)
        m.load_state_dict(model.state_dict())
        stepper = LMStepper.sgd(m, lr=1.0 if scale == "half" else 0.5, weight_decay=0.0, bptt=bptt, clip=0)
        loss, new_hidden = stepper.step(x, y, hidden.requires_grad_(), None)
        assert math.isfinite(loss) and new_hidden.grad_fn is None and stepper.lr == (1.0 if scale == "half" else 0.5)
        steps[scale] = m.state_dict()
    for key in steps["half"]:
        assert torch.allclose(steps["half"][key], steps["full"][key], atol=1e-6), key


def test_final_training_and_the_supernet_take_the_same_lm_step(monkeypatch, tmp_path: Path) -> None:
    import nasforge as nf
    from nasforge.train import text
    from nasforge.train.lm import LMTrainConfig, train_language_model

    calls: list[str] = []
    original = text.LMStepper.step

    def spy(self, x, y, hidden, module=None, **kwargs):
        calls.append("child" if module is not None else "model")
        return original(self, x, y, hidden, module, **kwargs)

    monkeypatch.setattr(text.LMStepper, "step", spy)
    corpus = _synthetic_corpus()
    space = create_space("enas-rnn", nodes=3)
    arch = space.parse("0:tanh 1:relu<-0 2:tanh<-1")
    train_language_model(space, arch, corpus, LMTrainConfig(epochs=1, batch_size=4, bptt=10),
                         model_args={"emb_size": 8, "hidden_size": 8}, seed=0)
    assert calls and set(calls) == {"model"}
    folder = _write_folder(tmp_path / "ptb", {"train": "a b c d\n" * 40, "valid": "a b c d\n" * 10, "test": "a b\n"})
    config = nf.RunConfig(space="enas-rnn", space_args={"nodes": 3}, evaluator="supernet-lm", strategy="random",
                          budget=2, dataset="ptb", data=str(folder),
                          evaluator_args={"batch_size": 4, "bptt": 5, "valid_batch_size": 4,
                                          "model_args": {"emb_size": 8, "hidden_size": 8}})
    calls.clear()
    nf.search(config)
    assert calls == ["child", "child"]
