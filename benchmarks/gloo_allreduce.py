"""Latency of one gloo all-reduce between two local processes (the size of one batch norm's synced statistics).

Usage: python benchmarks/gloo_allreduce.py [--count 2000] [--channels 32]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def replica(rank: int, count: int, channels: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rows = torch.zeros(2, 1 + 2 * channels, dtype=torch.float64)  # what Replicas.synced_batch_norm reduces
    for _ in range(50):
        dist.all_reduce(rows)
    start = time.perf_counter()
    for _ in range(count):
        dist.all_reduce(rows)
    if rank == 0:
        print(f"gloo all_reduce of {rows.numel()} float64: {1e3 * (time.perf_counter() - start) / count:.3f} ms each",
              flush=True)
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--port", type=int, default=29533)
    a = p.parse_args()
    mp.spawn(replica, args=(a.count, a.channels, a.port), nprocs=2)


if __name__ == "__main__":
    main()
