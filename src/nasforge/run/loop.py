"""The one search loop: ask, evaluate, record, tell, for every strategy, evaluator and executor."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from ..evaluators.base import Evaluator
from ..result import Result
from ..spaces.base import SearchSpace
from ..strategies.base import Strategy
from .executors import Done, Executor, Job, SequentialExecutor
from .store import RunStore, Trial

log = logging.getLogger(__name__)


class Callback(Protocol):
    def __call__(self, trial: Trial, record: "SearchRecord") -> None: ...


@dataclass
class SearchRecord:
    """What a search did: finished trials in arrival order, and the incumbent after each."""

    space: SearchSpace
    trials: list[Trial]
    budget: int
    # The incumbent of trials[:_seen] (the last of which was _last), so that ``best`` reads each trial once.
    _best: Trial | None = field(default=None, init=False, repr=False, compare=False)
    _seen: int = field(default=0, init=False, repr=False, compare=False)
    _last: Trial | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_evaluations(self) -> int:
        return len(self.trials)

    @staticmethod
    def _better(t: Trial, best: Trial | None) -> bool:
        return not t.result.failed and math.isfinite(t.reward) and (best is None or t.reward > best.reward)

    def incumbents(self) -> list[Trial | None]:
        """After each evaluation, the trial with the best reward so far (failed trials never are)."""
        best, out = None, []
        for t in self.trials:
            if self._better(t, best):
                best = t
            out.append(best)
        return out

    @property
    def best(self) -> Trial | None:
        """The incumbent, updated from the trials appended since the last call (a changed list: from scratch)."""
        n = self._seen
        if n and (len(self.trials) < n or self.trials[n - 1] is not self._last):
            self._best, n = None, 0
        for t in self.trials[n:]:
            if self._better(t, self._best):
                self._best = t
        self._seen = len(self.trials)
        self._last = self.trials[-1] if self.trials else None
        return self._best

    def history(self) -> list[dict[str, Any]]:
        rows = []
        for t, inc in zip(self.trials, self.incumbents()):
            rows.append({
                "arch": str(t.arch),
                "reward": None if math.isnan(t.reward) else t.reward,
                "test_accuracy": t.result.test_accuracy,
                "incumbent_test_accuracy": None if inc is None else inc.result.test_accuracy,
                "cost": t.result.cost,
                "time_s": t.time_s,
                "overhead_ms": 1000.0 * t.overhead_s,
                "cached": t.cached,
                "failed": t.result.failed,
                **({"error": t.result.error} if t.result.failed else {}),
            })
        return rows


def _back_to_checkpoint(store: RunStore, space: SearchSpace, strategy: Strategy,
                        evaluator: Evaluator) -> dict[int, Trial]:
    """Restore strategy and evaluator from the last checkpoint and forget the results after it."""
    saved = store.load_checkpoint()
    n_done = 0 if saved is None else saved[0]
    if saved is not None:
        strategy.load_state_dict(saved[1]["strategy"])
        evaluator.load_state_dict(saved[1]["evaluator"])
    log.info("resuming from the checkpoint after %d evaluations; %d later results are redone",
             n_done, sum(t.finished for t in store.trials) - n_done)
    store.truncate(n_done)
    return {t.id: t for t in store.trials}


def _seed_for(run_seed: int, trial_id: int) -> int:
    return (run_seed * 1_000_003 + trial_id) % (2**31 - 1)


def run_search(
    space: SearchSpace,
    strategy: Strategy,
    evaluator: Evaluator,
    budget: int,
    *,
    store: RunStore | None = None,
    executor: Executor | None = None,
    callbacks: Sequence[Callback] = (),
    fidelity: float | None = None,
    seed: int = 0,
    snapshot_every: int = 10,
    reuse_results: bool = True,
    max_retries: int = 2,
) -> SearchRecord:
    """Search until ``budget`` evaluations have finished, then return the record.

    With a persistent ``store`` that already holds trials, the search resumes: the strategy state is
    restored, results recorded but not told are told, unfinished evaluations run again, and nothing
    finished is evaluated again. With ``reuse_results`` an architecture proposed a second time gets
    its earlier result back at no cost (it still counts against the budget). An evaluation whose
    worker raised, timed out or was lost is recorded as a failed attempt and run again, up to
    ``max_retries`` times; after that its failure is its result.
    """
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    store = store if store is not None else RunStore(None)
    executor = executor if executor is not None else SequentialExecutor(evaluator)
    trials = {t.id: t for t in store.load(space.from_dict)}
    # Evaluators with state of their own (shared weights) resume from the last joint checkpoint instead.
    checkpoint_every = int(getattr(evaluator, "checkpoint_every", 0) or 0) if store.persistent else 0
    if checkpoint_every and trials:
        trials = _back_to_checkpoint(store, space, strategy, evaluator)
    else:
        state = store.load_state()
        if state is not None:
            strategy.load_state_dict(state)
    record = SearchRecord(space, store.finished(), budget)
    known: dict[Any, Result] = {
        space.key(t.arch): t.result for t in record.trials if reuse_results and not t.result.failed
    }

    def tell(batch: list[Trial]) -> None:
        start = time.perf_counter()
        strategy.tell([t.arch for t in batch], [t.result for t in batch])
        store.mark_told(batch, time.perf_counter() - start, strategy.state_to_save)
        n = len(record.trials)
        # also at the end, so that a finished search's weights can be derived from again (`nasforge derive`)
        if checkpoint_every and (n % checkpoint_every == 0 or n >= budget):
            store.save_checkpoint(n, {"strategy": strategy.state_to_save(), "evaluator": evaluator.state_dict()})
        if store.persistent and snapshot_every and (n % snapshot_every == 0 or n >= budget):
            snap = strategy.observe()
            if snap is not None:
                store.add_snapshot(n, snap)

    untold = [t for t in record.trials if not t.told]
    if untold:
        log.info("telling %d recorded results the strategy had not learnt from", len(untold))
        tell(untold)

    inflight: dict[int, Trial] = {}
    ready: list[Done] = []

    def start_trial(t: Trial) -> None:
        cached = known.get(space.key(t.arch)) if reuse_results else None
        if cached is not None:
            ready.append(Done(t.id, Result(cached.reward, dict(cached.metrics), 0.0), 0.0))
            t.cached = True
        else:
            executor.submit(Job(t.id, t.arch, fidelity, _seed_for(seed, t.id)))
        inflight[t.id] = t

    for t in trials.values():
        if not t.finished:
            start_trial(t)
    if record.trials or inflight:
        log.info("resuming: %d of %d evaluations done, %d to redo", len(record.trials), budget, len(inflight))

    try:
        while True:
            free = max(executor.n_workers - executor.pending(), 0)
            n_ask = min(free, budget - len(record.trials) - len(inflight))
            if n_ask > 0 and not ready:
                start = time.perf_counter()
                archs = strategy.ask(n_ask)
                per = (time.perf_counter() - start) / max(len(archs), 1)
                for t in store.add_trials(archs, per, strategy.state_to_save):
                    start_trial(t)
            if not inflight:
                break
            done = ready[:] if ready else executor.wait()
            ready.clear()
            for d in done:
                t = inflight[d.trial_id]
                if d.error_kind and t.attempts < max_retries:
                    log.warning("trial %d: %s (%s); retrying (attempt %d of %d)", t.id, d.error_kind,
                                d.result.error, t.attempts + 2, max_retries + 1)
                    store.record_attempt(t, d.error_kind, d.result.error, d.worker, d.time_s)
                    executor.submit(Job(t.id, t.arch, fidelity, _seed_for(seed, t.id)))
                    continue
                del inflight[d.trial_id]
                store.record_result(t, d.result, d.time_s, cached=t.cached)
                record.trials.append(t)
                if reuse_results and not d.result.failed:
                    known.setdefault(space.key(t.arch), d.result)
                tell([t])
                for cb in callbacks:
                    cb(t, record)
    finally:
        executor.close()
    return record
