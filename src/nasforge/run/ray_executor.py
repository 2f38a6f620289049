"""Distributed evaluation on a Ray cluster (``pip install nasforge[ray]``).

One Ray actor per worker builds its evaluator from the run config once (a data set or table is loaded
once per worker) and evaluates the jobs it is given; actors are placed anywhere in the cluster with
the requested CPUs and GPUs per trial. An actor that exceeds the trial timeout is killed and replaced;
an actor whose worker process or node is lost is replaced; the job comes back as a failed
:class:`Done` with ``error_kind`` "timeout" or "lost", which the search loop retries elsewhere.

Every machine of the cluster needs nasforge installed (same version) and the data at the same path.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import time
from collections import deque
from typing import Any

from ..errors import ConfigError
from ..result import Result
from ..threads import worker_threads
from .executors import EXECUTORS, Done, Executor, Job, evaluate_safely

log = logging.getLogger(__name__)


class EvaluationActor:
    """Holds one evaluator for the lifetime of a Ray actor."""

    def __init__(self, config: Any) -> None:
        import torch

        from ..factory import create_evaluator, create_space

        torch.set_num_threads(worker_threads(config))
        self.evaluator = create_evaluator(config, create_space(config.space, **config.space_args))

    def evaluate(self, job: Job) -> Done:
        return evaluate_safely(self.evaluator, job)

    def where(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor: the ray executor needs Ray: pip install 'nasforge[ray]'") from None
    return ray


def check_ray_config(config: Any) -> None:
    """What can be checked of a Ray run without a cluster: that Ray is installed."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("executor: the ray executor needs Ray: pip install 'nasforge[ray]'")


#: seconds to wait for a TCP connection to ``ray_address`` before Ray's own, much longer, attempt
PROBE_TIMEOUT_S = 5.0


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` or ``ray://HOST:PORT`` address; None for ``auto`` and other forms,
    which Ray resolves itself."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    return (host, int(port)) if sep and host and port.isdigit() else None


def _probe(address: str) -> None:
    """Fail at once when nothing listens at ``address``: Ray itself retries a dead address for 20 s to minutes
    (printing a warning a second) before giving up."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        why = f"no answer within {PROBE_TIMEOUT_S:g} s" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ConfigError(f"ray_address: no Ray cluster at {address} ({why}); start it (ray start --head) or leave "
                          "--ray-address out to start a local one") from None


def _reason(exc: BaseException) -> str:
    """The most specific line of what Ray raised: the last line of its innermost cause (Ray's own message only
    repeats the address, and its causes carry tracebacks as text)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def ensure_ray(config: Any) -> bool:
    """Connect to the configured cluster or start a local one; True if this call started Ray. A cluster that cannot
    be joined is a :class:`ConfigError` naming ``ray_address``."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    if config.ray_address:
        _probe(config.ray_address)
        log.info("joining the Ray cluster at %s", config.ray_address)
        try:
            ray.init(address=config.ray_address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:  # what Ray raises for an address it cannot join
            raise ConfigError(f"ray_address: cannot join a Ray cluster at {config.ray_address} "
                              f"({_reason(exc)})") from exc
    else:
        # A local instance serves this process only: keep its traffic on the loopback interface.
        ray.init(num_cpus=max(int(config.workers * config.cpus_per_trial), 1), _node_ip_address="127.0.0.1",
                 num_gpus=int(config.workers * config.gpus_per_trial) or None, **kwargs)
    return True


@EXECUTORS.register("ray", in_process=False, parallel=True, distributed=True)
class RayExecutor(Executor):
    """Evaluations in ``workers`` Ray actors across a cluster, with timeouts and node-loss recovery."""

    check_config = staticmethod(check_ray_config)  # nasforge.factory.check_executor: before anything is written

    def __init__(self, evaluator: Any, config: Any) -> None:
        self.ray = _import_ray()
        self.config = config
        self.n_workers = config.workers
        self.timeout = config.trial_timeout
        self._started_ray = ensure_ray(config)
        # SPREAD puts workers on different nodes, so that losing one node loses as few evaluations as possible
        self._actor_cls = self.ray.remote(
            num_cpus=config.cpus_per_trial, num_gpus=config.gpus_per_trial, max_restarts=0,
            scheduling_strategy="SPREAD",
        )(EvaluationActor)
        self.queue: deque[Job] = deque()
        self.idle: list[Any] = []
        # ref -> [actor, job, start, name]; start is None until the actor finished starting up, so
        # that the trial timeout does not count Ray's worker start-up (importing torch, loading data)
        self.running: dict[Any, list[Any]] = {}
        self.startup: dict[Any, Any] = {}  # actor -> ref that resolves once the actor is constructed
        self.names: dict[Any, str] = {}  # actor -> its name, which tags the jobs it runs
        self._made = 0

    def _new_actor(self) -> Any:
        self._made += 1
        actor = self._actor_cls.remote(self.config)
        self.startup[actor] = actor.where.remote()
        self.names[actor] = f"ray-actor-{self._made}"
        return actor

    def submit(self, job: Job) -> None:
        while len(self.idle) + len(self.running) < self.n_workers:
            self.idle.append(self._new_actor())
        self.queue.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.idle and self.queue:
            actor, job = self.idle.pop(), self.queue.popleft()
            ref = actor.evaluate.remote(job)
            started = None if actor in self.startup else time.monotonic()
            self.running[ref] = [actor, job, started, self.names[actor]]

    def pending(self) -> int:
        return len(self.queue) + len(self.running)

    def _fail(self, ref: Any, kind: str, message: str) -> Done:
        actor, job, start, name = self.running.pop(ref)
        self.startup.pop(actor, None)
        self.names.pop(actor, None)
        start = time.monotonic() if start is None else start
        try:
            self.ray.kill(actor)
        except Exception:
            pass
        self.idle.append(self._new_actor())
        return Done(job.trial_id, Result.failure(message), time.monotonic() - start, kind, name)

    def wait(self) -> list[Done]:
        if not self.pending():
            raise RuntimeError("wait() with nothing submitted")
        out: list[Done] = []
        while not out:
            self._note_started()
            timeout = None
            if self.timeout:
                starts = [entry[2] for entry in self.running.values()]
                known = [s for s in starts if s is not None]
                timeout = max(min(known) + self.timeout - time.monotonic(), 0.0) if known else None
                if len(known) < len(starts):
                    timeout = 0.5 if timeout is None else min(timeout, 0.5)
            ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
            for ref in ready:
                try:
                    done = self.ray.get(ref)
                except self.ray.exceptions.RayError as exc:
                    out.append(self._fail(ref, "lost", f"worker lost: {type(exc).__name__}: {str(exc).splitlines()[0]}"))
                    continue
                actor, job, start, name = self.running.pop(ref)
                self.idle.append(actor)
                out.append(Done(done.trial_id, done.result, done.time_s, done.error_kind, name))
            if self.timeout:
                now = time.monotonic()
                for ref, (_, _, start, _) in list(self.running.items()):
                    if start is not None and now - start >= self.timeout:
                        out.append(self._fail(ref, "timeout", f"evaluation exceeded the trial timeout of {self.timeout:g} s"))
            self._dispatch()
        return out

    def _note_started(self) -> None:
        """Start the timeout clock of jobs whose actor has finished starting up."""
        if not self.startup:
            return
        refs = list(self.startup.values())
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        ready_set = set(ready)
        now = time.monotonic()
        for actor in [a for a, r in self.startup.items() if r in ready_set]:
            del self.startup[actor]
            for entry in self.running.values():
                if entry[0] is actor and entry[2] is None:
                    entry[2] = now

    def close(self) -> None:
        for actor in self.idle + [a for a, _, _, _ in self.running.values()]:
            try:
                self.ray.kill(actor)
            except Exception:
                pass
        self.idle, self.running, self.names = [], {}, {}
        if self._started_ray:
            self.ray.shutdown()
