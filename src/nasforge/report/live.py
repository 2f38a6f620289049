"""Watching a search as it runs: a report page that refreshes itself, and TensorBoard scalars.

Both are search callbacks (``callback(trial, record)`` after every result), so the run loop knows nothing of
them: ``nasforge search --report`` and ``--tensorboard`` add them.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

#: the training loop's logger; its per-epoch records carry ``train_progress``
TRAIN_LOGGER = "nasforge.train.loop"


class LiveReport:
    """Rewrites ``run_dir``'s report while the search runs.

    The page reloads itself every ``every_s`` seconds. Writing it costs time the search does not get, so a
    rewrite waits at least ``every_s`` and at least ``9 x`` the last rewrite's duration (under 10% of the run).
    """

    def __init__(self, run_dir: str | Path, out: str | Path | None = None, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir = Path(run_dir)
        self.out = Path(out) if out is not None else None
        self.every_s = max(1.0, float(every_s))
        self.clock = clock
        self._next = -math.inf
        self.writes = 0
        self._cache: dict[Any, Any] = {}  # diagrams and model costs drawn for earlier pages

    @property
    def path(self) -> Path:
        from .build import REPORT_FILE

        return self.out or self.run_dir / REPORT_FILE

    def write(self, final: bool = False) -> None:
        from .build import write_reports

        start = self.clock()
        try:
            write_reports([self.run_dir], self.out, live_seconds=None if final else int(math.ceil(self.every_s)),
                          cache=self._cache)
        except Exception as exc:  # a report must never stop the search it shows
            log.warning("report %s not written: %s", self.path, exc)
            return
        self.writes += 1
        took = self.clock() - start
        self._next = self.clock() + max(self.every_s, 9.0 * took)

    def __call__(self, trial: Any, record: Any) -> None:
        if self.clock() >= self._next:
            self.write()


class TensorBoardScalars:
    """Per evaluation: reward, test accuracy, the incumbent and a training loss; per training epoch of the
    evaluations (or of ``nasforge train``): loss, accuracy and learning rate; into ``log_dir``."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # ImportError without the tensorboard package

        self._make = lambda: SummaryWriter(str(log_dir))
        self._writer: Any = None  # made at the first scalar: a training's output directory may not exist yet
        self.epochs = 0
        logger = logging.getLogger(TRAIN_LOGGER)
        self._saved = (logger.level, logger.propagate)
        self._handler = _EpochHandler(self, logger)
        logger.addHandler(self._handler)

    @property
    def writer(self) -> Any:
        if self._writer is None:
            self._writer = self._make()
        return self._writer

    def __call__(self, trial: Any, record: Any) -> None:
        n = record.n_evaluations
        if math.isfinite(trial.reward):
            self.writer.add_scalar("search/reward", trial.reward, n)
        best = record.best
        if best is not None:
            self.writer.add_scalar("search/incumbent_reward", best.reward, n)
        metrics = trial.result.metrics if trial.result is not None else {}
        for name in ("test_accuracy", "train_loss", "params", "flops"):
            value = metrics.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"search/{name}", float(value), n)

    def epoch(self, progress: Any) -> None:
        self.epochs += 1
        for name in ("loss", "accuracy", "lr"):
            value = getattr(progress, name, None)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"train/{name}", float(value), self.epochs)

    def close(self) -> None:
        logger = logging.getLogger(TRAIN_LOGGER)
        logger.removeHandler(self._handler)
        logger.setLevel(self._saved[0])
        logger.propagate = self._saved[1]
        if self._writer is not None:
            self._writer.close()


class _EpochHandler(logging.Handler):
    """Takes the training loop's epoch records. Where logging is quieter than INFO (``-q``), the loop's logger is
    opened to INFO for them and passes on to the usual handlers only what would have passed before."""

    def __init__(self, sink: TensorBoardScalars, logger: logging.Logger) -> None:
        super().__init__(logging.INFO)
        self.sink = sink
        self.floor = logger.getEffectiveLevel()
        self.forward = logger.parent if self.floor > logging.INFO and logger.propagate else None
        if self.floor > logging.INFO:
            logger.setLevel(logging.INFO)
            logger.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        progress = getattr(record, "train_progress", None)
        if progress is not None:
            self.sink.epoch(progress)
        if self.forward is not None and record.levelno >= self.floor:
            self.forward.handle(record)


def tensorboard_scalars(run_dir: str | Path) -> TensorBoardScalars | None:
    """TensorBoard scalars into ``run_dir/tensorboard``, or None (with a warning) without the tensorboard package."""
    try:
        return TensorBoardScalars(Path(run_dir) / "tensorboard")
    except ImportError:
        log.warning("--tensorboard: skipped, the tensorboard package is not installed "
                    "(pip install 'nasforge[tensorboard]')")
        return None
