"""NAS in embedding space (NASES; Liu, "Neural Architecture Search in Embedding Space", 2020).

An LSTM autoencoder is pre-trained on uniformly sampled architectures: the *simulator* (an LSTM
encoder) maps an architecture, read as one token per decision, to an n-dimensional embedding, and the
*decoder* (an LSTM unrolled over the decisions) maps an embedding back to one option per decision.
The search *controller* is a copy of the pre-trained simulator: it maps the search's current state
to the mean of a Gaussian policy in the embedding space; a sampled embedding is decoded (frozen
decoder) into the architecture to evaluate, and REINFORCE fine-tunes the controller and the policy's
spread from the rewards.

Where the paper is vague, we chose (and why):

- "Uniform distribution" as the simulator's input: the autoencoder's inputs and targets are
  architectures drawn uniformly from the space (``space.sample``), i.e. the uniform distribution over
  the space, which is what makes the simulator's embeddings cover it.
- The embedding is bounded (tanh) and the pre-training adds Gaussian noise (``pretrain_noise``) to it
  before decoding, so that embeddings near an architecture's decode to it or to similar ones: the
  Gaussian policy's steps then move between related architectures.
- The loss is the paper's least squares, between the decoder's option probabilities and the one-hot
  choices (inactive decisions excluded). The paper's Adam learning rate (1e-5) goes with an unstated,
  long schedule; we use 5e-3 for a pre-training of seconds, and report the reconstruction rate.
- The controller's input, "the child state of network", is the best architecture found so far (a
  random one before any result), so the policy learns where to move from the incumbent, as the
  paper's Algorithm 1 projects an architecture to an embedding and decodes it into the next one.
- Rewards enter REINFORCE as their quantile rank among all rewards seen, minus 1/2 (any reward scale
  gives the same updates).
- A sampled embedding is decoded into the most plausible architecture not proposed before: the
  decoder's most likely one, else the one-decision changes of it in the order of the probability the
  decoder gives them (:func:`unseen_decodes`); ``proposal_tries`` embeddings are drawn at once, and
  only when all of them and their runner-ups were seen is a uniform unseen sample taken (not learnt
  from). Decoding only the most likely architecture made the search stall next to the optimum: once
  the policy's neighbourhood had been evaluated, the uniform fallback almost never lands next to the
  incumbent (on the toy space, 5 of 60 searches missed the optimum in 300 evaluations, against none
  with this decoding: ``benchmarks/nases_toy_seeds.py``).
- The policy's initial spread (``sigma`` 0.15 per dimension) is of the order of the pre-training noise,
  so that samples decode to the incumbent's neighbourhood rather than to unrelated architectures.

Pre-training is cached in ``cache_dir`` (default ``$NASFORGE_CACHE`` or ``~/.cache/nasforge``), keyed
by the space's name and decisions and the pre-training fields of the config, so that it runs once; the
file holds plain arrays and JSON text (``.npz``, read without unpickling anything).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..arch import Architecture
from ..objectives import MnasConfig, mnas_reward
from ..paths import default_cache_dir
from ..predictors.nao import tokens
from ..registry import STRATEGIES
from ..result import Result
from ..spaces.base import SearchSpace
from .base import Strategy, usable
from .common import UnseenSampler, one_thread

log = logging.getLogger(__name__)

#: bump when the networks or the pre-training change, so that old cache files are not reused
CACHE_VERSION = 1
#: pre-training fields: they (with the space) key the cache
PRETRAIN_FIELDS = ("embedding_dim", "hidden", "pretrain_archs", "pretrain_steps", "pretrain_batch",
                   "pretrain_lr", "pretrain_noise", "pretrain_seed")


@dataclass
class NASESConfig(MnasConfig):
    """NASES hyper-parameters: the autoencoder's pre-training, then the search."""

    embedding_dim: int = 16  # n, the embedding space's dimension
    hidden: int = 64  # LSTM width of simulator, decoder and controller
    pretrain_archs: int = 4096  # uniformly sampled architectures the autoencoder learns from
    pretrain_steps: int = 1000  # Adam steps of pre-training
    pretrain_batch: int = 128  # architectures per pre-training step of the autoencoder
    pretrain_lr: float = 5e-3  # Adam learning rate of pre-training
    pretrain_noise: float = 0.1  # std of the Gaussian noise added to embeddings while pre-training
    pretrain_seed: int = 0  # pre-training is shared by all searches, so it has its own seed
    sigma: float = 0.15  # initial standard deviation of the Gaussian policy (embeddings lie in [-1, 1])
    lr: float = 0.003  # Adam learning rate of the controller: fine-tuning, as the paper says
    batch: int = 5  # results per REINFORCE update
    initial_samples: int = 10  # uniform random samples before the controller proposes
    proposal_tries: int = 32  # embeddings drawn at once to find an architecture not proposed before
    cache_dir: str | None = None  # where pre-trained autoencoders are kept (None: default_cache_dir())

    def __post_init__(self) -> None:
        if min(self.embedding_dim, self.hidden, self.pretrain_archs, self.pretrain_batch,
               self.batch, self.proposal_tries) < 1 or self.pretrain_steps < 0 or self.initial_samples < 0:
            raise ValueError("sizes, steps and counts must be positive")
        if self.sigma <= 0 or self.lr <= 0 or self.pretrain_lr <= 0 or self.pretrain_noise < 0:
            raise ValueError("sigma and learning rates must be positive, pretrain_noise non-negative")
        self.check_mnas()


# --------------------------------------------------------------------- networks

class Simulator(nn.Module):
    """LSTM encoder: an architecture's token sequence to a bounded n-dimensional embedding."""

    def __init__(self, n_tokens: int, hidden: int, embedding_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_tokens, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, embedding_dim)

    def forward(self, toks: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(toks))
        return torch.tanh(self.out(h[:, -1]))


class Decoder(nn.Module):
    """LSTM unrolled over the decisions: an embedding to per-decision option logits (invalid options masked)."""

    def __init__(self, n_choices: Sequence[int], hidden: int, embedding_dim: int) -> None:
        super().__init__()
        width = max(n_choices)
        self.inp = nn.Linear(embedding_dim, hidden)
        self.step = nn.Parameter(torch.zeros(len(n_choices), hidden))
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, width)
        mask = torch.zeros(len(n_choices), width)
        for i, n in enumerate(n_choices):
            mask[i, n:] = -math.inf
        self.register_buffer("mask", mask)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.inp(z)[:, None, :] + self.step[None]
        h, _ = self.lstm(x)
        return self.head(h) + self.mask


def _targets(space: SearchSpace, archs: Sequence[Architecture], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot choices (batch, decisions, width) and the mask of active decisions."""
    choices = torch.tensor([a.choices for a in archs], dtype=torch.long)
    active = torch.tensor([space.active(a.choices) for a in archs], dtype=torch.float32)
    return nn.functional.one_hot(choices, width).float(), active


def networks(space: SearchSpace, config: NASESConfig) -> tuple[Simulator, Decoder]:
    """Freshly initialised simulator and decoder (seeded by ``pretrain_seed``)."""
    with torch.random.fork_rng(devices=[]):  # seeded initialisation that leaves the caller's generator alone
        torch.manual_seed(config.pretrain_seed)
        simulator = Simulator(space.encoding_size + 1, config.hidden, config.embedding_dim)
        decoder = Decoder([d.n_choices for d in space.decisions], config.hidden, config.embedding_dim)
    return simulator, decoder


def pretrain(space: SearchSpace, config: NASESConfig) -> tuple[Simulator, Decoder, dict[str, float]]:
    """Train the autoencoder on uniformly sampled architectures; returns it and its held-out reconstruction rate."""
    rng = np.random.default_rng(config.pretrain_seed)
    start = time.perf_counter()
    simulator, decoder = networks(space, config)
    train = [space.sample(rng) for _ in range(config.pretrain_archs)]
    held_out = [space.sample(rng) for _ in range(256)]
    width = max(d.n_choices for d in space.decisions)
    toks = tokens(space, train)
    onehot, active = _targets(space, train, width)
    params = [*simulator.parameters(), *decoder.parameters()]
    opt = torch.optim.Adam(params, lr=config.pretrain_lr)
    gen = torch.Generator().manual_seed(config.pretrain_seed)
    for _ in range(config.pretrain_steps):
        idx = torch.from_numpy(rng.integers(len(train), size=config.pretrain_batch))
        z = simulator(toks[idx])
        z = z + config.pretrain_noise * torch.randn(z.shape, generator=gen)
        probs = torch.softmax(decoder(z), dim=-1)
        err = ((probs - onehot[idx]) ** 2).sum(-1) * active[idx]
        loss = err.sum() / active[idx].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    info = {"reconstruction": reconstruction_rate(space, simulator, decoder, held_out),
            "seconds": time.perf_counter() - start}
    log.info("nases: pre-trained the %s autoencoder in %.1f s, held-out reconstruction %.1f %%",
             space.name, info["seconds"], 100 * info["reconstruction"])
    return simulator, decoder, info


def decode(space: SearchSpace, decoder: Decoder, z: torch.Tensor) -> list[tuple[int, ...]]:
    """Most likely option of every decision, canonicalised (inactive decisions set to 0)."""
    with torch.no_grad():
        choices = decoder(z).argmax(-1).tolist()
    return [space.canonical(c) if space.is_valid(c) else tuple(c) for c in choices]


def unseen_decodes(space: SearchSpace, decoder: Decoder,
                   z: torch.Tensor) -> Iterator[tuple[int, tuple[int, ...]]]:
    """The decodings of the embeddings ``z`` in the order to try them, as (row of z, choices).

    For each embedding in turn: its most likely decoding, then the decodings with one decision
    changed, in increasing order of the log-probability the decoder gives up for the change. A
    proposal is the first of these not seen before: the most plausible new architecture at the
    sampled embedding. Once the incumbent's neighbourhood has been evaluated, embeddings near it
    decode to architectures seen before, and their runner-up decodings are the architectures next to
    them (where an improvement is), where a uniform sample is almost never near the incumbent.
    """
    with torch.no_grad():
        logp = torch.log_softmax(decoder(z), dim=-1)
    top, first = logp.max(-1)
    drop = top[..., None] - logp  # 0 at the most likely option, inf at masked ones
    drop[first[..., None] == torch.arange(logp.shape[-1])] = math.inf
    width = logp.shape[-1]
    firsts, drops = first.tolist(), drop.flatten(1).tolist()

    def decodings(row: int) -> Iterator[list[int]]:
        yield firsts[row]
        costs = drops[row]
        for i in sorted(range(len(costs)), key=costs.__getitem__):
            if costs[i] == math.inf:
                return
            decision, option = divmod(i, width)
            yield [*firsts[row][:decision], option, *firsts[row][decision + 1:]]

    done: set[tuple[int, ...]] = set()  # most likely decodings whose one-decision changes were all tried
    raw: set[tuple[int, ...]] = set()  # candidates tried, before validation (cheap to skip)
    tried: set[tuple[int, ...]] = set()  # canonical forms tried
    for row in range(len(firsts)):
        if tuple(firsts[row]) in done:
            continue  # an earlier embedding decoded the same: nothing new here
        done.add(tuple(firsts[row]))
        for choices in map(tuple, decodings(row)):
            if choices in raw:
                continue
            raw.add(choices)
            key = space.canonical(choices) if space.is_valid(choices) else choices
            if key not in tried:
                tried.add(key)
                yield row, key


def reconstruction_rate(space: SearchSpace, simulator: Simulator, decoder: Decoder,
                        archs: Sequence[Architecture]) -> float:
    """Share of ``archs`` that decode(simulate(arch)) gives back exactly."""
    with torch.no_grad():
        z = simulator(tokens(space, archs))
    return float(np.mean([c == a.choices for c, a in zip(decode(space, decoder, z), archs)]))


def cache_key(space: SearchSpace, config: NASESConfig) -> str:
    spec = {
        "version": CACHE_VERSION,
        "space": space.name,
        "decisions": [(d.name, d.n_choices, d.group) for d in space.decisions],
        "pretrain": {k: getattr(config, k) for k in PRETRAIN_FIELDS},
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def save_autoencoder(path: Path, simulator: Simulator, decoder: Decoder, info: dict[str, float]) -> None:
    """Write the autoencoder as plain arrays (``.npz``) with its info as JSON text, atomically."""
    arrays = {f"{name}.{k}": v.detach().cpu().numpy()
              for name, net in (("simulator", simulator), ("decoder", decoder))
              for k, v in net.state_dict().items()}
    arrays["info.json"] = np.array(json.dumps(info))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)  # atomic, so that concurrent searches never read half a file


def load_autoencoder(path: Path, space: SearchSpace,
                     config: NASESConfig) -> tuple[Simulator, Decoder, dict[str, float]]:
    """Read what :func:`save_autoencoder` wrote; no code from the file is ever run (no pickle)."""
    simulator, decoder = networks(space, config)
    with np.load(path, allow_pickle=False) as saved:
        for name, net in (("simulator", simulator), ("decoder", decoder)):
            net.load_state_dict({k: torch.from_numpy(saved[f"{name}.{k}"].copy()) for k in net.state_dict()})
        info = json.loads(str(saved["info.json"]))
    return simulator, decoder, info


def load_or_pretrain(space: SearchSpace, config: NASESConfig) -> tuple[Simulator, Decoder, dict[str, float]]:
    """The pre-trained autoencoder from the cache, or pre-train it and store it there."""
    folder = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    path = folder / "nases" / f"{space.name}-{cache_key(space, config)}.npz"
    if path.exists():
        try:
            return load_autoencoder(path, space, config)
        # a damaged cache file costs a pre-training, never the search
        except (OSError, ValueError, KeyError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("nases: ignoring the unreadable cached autoencoder %s (%s)", path, exc)
    with one_thread():
        simulator, decoder, info = pretrain(space, config)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_autoencoder(path, simulator, decoder, info)
    except OSError as exc:  # a read-only home must not stop a search; it only costs the next one
        log.warning("nases: cannot cache the pre-trained autoencoder in %s (%s)", path.parent, exc)
    return simulator, decoder, info


# --------------------------------------------------------------------- the strategy
class Controller(nn.Module):
    """The Gaussian policy: mean from the simulator-initialised LSTM, a learnt spread per dimension."""

    def __init__(self, simulator: Simulator, sigma: float) -> None:
        super().__init__()
        self.mean = copy.deepcopy(simulator)
        self.log_sigma = nn.Parameter(torch.full((simulator.out.out_features,), math.log(sigma)))

    def log_prob(self, toks: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dist = torch.distributions.Normal(self.mean(toks), self.log_sigma.exp())
        return dist.log_prob(z).sum(-1)


@STRATEGIES.register("nases", guided=True, batch=True, paper="Liu 2020 (NASES)")
class NASES(Strategy):
    """NAS in embedding space: a Gaussian policy over a pre-trained LSTM autoencoder's embeddings, REINFORCE."""

    Config = NASESConfig
    #: the frozen decoder is rebuilt from the cache (same config, same weights), not saved with the state
    _not_state = ("space", "config", "decoder")

    def __init__(self, space, config: NASESConfig | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        simulator, self.decoder, self.pretrain_info = load_or_pretrain(space, self.config)
        self.decoder.requires_grad_(False)
        self.controller = Controller(simulator, self.config.sigma)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.config.lr)
        self.sampler = UnseenSampler(space)
        self.rewards: list[float] = []
        self.best: tuple[Architecture, float] | None = None
        self.pending: dict[Architecture, tuple[Architecture, np.ndarray]] = {}  # asked -> (state, embedding)
        self.buffer: list[tuple[Architecture, np.ndarray, float]] = []  # (state, embedding, reward)
        self.start = space.sample(self.rng)  # the state before any result

    # ----------------------------------------------------------------- ask
    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        with one_thread():
            for _ in range(n):
                if len(self.rewards) < self.config.initial_samples:
                    out.append(self.sampler.sample(self.rng))
                else:
                    out.append(self._propose())
        return out

    def _propose(self) -> Architecture:
        state = self.best[0] if self.best else self.start
        with torch.no_grad():
            mean = self.controller.mean(tokens(self.space, [state]))[0].numpy()
            sigma = self.controller.log_sigma.exp().numpy()
        z = mean + sigma * self.rng.standard_normal((self.config.proposal_tries, len(mean)))
        z = z.astype(np.float32)
        for row, choices in unseen_decodes(self.space, self.decoder, torch.from_numpy(z)):
            # most candidates were seen: look them up by their (canonical) choices before building them
            if self.space.is_valid(choices) and self.sampler.is_new(Architecture(self.space.name, choices)):
                arch = self.space.make(choices)
                self.sampler.mark([arch])
                self.pending[arch] = (state, z[row])
                return arch
        return self.sampler.sample(self.rng)  # every decoding tried was seen: explore

    # ----------------------------------------------------------------- tell
    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self.sampler.mark(archs)
        for arch, result, ok in zip(archs, results, usable(results)):
            asked = self.pending.pop(arch, None)
            if not ok:
                continue
            reward = mnas_reward(result, self.config)  # the plain reward unless mnas_target is set
            self.rewards.append(reward)
            if self.best is None or reward > self.best[1]:
                self.best = (arch, reward)
            if asked is not None:
                self.buffer.append((*asked, reward))
        if len(self.buffer) >= self.config.batch:
            with one_thread():
                self._update()

    def _advantages(self, rewards: Sequence[float]) -> np.ndarray:
        """Quantile rank of each reward among all rewards seen (ties share their mean rank), centred on 0."""
        seen = np.sort(self.rewards)
        below = np.searchsorted(seen, rewards, side="left")
        ties = np.searchsorted(seen, rewards, side="right") - below
        return (below + (ties - 1) / 2) / max(len(seen) - 1, 1) - 0.5

    def _update(self) -> None:
        states, embs, rewards = zip(*self.buffer)
        self.buffer = []
        adv = torch.as_tensor(self._advantages(rewards), dtype=torch.float32)
        logp = self.controller.log_prob(tokens(self.space, states), torch.from_numpy(np.stack(embs)))
        loss = -(adv * logp).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def observe(self) -> dict[str, Any]:
        return {"sigma": self.controller.log_sigma.exp().tolist(), "n_rewards": len(self.rewards),
                "pretrain": dict(self.pretrain_info)}
