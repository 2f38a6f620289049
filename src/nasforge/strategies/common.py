"""Small pieces shared by strategies."""

from __future__ import annotations

import contextlib
from typing import Callable, Hashable, Iterable, Iterator

import numpy as np
import torch

from ..arch import Architecture
from ..spaces.base import SearchSpace

#: tries to find an architecture not seen before, before accepting a repeat
UNSEEN_TRIES = 200


class UnseenSampler:
    """Remembers which networks (``space.key``) were proposed and draws ones not seen yet."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.seen: set[Hashable] = set()

    def mark(self, archs: Iterable[Architecture]) -> None:
        self.seen.update(self.space.key(a) for a in archs)

    def is_new(self, arch: Architecture) -> bool:
        return self.space.key(arch) not in self.seen

    def unseen_neighbours(self, archs: Iterable[Architecture]) -> list[Architecture]:
        """The one-decision neighbours of ``archs`` not seen yet, each network once, in order."""
        out: list[Architecture] = []
        keys: set[Hashable] = set()
        for arch in archs:
            for nb in self.space.neighbours(arch):
                key = self.space.key(nb)
                if key not in self.seen and key not in keys:
                    keys.add(key)
                    out.append(nb)
        return out

    def exhausted(self) -> bool:
        size = self.space.size
        return size is not None and len(self.seen) >= size

    def propose(self, draw: Callable[[], Architecture], tries: int = UNSEEN_TRIES) -> Architecture:
        """The first of ``tries`` draws that is new (and mark it), else the last draw."""
        arch = draw()
        for _ in range(tries):
            if self.is_new(arch) or self.exhausted():
                break
            arch = draw()
        self.mark([arch])
        return arch

    def sample(self, rng: np.random.Generator) -> Architecture:
        return self.propose(lambda: self.space.sample(rng))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, restoring the caller's setting after it.

    Controllers and autoencoders of strategies are tiny: threads cannot speed them up, and on a busy
    machine the thread hand-offs of every small call were measured up to 15x slower than one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
