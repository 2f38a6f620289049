"""Data-parallel training with ``torch.distributed``: one training split across processes.

Every process (a *replica*) holds the same model and draws the same batch order and augmentation from the same
seeded generator; each runs forward and backward on its own contiguous share of every batch, and the gradients are
averaged (weighted by share size) before the one optimiser step all replicas take alike. The result is, up to
batch normalisation's per-replica statistics and float summation order, the step one process takes on the whole
batch. The loss travels with the gradients, so that a diverged loss on one replica stops them all at the same step.

Processes are started by ``torchrun`` (one machine or several, with its rendezvous) or by ``nasforge ... --nproc N``
on one machine; both set ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``, and :func:`init_from_env`
joins the group (gloo on the CPU, NCCL on CUDA). Ray, by contrast, spreads independent evaluations (README).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

T = TypeVar("T")

#: environment variables torchrun sets; present with WORLD_SIZE > 1, the process is one of several replicas
ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Replicas:
    """This process' place among the data-parallel replicas (``world`` processes, this one ``rank``)."""

    rank: int
    world: int

    @classmethod
    def current(cls) -> Replicas | None:
        """The replicas of the initialised process group, or None when training runs in one process."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size())
        return None

    @property
    def main(self) -> bool:
        """Rank 0: the replica that writes files and logs."""
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This replica's contiguous share of a batch of ``n`` (sizes differ by at most one)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def reduce_step(self, params: Sequence[torch.nn.Parameter], loss: float, weight: float) -> float:
        """Average the gradients of ``params`` over the replicas, each weighted by its share ``weight`` of the
        batch (their sum is 1), and return the batch's loss (non-finite when any replica's is).

        One all-reduce of one flat buffer: gradients and the weighted loss together. Parameters without a gradient
        on every replica (a super-network's operations outside the child) keep none, so that the optimiser leaves
        them alone as it does in one process; a small all-reduce first says which those are."""
        device = params[0].device if params else torch.device("cpu")
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
        dist.all_reduce(present)
        used = [p for p, n in zip(params, present.tolist()) if n > 0]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in used]
        summed, value = self.weighted_sum(grads, loss, weight, device)
        for p, g in zip(used, summed):
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        return value

    def weighted_sum(self, tensors: Sequence[torch.Tensor], value: float, weight: float,
                     device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], float]:
        """The sums over the replicas of ``weight`` times each of ``tensors`` and of ``weight * value``, in one
        all-reduce of one flat buffer: with each replica's share of a batch as ``weight`` and its gradients and
        loss on that share, the whole batch's gradients and loss. The value is NaN when any replica's is not
        finite. Returns views into the buffer, shaped as ``tensors``."""
        finite = torch.isfinite(torch.tensor(value))
        dtype = tensors[0].dtype if tensors else torch.float32
        flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors]
                         + [torch.zeros(1, dtype=dtype, device=tensors[0].device if tensors else device)])
        flat.mul_(weight)
        flat[-1] = value * weight if finite else float("nan")
        dist.all_reduce(flat)
        out, offset = [], 0
        for t in tensors:
            out.append(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
        return out, float(flat[-1])

    def sum(self, values: Iterable[float]) -> list[float]:
        """Element-wise sums over the replicas (counts, losses for the logs)."""
        t = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(t)
        return [float(v) for v in t]

    def gather(self, value: T) -> list[T]:
        """Every replica's ``value`` (small picklable objects such as lists of scores), in rank order."""
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def shift(self, start: int, stop: int) -> slice:
        """This replica's share of the items ``start:stop`` of a sequence (:meth:`share` moved to ``start``)."""
        part = self.share(stop - start)
        return slice(start + part.start, start + part.stop)

    @contextlib.contextmanager
    def synced_batch_norm(self, model: nn.Module) -> Iterator[None]:
        """Within the block, every batch norm of ``model`` that normalises with batch statistics without updating
        running ones takes the statistics of the batch of all replicas together: each replica forwards its share
        of a batch and gets, up to float summation order, the outputs of one process forwarding the whole batch.

        For scoring (no gradients flow between replicas); one small all-reduce per such batch norm and forward.
        Batch norms that use or update running statistics run as they are."""
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.forward = _synced_forward(m, self)  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            for m in norms:
                del m.forward

    def main_first(self, fn: Callable[[], T], ready: bool) -> T:
        """``fn()`` on every replica: all at once when every replica is ``ready`` (say, finds the decoded data in
        its cache), else rank 0 first and the others after it (they then read what rank 0 left in the cache
        instead of all doing the same work)."""
        if self.sum([0.0 if ready else 1.0])[0] == 0:
            return fn()
        if self.main:
            try:
                return fn()
            finally:  # also when it fails: the others then fail alike instead of waiting forever
                dist.barrier()
        dist.barrier()
        return fn()


def _synced_forward(bn: nn.modules.batchnorm._BatchNorm, replicas: Replicas) -> Callable[[torch.Tensor], Any]:
    original = type(bn).forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        batch_stats = bn.training or bn.running_mean is None
        updates = bn.training and bn.track_running_stats and bn.running_mean is not None
        if not batch_stats or updates:
            return original(bn, x)
        dims = [0, *range(2, x.dim())]
        n = x.numel() // max(x.shape[1], 1)
        rows = torch.zeros(replicas.world, 1 + 2 * x.shape[1], dtype=torch.float64, device=x.device)
        if n > 0:
            var, mean = torch.var_mean(x.detach(), dim=dims, unbiased=False)
            rows[replicas.rank, 0] = n
            rows[replicas.rank, 1:].copy_(torch.cat([mean.double(), var.double() * n]))
        dist.all_reduce(rows)
        # Chan et al.'s pairwise combination of the replicas' means and sums of squared deviations, in float64
        counts, means, m2 = rows[:, :1], rows[:, 1:1 + x.shape[1]], rows[:, 1 + x.shape[1]:]
        total = counts.sum().clamp(min=1)
        mean_all = (counts * means).sum(0) / total
        var_all = (m2.sum(0) + (counts * (means - mean_all) ** 2).sum(0)) / total
        return nn.functional.batch_norm(x, mean_all.to(x.dtype), var_all.to(x.dtype), bn.weight, bn.bias, False,
                                        0.0, bn.eps)

    return forward


def init_from_env(device: torch.device | str = "cpu") -> Replicas | None:
    """Join the process group described by torchrun's environment variables (gloo on the CPU, NCCL on CUDA);
    None when this process trains alone (no ``WORLD_SIZE`` above 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # torch.distributed.nn's functions take the default group as a default argument, evaluated on import. Imported
        # once the group exists (torch._dynamo imports it, on an optimiser's first step) they hold it for good: leaving
        # the group then cannot stop gloo's threads, and one of them may abort the process at exit (SIGABRT).
        import torch.distributed.nn as _nn_functions  # noqa: F401

        with _signals_end_the_process():
            dist.init_process_group(backend=backend)
        log.info("data-parallel replica %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return Replicas.current()


def env_rank() -> int:
    """This process' rank as torchrun's environment gives it, known before it joins the process group (0 when it
    runs alone): a replica other than rank 0 leaves the run directory's lock and writes to rank 0."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


@contextlib.contextmanager
def _signals_end_the_process() -> Iterator[None]:
    """SIGINT and SIGTERM with their default effect, ending the process, within the block.

    The rendezvous waits in C++ for every replica, where Python's handlers (SIGTERM as Ctrl-C) never run: a replica
    whose peer failed before joining would wait out the whole rendezvous timeout, deaf to the launcher's SIGTERM.
    Before the group exists, there is nothing to stop cleanly."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler set outside Python, which cannot be put back from here
                signal.signal(sig, handler)


def barrier() -> None:
    """Wait until every replica got here (nothing outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (end of a data-parallel command).

    Leaving normally, every replica first waits for the others: a replica that tore down its connections while
    another was still busy (rank 0 writing results, say) could make gloo abort the other process at exit. Leaving
    on an exception it does not wait, so that the others fail on their next collective instead of hanging."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if sys.exc_info()[0] is None:
        try:
            dist.barrier()
        except RuntimeError as exc:  # another replica already left on an error: it reports that
            log.debug("replicas did not meet before leaving: %s", exc)
    dist.destroy_process_group()


def broadcast_state(model: torch.nn.Module, src: int = 0) -> None:
    """Give every replica rank ``src``'s parameters and buffers (start of training; batch-norm statistics at the
    end). Nothing happens outside a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for tensor in model.state_dict().values():
        if tensor.is_floating_point() or tensor.dtype in (torch.int64, torch.int32):
            dist.broadcast(tensor, src)


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (the rendezvous of replicas on one machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replica_env(rank: int, world: int, port: int) -> dict[str, str]:
    """The environment torchrun gives replica ``rank`` of ``world`` on this machine."""
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
