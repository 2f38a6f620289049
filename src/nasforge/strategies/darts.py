"""DARTS (Liu, Simonyan & Yang, ICLR 2019): architecture weights learnt by gradient through a relaxed super-network.

A differentiable strategy holds *architecture weights* (DARTS' alpha): one logit vector over the operations of
every edge of the space's cells (the space's operation decisions), and over the sources of every block input of a
``nasnet`` cell. It cannot search alone: the ``supernet``
evaluator, to which the factory attaches it, alternates per evaluation

1. an architecture step: the super-network, every operation weighted by :meth:`DifferentiableStrategy.relaxed`,
   runs a validation minibatch; the strategy takes an Adam step on the loss (first order, the default: the
   network's weights as they are, DARTS' cheaper variant; ``order=2``: DARTS' second-order approximation, the
   validation loss after one virtual SGD step of the weights, whose gradient the evaluator computes with a
   finite-difference Hessian-vector product, about four times the first order's cost, or with ``hvp="exact"``
   by double backpropagation);
2. ``train_steps`` SGD steps of the network's weights on training minibatches, the architecture weights fixed.

``ask`` proposes the architecture the weights currently derive (what the run records); ``tell`` only counts, so
that the first ``warmup`` evaluations train the network's weights under uniform architecture weights before
those learn. The strategy's state (weights, Adam, generator) is saved in the search's joint checkpoints.

The weights also form a :class:`~nasforge.strategies.policies.Policy` (:class:`ArchitectureWeights`), so the
one-shot derivation samples candidates from it and its most likely architecture is DARTS' own derivation: per
edge the strongest operation, and per node of a space with structure decisions (the ``darts`` space: which two
earlier nodes feed a node) the inputs whose edges are strongest (an edge's strength is its largest operation
weight other than "none", as DARTS ranks edges). ``nasforge policy RUN`` draws them like EDNAS' vectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError
from ..registry import STRATEGIES
from ..result import Result
from ..spaces.base import OPERATION, STRUCTURE, SearchSpace
from ..supernet import Relaxed
from .base import Strategy
from .common import one_thread
from .policies import PAD_LOGIT, Policy, Trace, categorical

log = logging.getLogger(__name__)


def _governed(space: SearchSpace) -> dict[int, list[list[int]]]:
    """For each structure decision, per option, the operation decisions it makes active (and that another
    option of it would not): e.g. the two edges of a ``darts`` node's input pair. Found with ``space.active``
    so that any space with structure decisions works. Its options are compared by their edges' summed log
    strengths, which is fair only among options of as many edges: a decision whose options activate different
    numbers (a growing space's block count; the relaxed cell runs every block) raises :class:`ConfigError`."""
    decisions = space.decisions
    base = [0] * len(decisions)
    out: dict[int, list[list[int]]] = {}
    for s, d in enumerate(decisions):
        if d.group != STRUCTURE:
            continue
        masks = [space.active([*base[:s], c, *base[s + 1:]]) for c in range(d.n_choices)]
        varying = [i for i in range(len(decisions))
                   if decisions[i].group == OPERATION and len({m[i] for m in masks}) > 1]
        options = [[i for i in varying if m[i]] for m in masks]
        if any(options):  # a NASNet block's input feeds its operation whatever it is: no edge to follow
            if len({len(o) for o in options}) > 1:
                raise ConfigError(f"decision {d.name!r} chooses among options of {min(map(len, options))} to "
                                  f"{max(map(len, options))} edges, and a relaxed cell runs all of them; create "
                                  f"space {space.name!r} without min_blocks (full cells only)")
            out[s] = options
    return out


class ArchitectureWeights(Policy):
    """DARTS' architecture weights as a policy over the space's decisions.

    ``logits[d]`` are the weights of operation decision ``d`` (an edge); the rows of structure decisions that
    choose edges (a ``darts`` node's input pair) are not parameters but follow from the edges: option ``c`` has
    the logit ``sum(log strength(e))`` over the edges ``e`` it activates, so its most likely option takes the
    strongest edges and a sample draws pairs in proportion to the product of their strengths. A structure
    decision that activates no edge of its own (a ``nasnet`` block's input, which its operation decision
    weighs whatever the source) is learnt like an operation.
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space.decisions)
        width = max(d.n_choices for d in self.decisions)
        self.logits = nn.Parameter(torch.zeros(len(self.decisions), width))
        pad = torch.arange(width)[None, :] >= torch.tensor([d.n_choices for d in self.decisions])[:, None]
        self.register_buffer("pad", pad)
        # "none" is never an edge's strength (DARTS ranks edges by their other operations)
        none = torch.tensor([[i < d.n_choices and d.label(i) == "none" for i in range(width)] for d in self.decisions])
        self.register_buffer("none", none | pad)
        self.governed = _governed(space)

    def masked(self) -> torch.Tensor:
        """The logits with padding options at (finitely) minus infinity."""
        return self.logits.masked_fill(self.get_buffer("pad"), PAD_LOGIT)

    def weights(self) -> torch.Tensor:
        """Softmax of every row (DARTS' continuous relaxation), with gradient."""
        return torch.softmax(self.masked(), dim=-1)

    def full_logits(self) -> torch.Tensor:
        """Logits of every decision: the operation rows as learnt, the structure rows from edge strengths."""
        logits = self.masked()
        if not self.governed:
            return logits
        probs = torch.softmax(logits, dim=-1).masked_fill(self.get_buffer("none"), 0.0)
        strength = probs.max(dim=-1).values.clamp_min(1e-12).log()
        rows = logits.clone()
        for s, options in self.governed.items():
            row = torch.full_like(rows[s], PAD_LOGIT)
            for c, edges in enumerate(options):
                row[c] = strength[edges].sum() if edges else 0.0
            rows[s] = row
        return rows

    def trace(self, n: int, generator: torch.Generator | None = None,
              choices: torch.Tensor | None = None) -> Trace:
        logits = self.full_logits()
        n_dec, width = logits.shape
        flat = logits.unsqueeze(0).expand(n, n_dec, width).reshape(n * n_dec, width)
        given = None if choices is None else choices.reshape(-1)
        choice, log_p, ent, p = categorical(flat, generator, given)
        probs = p.reshape(n, n_dec, width)
        return Trace(choice.reshape(n, n_dec), log_p.reshape(n, n_dec), ent.reshape(n, n_dec),
                     [probs[:, i, : d.n_choices] for i, d in enumerate(self.decisions)])


@dataclass
class DartsConfig:
    """DARTS' architecture optimiser (Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3) and a warm-up.

    ``warmup`` evaluations train only the network's weights, under uniform architecture weights (weight
    sharing sets it to a quarter of the budget, as for the other one-shot strategies).
    """

    lr: float = 3e-4  # Adam learning rate of the architecture weights
    beta1: float = 0.5  # Adam's first beta
    weight_decay: float = 1e-3  # L2 weight decay of the architecture weights
    warmup: int = 0  # first evaluations that train only the network weights (one-shot: a quarter of the budget)
    order: int = 1  # 1: first-order DARTS (the weights as they are); 2: second order (after a virtual weight step)
    hvp: str = "difference"  # order 2's Hessian-vector product: "difference" (DARTS' central difference) or "exact"
    # (double backpropagation: no step-size error where ReLUs and max-pools switch; on CPU 1.7x the difference's time)

    def __post_init__(self) -> None:
        if self.lr <= 0 or not 0 <= self.beta1 < 1 or self.weight_decay < 0 or self.warmup < 0:
            raise ValueError("need lr > 0, 0 <= beta1 < 1, weight_decay >= 0 and warmup >= 0")
        if self.order not in (1, 2):
            raise ValueError(f"order must be 1 (first-order DARTS) or 2 (second order), got {self.order}")
        if self.hvp not in ("difference", "exact"):
            raise ValueError(f"hvp must be 'difference' or 'exact', got {self.hvp!r}")
        if self.hvp == "exact" and self.order != 2:
            raise ValueError("hvp='exact' needs order=2: the first order has no Hessian-vector product")


class DifferentiableStrategy(Strategy):
    """Architecture weights learnt by gradient through a super-network (see the module docstring).

    What the ``supernet`` evaluator calls: :meth:`relaxed` (the weighted architecture of a step, with
    gradient), :attr:`learning` (past the warm-up) and :meth:`learn` (one optimiser step on the gradient the evaluator
    computed for a relaxed architecture, of the first or the second order).
    """

    Config = DartsConfig
    #: whether the network's weights are trained through the whole weighted mixture (DARTS), so that removing an
    #: operation from it measures what the network relies on (perturbation-based derivation, the default then)
    trains_mixture = True

    def __init__(self, space: SearchSpace, config: Any = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        try:
            self.policy = ArchitectureWeights(space)
        except ConfigError as exc:
            raise ConfigError(f"strategy: {type(self).__name__.lower()} relaxes cells of a fixed size: {exc}") from None
        cfg = self.config
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999),
                                          weight_decay=cfg.weight_decay)
        self.told = 0
        self.steps = 0  # architecture steps taken
        self.last_loss: float | None = None

    # ----------------------------------------------------------------- what the evaluator drives
    def relaxed(self, progress: float) -> Relaxed:
        """The relaxed architecture of one step, ``progress`` (0 to 1) into the search."""
        raise NotImplementedError

    @property
    def learning(self) -> bool:
        """Whether the architecture weights learn now (the warm-up is over)."""
        return self.told >= self.config.warmup

    def learn(self, relaxed: Relaxed, grad: torch.Tensor, loss: float) -> None:
        """One optimiser step of the architecture weights, given ``grad``, the gradient of the architecture loss
        ``loss`` with respect to ``relaxed.weights`` (a relaxed architecture of :meth:`relaxed`, its graph kept).

        The evaluator computes ``grad`` (first or second order); the chain rule to the logits is the strategy's,
        so that a relaxation (DARTS' softmax, GDAS' straight-through sample) stays its own business.
        """
        (logits_grad,) = torch.autograd.grad(relaxed.weights, [self.policy.logits], grad_outputs=grad)
        self.optimizer.zero_grad(set_to_none=True)
        self.policy.logits.grad = logits_grad
        with one_thread():
            self.optimizer.step()
        self.steps += 1
        self.last_loss = loss

    # ----------------------------------------------------------------- ask / tell
    def ask(self, n: int = 1) -> list[Architecture]:
        """The architecture the weights derive now (the same ``n`` times: the evaluations are steps)."""
        if not self.space.is_valid(choices := self.most_likely()):
            raise RuntimeError(f"{type(self).__name__}: the architecture weights derive an invalid architecture")
        return [self.space.make(choices)] * n

    def most_likely(self) -> list[int]:
        with torch.no_grad():
            return self.policy.trace(1).choices[0].tolist()

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self.told += len(results)

    def status(self) -> dict[str, float]:
        """Warm-up left, or the last architecture loss and the weights' mean entropy."""
        if not self.learning:
            return {"warm-up left": float(self.config.warmup - self.told)}
        with torch.no_grad():
            ent = self.policy.trace(1).entropies.mean().item()
        return {"entropy": ent, **({"arch loss": self.last_loss} if self.last_loss is not None else {})}

    def observe(self) -> dict[str, dict[str, list[float]]]:
        """The weights now, as probabilities: ``{"structure": {decision: ...}, "operation": {...}}``."""
        out: dict[str, dict[str, list[float]]] = {STRUCTURE: {}, OPERATION: {}}
        for d, p in zip(self.space.decisions, self.policy.probabilities()):
            out[d.group][d.name] = [float(x) for x in p]
        return out


@STRATEGIES.register("darts", guided=True, differentiable=True, observable=True,
                     paper="Liu, Simonyan & Yang 2019 (DARTS, first or second order)")
class Darts(DifferentiableStrategy):
    """DARTS: every operation of every edge weighted by the softmax of its architecture weights (first order by
    default, ``order=2`` for the second-order approximation)."""

    def relaxed(self, progress: float) -> Relaxed:
        return Relaxed(self.policy.weights())
