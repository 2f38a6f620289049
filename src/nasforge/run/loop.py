"""The one search loop: ask, evaluate, record, tell, for every strategy, evaluator and executor."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from .. import codec
from ..errors import ConfigError, RunDirError
from ..evaluators.base import Evaluator, StatefulEvaluator
from ..result import Result
from ..spaces.base import SearchSpace
from ..strategies.base import Proposal, Strategy
from .executors import Done, Executor, Job, SequentialExecutor
from .store import RunStore, Trial

log = logging.getLogger(__name__)

#: with adaptive saving, the strategy state is saved once the time since the last save is this many times
#: what that save took: saving costs at most ~5% of a search, and a resume replays at most about that long
SAVE_COST_RATIO = 20.0
#: writes of fast evaluations are committed in groups at most this old (seconds): a kill loses at most that
#: much work, while a result of an evaluation that took longer than ``RunStore.commit_risk`` commits at once
COMMIT_DELAY = 0.2
#: before waiting for evaluations the open group is committed, unless the last wait was shorter than this
QUICK_WAIT = 0.005


class Callback(Protocol):
    def __call__(self, trial: Trial, record: SearchRecord) -> None: ...


def fidelity_rank(fidelity: float | None) -> float:
    """A recorded fidelity, for comparing fidelities: None (the evaluator's default, its full one) ranks highest."""
    return math.inf if fidelity is None else float(fidelity)


@dataclass
class SearchRecord:
    """What a search did: finished trials in arrival order, and the incumbent after each.

    The incumbent is the trial with the best reward among those at the highest fidelity reached so far
    (rewards at different fidelities are never compared: a 12-epoch accuracy is no rival of a 200-epoch one),
    so it may get worse when the first result at a higher fidelity arrives; with one fidelity it is simply
    the best reward so far.
    """

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
        if t.outcome.failed or not math.isfinite(t.reward):
            return False
        if best is None:
            return True
        f, g = fidelity_rank(t.fidelity), fidelity_rank(best.fidelity)
        return f > g or (f == g and t.reward > best.reward)

    def incumbents(self) -> list[Trial | None]:
        """After each evaluation, the trial with the best reward so far at the highest fidelity reached
        (failed trials never are)."""
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
                "test_accuracy": t.outcome.test_accuracy,
                "incumbent_test_accuracy": None if inc is None else inc.outcome.test_accuracy,
                "cost": t.outcome.cost,
                "fidelity": t.fidelity,
                "time_s": t.time_s,
                "overhead_ms": 1000.0 * t.overhead_s,
                "cached": t.cached,
                "failed": t.outcome.failed,
                **{k: t.outcome.metrics[k] for k in SIZE_METRICS if t.outcome.metrics.get(k) is not None},
                **({"error": t.outcome.error} if t.outcome.failed else {}),
            })
        return rows


#: metrics of an evaluation that result.json's history carries beside the reward (the store keeps them all)
SIZE_METRICS = ("params", "flops", "latency_ms")


def _back_to_checkpoint(store: RunStore, space: SearchSpace, strategy: Strategy,
                        evaluator: StatefulEvaluator) -> dict[int, Trial]:
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


def restore_strategy(store: RunStore, strategy: Strategy, trials: dict[int, Trial]) -> tuple[int, int]:
    """Bring a freshly built ``strategy`` to where the recorded search left it: the last saved state, then
    the asks and tells recorded after it, replayed in order (``trials``: the store's trials by id).

    A replayed ask must propose exactly the recorded architectures, else the run cannot be continued
    (:class:`RunDirError`). Returns the event the saved state included and the number of events replayed.
    """
    saved = store.load_state()
    after = 0
    if saved is not None:
        after, state = saved
        strategy.restore_state(state)
    events = store.events(after)
    for event in events:
        missing = [i for i in event.trials if i not in trials]
        if missing:
            raise RunDirError(f"{store.path}: event {event.seq} ({event.kind}) names trials {missing} that the run "
                              "has no record of (an edited or damaged run database)")
        batch = [trials[i] for i in event.trials]
        if event.kind == "ask":
            proposals = strategy.ask_proposals(event.n)
            # a proposal without a fidelity was recorded at the run's: only a chosen fidelity is compared
            proposed = [(p.arch, p.fidelity) for p in proposals]
            recorded = [(t.arch, t.fidelity if p.fidelity is not None else None) for t, p in zip(batch, proposals)]
            recorded += [(t.arch, t.fidelity) for t in batch[len(proposals):]]
            if proposed != recorded:
                k = next((i for i, (a, b) in enumerate(zip(proposed, recorded)) if a != b),
                         min(len(proposed), len(recorded)))
                now = _shown(*proposed[k]) if k < len(proposed) else "nothing"
                was = f"{_shown(*recorded[k])} (trial {batch[k].id})" if k < len(recorded) else "nothing"
                raise RunDirError(f"{store.path}: replaying the recorded search diverged at event {event.seq}: the "
                                  f"strategy now proposes {now} where the run recorded {was}; it cannot be continued "
                                  "(a nasforge version or strategy setting that differs from the one that wrote it?)")
        else:
            results = [t.result for t in batch if t.result is not None]
            if len(results) < len(batch):
                raise RunDirError(f"{store.path}: event {event.seq} tells trials without a recorded result "
                                  "(an edited or damaged run database)")
            strategy.tell([t.arch for t in batch], results)
    if events:
        log.info("restored the strategy state after event %d and replayed the %d events recorded since",
                 after, len(events))
    return after, len(events)


def _shown(arch: Any, fidelity: float | None) -> str:
    return str(arch) if fidelity is None else f"{arch} at fidelity {fidelity:g}"


class _StateSaver:
    """Saves the strategy state now and then: after every ``every`` tells, or (None) adaptively, when the time
    since the last save is ``SAVE_COST_RATIO`` times what that save took; 0 saves only at the end or when the
    search stops (the recorded events rebuild any state in between)."""

    def __init__(self, store: RunStore, strategy: Strategy, every: int | None, enabled: bool, saved_event: int) -> None:
        self.store, self.strategy, self.every, self.enabled = store, strategy, every, enabled
        self.saved_event = saved_event
        self.tells = 0
        self.cost = 0.0
        self.last_end = -math.inf

    def after_tell(self) -> None:
        self.tells += 1
        if not self.enabled:
            return
        if self.every is None:
            due = time.perf_counter() - self.last_end >= SAVE_COST_RATIO * self.cost
        else:
            due = self.every > 0 and self.tells >= self.every
        if due:
            self.save()

    def save(self) -> None:
        start = time.perf_counter()
        self.store.save_state(self.strategy.save_state())
        self.last_end = time.perf_counter()
        self.cost = self.last_end - start
        self.saved_event = self.store.last_event
        self.tells = 0

    def final(self) -> None:
        """Save unless the saved state already includes every recorded event."""
        if self.enabled and self.store.last_event > self.saved_event:
            self.save()


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
    state_every: int | None = None,
) -> SearchRecord:
    """Search until ``budget`` evaluations have finished, then return the record.

    With a persistent ``store`` that already holds trials, the search resumes: the strategy state is
    restored (the last saved one, then the recorded asks and tells after it are replayed), results
    recorded but not told are told, unfinished evaluations run again, and nothing finished is evaluated
    again. ``state_every`` says when the strategy state is saved: None adaptively (see
    ``SAVE_COST_RATIO``), k after every k tells, 0 only at the end or when the search stops; never
    with an evaluator that checkpoints itself (its checkpoints hold the strategy state). With
    ``reuse_results`` an architecture proposed a second time gets its earlier result back at no cost
    (it still counts against the budget). An evaluation whose
    worker raised, timed out or was lost is recorded as a failed attempt and run again, up to
    ``max_retries`` times; after that its failure is its result.
    """
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    store = store if store is not None else RunStore(None)
    executor = executor if executor is not None else SequentialExecutor(evaluator)
    trials = {t.id: t for t in store.load(space.from_dict)}
    offered = evaluator.fidelities
    strategy.use_fidelities(offered)  # before a restored state, which holds what the strategy learnt of them
    # Evaluators with state of their own (shared weights) resume from the last joint checkpoint instead.
    checkpoint_every = evaluator.checkpoint_every if isinstance(evaluator, StatefulEvaluator) and store.persistent else 0
    saved_event = 0
    if checkpoint_every and trials and isinstance(evaluator, StatefulEvaluator):
        trials = _back_to_checkpoint(store, space, strategy, evaluator)
    elif store.persistent and trials:
        saved_event, _ = restore_strategy(store, strategy, trials)
    saver = _StateSaver(store, strategy, state_every, store.persistent and not checkpoint_every, saved_event)
    # whether the strategy is exactly what the recorded events make of it (not so inside an ask or tell
    # until its event is committed): only then may its state be saved when the search stops
    consistent = [True]
    record = SearchRecord(space, store.finished(), budget)
    # results to reuse, by network and fidelity (a result at 12 epochs is no answer for 200)
    known: dict[Any, Result] = {
        (space.key(t.arch), t.fidelity): t.outcome for t in record.trials if reuse_results and not t.outcome.failed
    }

    def tell(batch: list[Trial]) -> None:
        consistent[0] = False
        start = time.perf_counter()
        strategy.tell([t.arch for t in batch], [t.outcome for t in batch])
        store.mark_told(batch, time.perf_counter() - start)
        consistent[0] = True
        saver.after_tell()
        n = len(record.trials)
        # also at the end, so that a finished search's weights can be derived from again (`nasforge derive`)
        if checkpoint_every and isinstance(evaluator, StatefulEvaluator) and (n % checkpoint_every == 0 or n >= budget):
            store.save_checkpoint(n, strategy.save_state(), codec.encode(evaluator.state_dict()))
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
    commit_delay = store.commit_delay
    if store.persistent:
        store.commit_delay = COMMIT_DELAY
    last_wait = math.inf

    def start_trial(t: Trial) -> None:
        cached = known.get((space.key(t.arch), t.fidelity)) if reuse_results else None
        if cached is not None:
            ready.append(Done(t.id, Result(cached.reward, dict(cached.metrics), 0.0), 0.0))
            t.cached = True
        else:
            executor.submit(Job(t.id, t.arch, t.fidelity, _seed_for(seed, t.id)))
        inflight[t.id] = t

    def fidelities_of(proposals: list[Proposal]) -> list[float | None]:
        out = []
        for p in proposals:
            if p.fidelity is not None and (offered is None or float(p.fidelity) not in offered):
                have = "none" if offered is None else ", ".join(f"{f:g}" for f in offered)
                raise ConfigError(f"strategy {type(strategy).__name__} asked for fidelity {p.fidelity:g}, which the "
                                  f"evaluator does not offer (its fidelities: {have})")
            out.append(fidelity if p.fidelity is None else float(p.fidelity))
        return out

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
                consistent[0] = False
                start = time.perf_counter()
                proposals = strategy.ask_proposals(n_ask)
                per = (time.perf_counter() - start) / max(len(proposals), 1)
                new = store.add_trials([p.arch for p in proposals], per, n_ask, fidelities_of(proposals))
                consistent[0] = True
                for t in new:
                    start_trial(t)
            if not inflight:
                break
            if ready:
                done = ready[:]
            else:
                if last_wait >= QUICK_WAIT:  # evaluations take a while: let readers see what was recorded
                    store.flush()
                start = time.perf_counter()
                done = executor.wait()
                last_wait = time.perf_counter() - start
            ready.clear()
            for d in done:
                t = inflight[d.trial_id]
                if d.error_kind and t.attempts < max_retries:
                    log.warning("trial %d: %s (%s); retrying (attempt %d of %d)", t.id, d.error_kind,
                                d.result.error, t.attempts + 2, max_retries + 1)
                    store.record_attempt(t, d.error_kind, d.result.error, d.worker, d.time_s)
                    executor.submit(Job(t.id, t.arch, t.fidelity, _seed_for(seed, t.id)))
                    continue
                del inflight[d.trial_id]
                store.record_result(t, d.result, d.time_s, cached=t.cached)
                record.trials.append(t)
                if reuse_results and not d.result.failed:
                    known.setdefault((space.key(t.arch), t.fidelity), d.result)
                tell([t])
                for cb in callbacks:
                    cb(t, record)
        saver.final()
        store.flush()
    except BaseException:
        try:  # stopped (Ctrl-C, SIGTERM, an error): keep what was recorded, and the strategy state if it is whole
            if consistent[0]:
                saver.final()
            store.flush()
        except Exception as exc:  # do not hide why the search stopped
            log.warning("could not save the search's last changes while stopping: %s", exc)
        raise
    finally:
        store.commit_delay = commit_delay
        executor.close()
    return record
