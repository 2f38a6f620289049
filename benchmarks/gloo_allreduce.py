"""Latency of one gloo all-reduce between two local processes (the size of one batch norm's synced statistics),
and how many batch norms one NB201 child (C=16, N=1) runs in a forward pass: data-parallel scoring syncs each.

Usage: python benchmarks/gloo_allreduce.py [--count 2000] [--channels 32]
       python benchmarks/gloo_allreduce.py --floats 1 --count 200    # a float32 buffer of that size instead
       python benchmarks/gloo_allreduce.py --floats 316346 --count 200   # the gradients of an NB201 network, N=1
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nasforge.factory import create_space

CELLS = {
    "all nor_conv_3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "best NB201 cell": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
}


def replica(rank: int, count: int, channels: int, port: int, floats: int = 0) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rows = torch.zeros(2, 1 + 2 * channels, dtype=torch.float64)  # what Replicas.synced_batch_norm reduces
    if floats:
        rows = torch.zeros(floats)  # a flat gradient buffer, as Replicas.reduce_step reduces
    for _ in range(50):
        dist.all_reduce(rows)
    start = time.perf_counter()
    for _ in range(count):
        dist.all_reduce(rows)
    if rank == 0:
        print(f"gloo all_reduce of {rows.numel()} {str(rows.dtype)[6:]}: {1e3 * (time.perf_counter() - start) / count:.3f} ms each",
              flush=True)
    dist.destroy_process_group()


def batch_norms_run(arch: str) -> int:
    """Batch norms executed by one forward pass of the NB201 network (C=16, N=1) of ``arch``."""
    space = create_space("nb201")
    model = space.build(space.parse(arch), num_classes=10, in_channels=3, C=16, N=1)
    calls = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
    return len(calls)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--port", type=int, default=29533)
    p.add_argument("--floats", type=int, default=0, help="all-reduce a float32 buffer of this size instead")
    a = p.parse_args()
    for name, arch in CELLS.items():
        print(f"batch norms in one forward of an NB201 child (C=16, N=1), {name}: {batch_norms_run(arch)}", flush=True)
    mp.spawn(replica, args=(a.count, a.channels, a.port, a.floats), nprocs=2)


if __name__ == "__main__":
    main()
