"""Successive halving and Hyperband over the candidates of any strategy (Li et al., JMLR 2018), and BOHB.

Hyperband evaluates many candidates at a low fidelity (a few epochs) and promotes the best of them to
higher fidelities, in brackets that trade the number of candidates against their starting fidelity. Here
it wraps a *base* strategy that proposes the candidates: random search by default (``hyperband``), or
``bo``'s Gaussian process and expected improvement (``bohb``, in the spirit of Falkner et al. 2018, who
pair Hyperband with a model of the results).

The rungs. The evaluator's fidelities (told by the run loop, :meth:`Strategy.use_fidelities`) between
``min_fidelity`` and ``max_fidelity`` are thinned, from the highest down, to a ladder whose neighbours
differ by a factor ``eta`` at least (NAS-Bench-201's 12 and 200 epochs: both; the toy's 1, 3, 9: all
three; a training of up to 27 epochs: 1, 3, 9, 27). With K + 1 rungs, bracket s (K, K-1, ..., 0, then
again) starts ``ceil((K + 1) / (s + 1) * R / r)`` new candidates at rung K - s (fidelity r; R the highest)
and each rung keeps the best fraction ``r_i / r_(i+1)`` of its results for the next (1/eta on a geometric
ladder), so that every rung of a bracket costs about the same, as in Hyperband. ``brackets`` = 1 runs the
most exploratory bracket only: successive halving.

Asynchrony. A rung is promoted once all its results are in; an ``ask`` while every open bracket waits for
results opens the next bracket, so parallel workers stay busy. Failed results are never promoted.

What the base learns. The base strategy is told the results of the lowest rung only (the fidelity where
most results are, so that a model such as ``bo``'s never mixes rewards of different fidelities); it
marks every candidate it proposed as seen, so none is proposed twice. Results the strategy did not ask
for (a warm start) go to the base as they are.

The search's incumbent is chosen by the run loop among the results at the highest fidelity reached
(:class:`~nasforge.run.loop.SearchRecord`), never by comparing a 12-epoch accuracy with a 200-epoch one.
Over an evaluator without fidelities (or with one) every bracket is one candidate of the base at the
evaluator's default fidelity: the search is the base strategy's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..arch import Architecture
from ..codec import Encoded, decode
from ..config import resolve_args
from ..registry import STRATEGIES
from ..result import Result
from ..spaces.base import SearchSpace
from .base import Proposal, Strategy


@dataclass
class HyperbandConfig:
    """Hyperband parameters (Li et al.'s ``eta`` = 3; the fidelities are the evaluator's)."""

    base: str = "rs"  # the strategy proposing new candidates (any registered one)
    base_args: dict[str, Any] = field(default_factory=dict)  # its settings
    eta: float = 3.0  # rungs at least eta apart in fidelity; a rung keeps about 1/eta of its results
    min_fidelity: float | None = None  # lowest rung (None: the evaluator's lowest fidelity)
    max_fidelity: float | None = None  # highest rung (None: the evaluator's highest)
    brackets: int | None = None  # brackets cycled, most exploratory first (None: all, Hyperband; 1: successive halving)

    def __post_init__(self) -> None:
        if self.eta <= 1:
            raise ValueError(f"eta must exceed 1, got {self.eta}")
        if self.brackets is not None and self.brackets < 1:
            raise ValueError(f"brackets must be at least 1, got {self.brackets}")
        if self.base in ("hyperband", "bohb"):
            raise ValueError(f"base: {self.base!r} cannot be the base of a Hyperband search")


def ladder(offered: Sequence[float] | None, eta: float, low: float | None = None,
           high: float | None = None) -> list[float | None]:
    """The rungs' fidelities, ascending: the offered ones within [low, high], thinned from the highest down so
    that neighbours differ by a factor ``eta`` at least; ``[None]`` without fidelities."""
    if not offered:
        return [None]
    within = sorted(f for f in offered if (low is None or f >= low) and (high is None or f <= high))
    if not within:
        raise ValueError(f"no fidelity of the evaluator ({', '.join(f'{f:g}' for f in offered)}) lies within "
                         f"min_fidelity {low} and max_fidelity {high}")
    rungs = [within[-1]]
    for f in reversed(within):
        if f * eta <= rungs[-1] * (1 + 1e-9):
            rungs.append(f)
    return list(reversed(rungs))


@STRATEGIES.register("hyperband", aliases=("successive-halving",), guided=False, batch=True, multi_fidelity=True,
                     paper="Li et al. 2018")
class Hyperband(Strategy):
    """Hyperband (successive halving in brackets) over the candidates of a base strategy (random by default)."""

    Config = HyperbandConfig

    def __init__(self, space: SearchSpace, config: HyperbandConfig | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        entry = STRATEGIES.get(self.config.base)
        base_config = resolve_args(entry.factory, dict(self.config.base_args), "strategy.base_args")
        self.base: Strategy = entry.factory(space, base_config, seed)
        self.rungs: list[float | None] = [None]
        self.brackets: list[dict[str, Any]] = []  # open brackets, oldest first
        self.n_brackets = 0  # brackets opened so far
        # proposals waiting for their results: architecture -> [(bracket id, rung, position)], oldest first
        self.pending: dict[Architecture, list[tuple[int, int, int]]] = {}

    # ---------------------------------------------------------------- fidelities
    def use_fidelities(self, fidelities: Sequence[float] | None) -> None:
        if self.n_brackets == 0:  # a ladder is fixed once a bracket has started
            c = self.config
            self.rungs = ladder(fidelities, c.eta, c.min_fidelity, c.max_fidelity)

    # ---------------------------------------------------------------- brackets
    def _open_bracket(self) -> dict[str, Any]:
        K = len(self.rungs) - 1
        cycle = K + 1 if self.config.brackets is None else min(self.config.brackets, K + 1)
        s = K - self.n_brackets % cycle
        start = K - s
        top, low = self.rungs[-1], self.rungs[start]
        ratio = 1.0 if top is None or low is None else top / low
        n = math.ceil((K + 1) / (s + 1) * ratio - 1e-9)
        bracket = {"id": self.n_brackets, "start": start, "rung": start, "target": n, "archs": [], "rewards": [],
                   "queue": []}
        self.n_brackets += 1
        self.brackets.append(bracket)
        return bracket

    def _from_bracket(self, b: dict[str, Any]) -> Proposal | None:
        if len(b["archs"]) >= b["target"]:
            return None  # waiting for this rung's results
        if b["rung"] == b["start"]:
            arch = self.base.ask(1)[0]
        else:
            arch = b["queue"].pop(0)
        self.pending.setdefault(arch, []).append((b["id"], b["rung"], len(b["archs"])))
        b["archs"].append(arch)
        b["rewards"].append(None)
        return Proposal(arch, self.rungs[b["rung"]])

    def _advance(self, b: dict[str, Any]) -> None:
        """Promote a complete rung's best to the next rung; close the bracket after its last rung."""
        while any(x is b for x in self.brackets) and len(b["archs"]) >= b["target"] \
                and all(r is not None for r in b["rewards"]):
            finite = [i for i, r in enumerate(b["rewards"]) if math.isfinite(r)]
            if b["rung"] + 1 >= len(self.rungs) or not finite:
                self.brackets = [x for x in self.brackets if x is not b]
                return
            here, there = self.rungs[b["rung"]], self.rungs[b["rung"] + 1]
            keep = max(1, math.floor(len(b["archs"]) * here / there + 1e-9)) if here and there else 1
            order = sorted(finite, key=lambda i: -b["rewards"][i])[:keep]  # stable: earlier first among ties
            b.update(rung=b["rung"] + 1, target=len(order), queue=[b["archs"][i] for i in order], archs=[], rewards=[])

    # ---------------------------------------------------------------- ask / tell
    def ask_proposals(self, n: int = 1) -> list[Proposal]:
        out: list[Proposal] = []
        while len(out) < n:
            proposal = next((p for b in self.brackets if (p := self._from_bracket(b)) is not None), None)
            out.append(proposal if proposal is not None else self._from_bracket(self._open_bracket()))  # type: ignore[arg-type]
        return out

    def ask(self, n: int = 1) -> list[Architecture]:
        return [p.arch for p in self.ask_proposals(n)]

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        to_base: tuple[list[Architecture], list[Result]] = ([], [])
        touched = []
        by_id = {b["id"]: b for b in self.brackets}
        for arch, result in zip(archs, results):
            waiting = self.pending.get(arch)
            if not waiting:  # not ours: a warm start or a result of another run
                to_base[0].append(arch)
                to_base[1].append(result)
                continue
            bid, rung, pos = waiting.pop(0)
            if not waiting:
                del self.pending[arch]
            b = by_id.get(bid)
            if b is None or b["rung"] != rung:
                continue  # defensive: a bracket that moved on cannot use it
            ok = not result.failed and math.isfinite(result.reward)
            b["rewards"][pos] = float(result.reward) if ok else -math.inf
            if rung == 0:
                to_base[0].append(arch)
                to_base[1].append(result)
            touched.append(b)
        if to_base[0]:
            self.base.tell(*to_base)
        for b in touched:
            self._advance(b)

    # ---------------------------------------------------------------- state
    def _attributes(self) -> dict[str, Any]:
        attrs = super()._attributes()
        attrs["base"] = self.base._attributes()  # the base's own state, without its space and config
        return attrs

    def state_to_save(self) -> dict[str, Any]:
        return self._attributes()

    def load_state_dict(self, state: dict[str, Any] | Encoded) -> None:
        if isinstance(state, Encoded):
            self.restore_state(state)
            return
        self._load(copy.deepcopy(state))

    def restore_state(self, saved: Encoded) -> None:
        self._load(decode(saved, self._attributes(), self._externals()))

    def _load(self, state: dict[str, Any]) -> None:
        state = dict(state)
        base = state.pop("base")
        if type(self.base).load_state_dict is Strategy.load_state_dict:
            vars(self.base).update(base)  # already a copy: the base's modules were restored into, not replaced
        else:
            self.base.load_state_dict(base)
        vars(self).update(state)

    def status(self) -> dict[str, float]:
        return {"brackets": float(self.n_brackets), **self.base.status()}


@dataclass
class BOHBConfig(HyperbandConfig):
    """BOHB: Hyperband whose candidates come from ``bo`` (a GP with expected improvement on the lowest rung)."""

    base: str = "bo"


@STRATEGIES.register("bohb", guided=True, batch=True, multi_fidelity=True, paper="Falkner et al. 2018; Li et al. 2018")
class BOHB(Hyperband):
    """Hyperband with Bayesian optimisation (``bo``) proposing the candidates."""

    Config = BOHBConfig
