"""An evaluator that misbehaves on purpose (raises, hangs, kills its worker), to test executors.

Counters are per process, so in a pool of workers each one misbehaves on its own every k-th call; a
retried evaluation usually lands on a call that behaves.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass

from ..arch import Architecture
from ..registry import EVALUATORS
from ..result import Result
from .toy import ToyEvaluator


@dataclass
class FaultyConfig:
    """Every k-th call of a process raises / hangs / exits (0 = never)."""

    raise_every: int = 0  # raise an error at every k-th evaluation (0: never)
    hang_every: int = 0  # hang at every k-th evaluation (0: never)
    exit_every: int = 0  # end the worker process at every k-th evaluation (0: never)
    hang_seconds: float = 3600.0  # how long a hang lasts
    delay: float = 0.0  # seconds each well-behaved evaluation takes
    raise_at_start: bool = False  # raise when built in a worker process: a worker that can never start
    hang_at_start: bool = False  # hang (hang_seconds) when built in a worker process


@EVALUATORS.register("faulty", spaces=("toy",), testing=True, trains=False)
class FaultyEvaluator(ToyEvaluator):
    """Toy objective with injected failures: for testing executors and retries."""

    # Not a ToyConfig subclass, so that "noise" stays out of its fields (it is fixed at 0 below); the
    # toy's inferred ``type[ToyConfig]`` is narrower than the Evaluator base's ``ClassVar[type]``.
    Config = FaultyConfig

    def __init__(self, space, config: FaultyConfig | None = None, context: object = None) -> None:
        super().__init__(space, None, context)
        self.config = config or FaultyConfig()
        if multiprocessing.parent_process() is not None:  # a worker process, not the search's own
            if self.config.hang_at_start:
                time.sleep(self.config.hang_seconds)
            if self.config.raise_at_start:
                raise RuntimeError(f"injected start-up failure of process {os.getpid()}")
        self.config.noise = 0.0  # the toy part stays exact
        self.calls = 0

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        self.calls += 1
        c = self.config
        if c.exit_every and self.calls % c.exit_every == 0:
            os._exit(3)  # the worker dies without a word, as a killed process or lost node would
        if c.hang_every and self.calls % c.hang_every == 0:
            time.sleep(c.hang_seconds)
        if c.raise_every and self.calls % c.raise_every == 0:
            raise RuntimeError(f"injected failure on call {self.calls} of process {os.getpid()}")
        if c.delay:
            time.sleep(c.delay)
        return super()._evaluate(arch, fidelity, seed)
