"""Sampling policies shared by black-box and weight-sharing search, and the policy-gradient learner.

A policy is a distribution over a space's decisions (a PyTorch module): :class:`PolicyVectors`
(EDNAS: one independent softmax vector per decision) and :class:`LSTMController` (Zoph & Le / ENAS:
an LSTM emits the decisions one token at a time). Both expose the same small interface::

    choices, log_prob, entropy = policy.sample(n, generator)   # choices: LongTensor (n, decisions)
    log_prob, entropy = policy.score(choices, active)           # with gradients, inactive masked out
    policy.probabilities()                                       # one NumPy vector per decision

:class:`PolicyGradient` learns any policy from ``(choices, rewards)`` batches with REINFORCE; it knows
nothing of strategies, so the weight-sharing loop can feed it rewards from a super-network.
:class:`PolicyStrategy` is the thin ask/tell wrapper that the ``reinforce`` and ``ednas`` strategies share.
"""

from __future__ import annotations

import collections
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..arch import Architecture
from ..objectives import mnas_reward
from ..result import Result
from ..spaces.base import OPERATION, STRUCTURE, Decision, SearchSpace
from .base import Strategy, usable
from .common import UNSEEN_TRIES, UnseenSampler, one_thread

log = logging.getLogger(__name__)

REWARD_NORMS = ("rank", "zscore", "none")
#: logit of the padding options of shorter policy vectors
PAD_LOGIT = -1e9
#: proposals drawn from the policy at once: a batch of 64 costs about twice a single draw, and a
#: concentrated policy needs many draws to find an architecture not proposed before
DRAW_BATCH = 64
#: draws one proposal may use before it accepts a repeat
MAX_DRAWS = 20 * DRAW_BATCH


@dataclass
class Trace:
    """One pass of a policy over its decisions, for ``n`` architectures at once.

    Attributes:
        choices: (n, D) chosen option per decision.
        log_probs: (n, D) log-probability of each choice (given the earlier ones, for an LSTM).
        entropies: (n, D) entropy of each decision's distribution.
        probs: per decision, the (n, n_choices) distribution the choice was drawn from.
    """

    choices: torch.Tensor
    log_probs: torch.Tensor
    entropies: torch.Tensor
    probs: list[torch.Tensor]


def categorical(logits: torch.Tensor, generator: torch.Generator | None,
                given: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose from a batch of categorical distributions: sampled, ``given`` (scored) or, without both, argmax.

    Returns the choices, their log-probabilities, the entropies and the probabilities.
    """
    log_p = torch.log_softmax(logits, dim=-1)
    p = log_p.exp()
    if given is not None:
        choice = given
    elif generator is not None:
        choice = torch.multinomial(p.detach(), 1, generator=generator).squeeze(1)
    else:
        choice = p.argmax(dim=-1)
    chosen = log_p.gather(1, choice[:, None]).squeeze(1)
    return choice, chosen, -(p * log_p).sum(-1), p


class Policy(nn.Module, ABC):
    """A distribution over the choice tuples of a list of decisions."""

    def __init__(self, decisions: Sequence[Decision]) -> None:
        super().__init__()
        self.decisions = tuple(decisions)

    @abstractmethod
    def trace(self, n: int, generator: torch.Generator | None = None,
              choices: torch.Tensor | None = None) -> Trace:
        """Sample ``n`` choice tuples (with ``generator``), score given ``choices``, or follow the argmax."""

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` choice tuples with their log-probabilities and entropies (every decision counted)."""
        t = self.trace(n, generator)
        return t.choices, t.log_probs.sum(1), t.entropies.sum(1)

    def score(self, choices: torch.Tensor, active: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of each row of ``choices``, summed over its active decisions.

        ``active`` is a boolean (n, D) mask (``space.active`` of each row); inactive decisions do not
        shape the network, so they neither earn credit nor count for the entropy bonus.
        """
        t = self.trace(len(choices), choices=choices)
        if active is None:
            return t.log_probs.sum(1), t.entropies.sum(1)
        mask = active.to(t.log_probs.dtype)
        return (t.log_probs * mask).sum(1), (t.entropies * mask).sum(1)

    def log_prob(self, choices: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(choices, active)[0]

    @torch.no_grad()
    def probabilities(self) -> list[np.ndarray]:
        """The distribution of each decision (for an autoregressive policy: along its most likely path)."""
        return [p[0].double().numpy() for p in self.trace(1).probs]


class PolicyVectors(Policy):
    """EDNAS policy vectors: one independent softmax vector per decision, starting uniform.

    In EDNAS (Lee, Kim & Han) the structure vector of a node ranges over its input-edge combinations and
    the operation vector of an edge over the operations; a search space expresses both as decisions,
    so here there is simply one vector per decision.
    """

    def __init__(self, decisions: Sequence[Decision]) -> None:
        super().__init__(decisions)
        width = max(d.n_choices for d in self.decisions)
        self.logits = nn.Parameter(torch.zeros(len(self.decisions), width))
        pad = torch.arange(width)[None, :] >= torch.tensor([d.n_choices for d in self.decisions])[:, None]
        self.register_buffer("pad", pad)

    def trace(self, n: int, generator: torch.Generator | None = None,
              choices: torch.Tensor | None = None) -> Trace:
        n_dec, width = self.logits.shape
        # a finite floor, not -inf: padded options get probability 0 and still no NaN gradients
        logits = self.logits.masked_fill(self.get_buffer("pad"), PAD_LOGIT)
        flat = logits.unsqueeze(0).expand(n, n_dec, width).reshape(n * n_dec, width)
        given = None if choices is None else choices.reshape(-1)
        choice, log_p, ent, p = categorical(flat, generator, given)
        probs = p.reshape(n, n_dec, width)
        return Trace(choice.reshape(n, n_dec), log_p.reshape(n, n_dec), ent.reshape(n, n_dec),
                     [probs[:, i, : d.n_choices] for i, d in enumerate(self.decisions)])


class LSTMController(Policy):
    """Zoph & Le's controller, as ENAS implements it: an LSTM emits one decision per step.

    Each step's softmax comes from the LSTM output; the chosen option's embedding is the next step's
    input. Logits are squashed as ``tanh_constant * tanh(logits / temperature)`` (ENAS), which bounds
    how sure the controller can become and so keeps it exploring.

    Skip connections (``skip_links``: decision index -> (to_layer, from_layer), option 1 = linked) are
    chosen by anchor-point attention: at layer ``i``'s skip step the LSTM output ``h_i`` is the anchor
    of layer ``i``, and link ``j -> i`` is on with probability ``sigmoid(v^T tanh(W_prev h_j + W_curr h_i))``.
    The next input is the mean of the linked anchors (ENAS). A layer that is only ever a source gets an
    anchor step of its own (no decision) just before the first skip step that needs it; ENAS places
    it right after that layer's operation, which our flat decision list cannot locate.
    """

    def __init__(self, decisions: Sequence[Decision], skip_links: dict[int, tuple[int, int]] | None = None,
                 hidden: int = 64, tanh_constant: float = 2.5, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(decisions)
        self.skip_links = {int(k): (int(v[0]), int(v[1])) for k, v in (skip_links or {}).items()}
        self.tanh_constant = tanh_constant
        self.temperature = temperature
        self.plan = self._make_plan()
        plain = [i for i in range(len(self.decisions)) if i not in self.skip_links]
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.cell = nn.LSTMCell(hidden, hidden)
        self.embed = nn.ModuleDict({str(i): nn.Embedding(self.decisions[i].n_choices, hidden) for i in plain})
        self.heads = nn.ModuleDict({str(i): nn.Linear(hidden, self.decisions[i].n_choices) for i in plain})
        if self.skip_links:
            self.w_prev = nn.Linear(hidden, hidden, bias=False)
            self.w_curr = nn.Linear(hidden, hidden, bias=False)
            self.v = nn.Linear(hidden, 1, bias=False)
        for p in self.parameters():  # ENAS initialisation, from the caller's generator (no global RNG)
            nn.init.uniform_(p, -0.1, 0.1, generator=generator)

    def _make_plan(self) -> list[tuple[Any, ...]]:
        """Steps in order: ("decide", i), ("anchor", layer), ("skip", to_layer, [(i, from_layer), ...])."""
        for i, (to, src) in self.skip_links.items():
            if self.decisions[i].n_choices != 2 or not 0 <= src < to:
                raise ValueError(f"skip link decision {i}: needs 2 options and from_layer < to_layer, got {(to, src)}")
        groups: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
        for i in sorted(self.skip_links):
            to, src = self.skip_links[i]
            groups[to].append((i, src))
        plan: list[tuple[Any, ...]] = []
        anchored: set[int] = set()
        for i in range(len(self.decisions)):
            if i not in self.skip_links:
                plan.append(("decide", i))
                continue
            to = self.skip_links[i][0]
            if to in anchored:
                continue
            for src in sorted({s for _, s in groups[to]} - anchored):
                if src in groups:
                    raise ValueError(f"skip decisions of layer {src} must come before those of layer {to}")
                plan.append(("anchor", src))
                anchored.add(src)
            plan.append(("skip", to, groups[to]))
            anchored.add(to)
        return plan

    def _squash(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.tanh_constant:
            return logits / self.temperature
        return self.tanh_constant * torch.tanh(logits / self.temperature)

    def _attend(self, h: torch.Tensor, links: list[tuple[int, int]], anchors: dict[int, torch.Tensor],
                keys: dict[int, torch.Tensor], choose: Any) -> torch.Tensor:
        """Decide one layer's skip links by attention over earlier anchors; returns the next input."""
        query = self.w_curr(h)
        total, count = torch.zeros_like(h), torch.ones_like(h[:, :1])
        for i, src in links:
            logit = self.v(torch.tanh(keys[src] + query)).squeeze(-1)
            # two-way softmax over (0, logit): p(link) = sigmoid(logit)
            on = choose(i, torch.stack([torch.zeros_like(logit), logit], dim=-1)).to(h.dtype)[:, None]
            total, count = total + on * anchors[src], count + on
        return total / count

    def trace(self, n: int, generator: torch.Generator | None = None,
              choices: torch.Tensor | None = None) -> Trace:
        n_dec = len(self.decisions)
        out_choice: list[Any] = [None] * n_dec
        out_lp: list[Any] = [None] * n_dec
        out_ent: list[Any] = [None] * n_dec
        out_p: list[Any] = [None] * n_dec
        x = self.start.expand(n, -1)
        state = None
        anchors: dict[int, torch.Tensor] = {}
        keys: dict[int, torch.Tensor] = {}

        def choose(i: int, logits: torch.Tensor) -> torch.Tensor:
            given = None if choices is None else choices[:, i]
            out_choice[i], out_lp[i], out_ent[i], out_p[i] = categorical(logits, generator, given)
            return out_choice[i]

        for step in self.plan:
            h, c = self.cell(x, state)
            state = (h, c)
            if step[0] == "decide":
                i = step[1]
                x = self.embed[str(i)](choose(i, self._squash(self.heads[str(i)](h))))
                continue
            layer = step[1]
            x = self._attend(h, step[2], anchors, keys, choose) if step[0] == "skip" else self.start.expand(n, -1)
            anchors[layer], keys[layer] = h, self.w_prev(h)
        return Trace(torch.stack(out_choice, 1), torch.stack(out_lp, 1), torch.stack(out_ent, 1), out_p)


class PolicyGradient:
    """REINFORCE for any :class:`Policy`: moving-average baseline, entropy bonus, Adam.

    Rewards are first normalised so that no setting depends on their scale: ``"rank"`` maps a reward
    to its mid-rank among the last ``window`` rewards (in [0, 1]; robust to outliers such as diverged
    networks), ``"zscore"`` standardises it with their mean and standard deviation, ``"none"`` keeps it.
    The baseline is the exponential moving average of the normalised rewards, updated one reward at a
    time (Zoph & Le), and starts at the first batch's mean.
    """

    def __init__(self, policy: Policy, lr: float, baseline_decay: float = 0.9, entropy_weight: float = 0.0,
                 reward_norm: str = "rank", window: int = 1000) -> None:
        if reward_norm not in REWARD_NORMS:
            raise ValueError(f"reward_norm must be one of {', '.join(REWARD_NORMS)}, got {reward_norm!r}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.policy = policy
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.reward_norm = reward_norm
        self.recent: collections.deque = collections.deque(maxlen=window)
        self.baseline: float | None = None
        self.n_updates = 0

    def normalise(self, rewards: Sequence[float]) -> np.ndarray:
        """Normalised rewards (the batch joins the window first, so ranks include it)."""
        r = np.asarray(rewards, dtype=np.float64)
        self.recent.extend(r.tolist())
        if self.reward_norm == "none":
            return r
        ref = np.sort(np.fromiter(self.recent, dtype=np.float64))
        if self.reward_norm == "rank":
            below = np.searchsorted(ref, r, side="left")
            upto = np.searchsorted(ref, r, side="right")
            return (below + upto) / (2.0 * len(ref))
        std = ref.std()
        return (r - ref.mean()) / (std if std > 0 else 1.0)

    def update(self, choices: torch.Tensor, rewards: Sequence[float],
               active: torch.Tensor | None = None) -> dict[str, float]:
        """One Adam step on a batch of choice tuples (n, D) and their rewards; returns a summary."""
        u = self.normalise(rewards)
        if self.baseline is None:
            self.baseline = float(u.mean())
        advantage = torch.as_tensor(u - self.baseline, dtype=torch.float32)
        log_p, entropy = self.policy.score(choices, active)
        loss = -(advantage * log_p).mean() - self.entropy_weight * entropy.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        for x in u:
            self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * float(x)
        self.n_updates += 1
        return {"loss": loss.item(), "baseline": self.baseline, "entropy": entropy.mean().item()}


class PolicyStrategy(Strategy):
    """Ask/tell around a policy: ask samples, tell collects rewards and updates every ``batch_size``.

    Subclasses set ``Config`` (with ``lr``, ``batch_size``, ``baseline_decay``, ``entropy_weight``,
    ``reward_norm``, ``avoid_repeats`` and ``warmup``) and implement :meth:`make_policy`. Failed results
    are skipped. The first ``warmup`` results do not update the policy, so that it keeps proposing from its
    initial (near-uniform) distribution: under weight sharing this trains the shared weights of every
    operation fairly before the rewards they give are trusted.
    With ``avoid_repeats`` a proposal of an already proposed network is drawn again (up to
    ``UNSEEN_TRIES`` distinct candidates): on a finite table a repeat would cost a query and teach
    nothing new. Draws come in batches from the current policy and are used until the next update,
    so most asks cost no forward pass.
    """

    def __init__(self, space: SearchSpace, config: Any = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.policy = self.make_policy(self.generator)
        cfg = self.config
        self.learner = PolicyGradient(self.policy, cfg.lr, cfg.baseline_decay, cfg.entropy_weight, cfg.reward_norm)
        self.sampler = UnseenSampler(space)
        self.raw: dict[Architecture, tuple[int, ...]] = {}  # proposals as drawn (inactive options included)
        self.pool: list[tuple[int, ...]] = []  # draws from the current policy not used yet
        self.batch: list[tuple[tuple[int, ...], float]] = []
        self.told = 0  # usable results so far; the first ``warmup`` teach the policy nothing
        self.last_update: dict[str, float] = {}

    @abstractmethod
    def make_policy(self, generator: torch.Generator) -> Policy:
        """The policy over ``self.space``'s decisions, initialised from ``generator``."""

    # ----------------------------------------------------------------- ask
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _refill(self, k: int) -> None:
        """Draw ``k`` choice tuples from the current policy into the pool."""
        with torch.no_grad(), one_thread():
            choices, _, _ = self.policy.sample(k, self.generator)
        self.pool = [tuple(row) for row in choices.tolist()]

    def _next_draw(self) -> tuple[int, ...]:
        if not self.pool:
            self._refill(DRAW_BATCH)
        return self.pool.pop()

    def _propose(self) -> Architecture:
        """The first acceptable draw (valid and, with avoid_repeats, new).

        ``UNSEEN_TRIES`` counts distinct candidates, not draws: a concentrated policy draws its mode
        over and over, and only its rarer draws can be new. ``MAX_DRAWS`` bounds the work.
        """
        fallback = None
        rejected: set[tuple[int, ...]] = set()
        for _ in range(MAX_DRAWS):
            raw = self._next_draw()
            if raw in rejected:
                continue
            rejected.add(raw)
            if not self.space.is_valid(raw):
                continue
            arch = self.space.make(raw)
            fallback = fallback or (arch, raw)
            if not self.config.avoid_repeats or self.sampler.is_new(arch) or self.sampler.exhausted():
                break
            if len(rejected) > UNSEEN_TRIES:
                arch, raw = fallback
                break
        else:
            if fallback is None:
                log.warning("%s: policy gave no valid architecture; sampling uniformly", type(self).__name__)
                arch = self.space.sample(self.rng)
                fallback = (arch, arch.choices)
            arch, raw = fallback
        self.sampler.mark([arch])
        self.raw[arch] = raw
        return arch

    # ----------------------------------------------------------------- tell
    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self.sampler.mark(archs)
        for arch, result, ok in zip(archs, results, usable(results)):
            raw = self.raw.pop(arch, arch.choices)
            if ok:
                self.told += 1
                if self.told > self.config.warmup:
                    self.batch.append((raw, mnas_reward(result, self.config)))  # plain unless mnas_target set
            if len(self.batch) >= self.config.batch_size:
                self._update()

    def _update(self) -> None:
        raws = [raw for raw, _ in self.batch]
        choices = torch.tensor(raws, dtype=torch.long)
        active = torch.tensor([self.space.active(raw) for raw in raws], dtype=torch.bool)
        with one_thread():
            info = self.learner.update(choices, [r for _, r in self.batch], active)
        log.debug("policy update %d: %s", self.learner.n_updates, info)
        self.last_update = info
        self.batch = []
        self._refill(DRAW_BATCH)  # the pool came from the old policy; refilling here batches the draws

    def status(self) -> dict[str, float]:
        """Normalised-reward baseline and mean entropy at the last policy update (warm-up: results left)."""
        if self.told < self.config.warmup:
            return {"warm-up left": float(self.config.warmup - self.told)}
        return {k: self.last_update[k] for k in ("baseline", "entropy") if k in self.last_update}

    def observe(self) -> dict[str, dict[str, list[float]]]:
        """The policy now: ``{"structure": {decision: probabilities}, "operation": {...}}``."""
        out: dict[str, dict[str, list[float]]] = {STRUCTURE: {}, OPERATION: {}}
        for d, p in zip(self.space.decisions, self.policy.probabilities()):
            out[d.group][d.name] = [float(x) for x in p]
        return out
