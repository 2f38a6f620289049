"""Tabular benchmarks: look an architecture up in a table of trained results (NAS-Bench-201 format).

The table is a CSV with an ``arch`` column holding the space's string form and, for each training
length F available, ``val_acc_F`` and ``test_acc_F`` columns (percentages). The strategy sees
``val_acc_F`` at the chosen fidelity F (default: the longest); the reported metric is ``test_acc`` at
the longest training, whatever the fidelity, as in the NAS-Bench-201 protocol. An evaluation costs its
fidelity in epochs, or, where the table has a ``train_time_F`` column for every fidelity, that training
time in seconds. Nothing assumes a particular data set. The evaluator refuses a table that lacks
architectures of its finite space unless its ``partial`` setting says such a table is meant.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..arch import Architecture
from ..errors import ConfigError, DataError, InvalidArchitecture
from ..registry import EVALUATORS
from ..result import Result
from ..spaces.base import SearchSpace
from .base import Evaluator
from .costs import CostModel, table_costs

#: a table's columns that replace the counted costs of the benchmark's network
OWN_COST_COLUMNS = ("params", "flops", "latency_ms")


@dataclass
class TabularConfig:
    """Which columns the tabular evaluator reads."""

    reward: str = "val_acc"  # prefix of the column the strategy sees, suffixed with _<fidelity>
    report: str = "test_acc"  # prefix of the reported column, at the longest fidelity
    time: str = "train_time"  # prefix of training-time columns (seconds at each fidelity): the cost where present
    partial: bool = False  # accept a table that lacks architectures of the space; evaluating those fails
    # (by default such a table is refused when loaded: a search on it would fail evaluation after evaluation)
    # the network whose parameters, FLOPs and latency are reported (a table's own params/flops columns win):
    # NAS-Bench-201's own, C=16 and N=5, on CIFAR-10's 10 classes of 3 x 32 x 32 images
    cost_model_args: dict[str, Any] = field(default_factory=dict)  # model arguments of that network ({}: C=16, N=5)
    cost_classes: int = 10  # its number of classes
    cost_input: list[int] = field(default_factory=lambda: [3, 32, 32])  # its input: channels, height, width


class Table:
    """A validated benchmark table: architecture -> row of floats."""

    def __init__(self, path: str | Path, space: SearchSpace, config: TabularConfig | None = None) -> None:
        config = config or TabularConfig()
        self.path = Path(path)
        self.space = space
        header, rows = self._read()
        self.columns = header
        missing = [c for c in ("arch",) if c not in header]

        def lengths(prefix: str) -> set[int]:
            return {int(m.group(1)) for c in header if (m := re.match(rf"^{re.escape(prefix)}_(\d+)$", c))}

        if missing or not lengths(config.reward):
            need = "arch" if missing else f"{config.reward}_<epochs>"
            raise DataError(f"{self.path}: missing column {need!r} (columns: {', '.join(header)})")
        # Every training length the table has (a column of either kind) needs its reward column: otherwise
        # the protocol would silently fall back to a shorter training.
        fidelities = sorted(lengths(config.reward) | lengths(config.report))
        for f in fidelities:
            if f"{config.reward}_{f}" not in header:
                raise DataError(f"{self.path}: missing column '{config.reward}_{f}' "
                                f"(columns: {', '.join(header)})")
        self.fidelities = fidelities
        self.max_fidelity = fidelities[-1]
        report_col = f"{config.report}_{self.max_fidelity}"
        if report_col not in header:
            raise DataError(f"{self.path}: missing column {report_col!r} (columns: {', '.join(header)})")
        self.reward_columns = {f: f"{config.reward}_{f}" for f in fidelities}
        times = {f: f"{config.time}_{f}" for f in fidelities}
        self.time_columns = times if all(c in header for c in times.values()) else None
        self.report_column = report_col
        numeric = [c for c in header if c != "arch"]
        self.data = np.empty((len(rows), len(numeric)), dtype=np.float64)
        self.col_index = {c: i for i, c in enumerate(numeric)}
        self.index: dict[tuple[int, ...], int] = {}
        self.archs: list[Architecture] = []
        arch_col = header.index("arch")
        for r, (line, row) in enumerate(rows):
            if len(row) != len(header):
                raise DataError(f"{self.path}:{line}: expected {len(header)} fields, got {len(row)}")
            try:
                arch = space.parse(row[arch_col])
            except InvalidArchitecture as exc:
                raise DataError(f"{self.path}:{line}: {exc}") from None
            if arch.choices in self.index:
                first = self.index[arch.choices]
                raise DataError(f"{self.path}:{line}: duplicate architecture {row[arch_col]!r} (first on row {first + 2})")
            self.index[arch.choices] = r
            self.archs.append(arch)
            for c in numeric:
                text = row[header.index(c)]
                try:
                    value = float(text)
                except ValueError:
                    raise DataError(f"{self.path}:{line}: column {c!r}: {text!r} is not a number") from None
                self.data[r, self.col_index[c]] = value
        if not self.archs:
            raise DataError(f"{self.path}: the table has no rows")

    def _read(self) -> tuple[list[str], list[tuple[int, list[str]]]]:
        try:
            handle = self.path.open(newline="")
        except FileNotFoundError:
            raise DataError(
                f"{self.path}: benchmark table not found (NAS-Bench-201 CSV, for example ../shared/data/nb201-cifar10.csv)"
            ) from None
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror})") from None
        with handle:
            reader = csv.reader(handle)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise DataError(f"{self.path}: the file is empty") from None
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DataError(f"{self.path}:1: not a CSV table ({exc})") from None
            try:
                rows = [(reader.line_num, row) for row in reader if row]
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DataError(f"{self.path}:{reader.line_num}: not a CSV table ({exc})") from None
        return header, rows

    def check_complete(self) -> None:
        """Refuse a table of a finite space that lacks some of its architectures (a cut or filtered file), naming
        how many it holds and one it lacks."""
        size = self.space.size
        if size is None or len(self.index) >= size:
            return
        missing = next(a for a in self.space.enumerate() if a.choices not in self.index)
        raise DataError(f"{self.path}: holds {len(self.index):,} of the {size:,} architectures of space "
                        f"{self.space.name!r} (missing, for example, {missing}); a search needs them all (with "
                        "--set evaluator.partial=true it runs anyway, and evaluations of the missing ones fail)")

    def value(self, arch: Architecture, column: str) -> float | None:
        row = self.index.get(arch.choices)
        return None if row is None else float(self.data[row, self.col_index[column]])

    def column(self, column: str) -> np.ndarray:
        return self.data[:, self.col_index[column]]


@EVALUATORS.register("tabular", spaces=("nb201",), benchmark=True, tabular=True, trains=False)
class TabularEvaluator(Evaluator):
    """Look-up in a NAS-Bench-201-format CSV: reward val_acc_F, reported test_acc at the longest F."""

    Config = TabularConfig
    cost_unit = "epochs"
    reports_costs = True  # counted once per table and cached on disk (evaluators/costs.py)

    def __init__(self, space: SearchSpace, config: TabularConfig | None = None, context: object = None,
                 *, table: Table | None = None) -> None:
        super().__init__(space, config, context)
        path = self.context.benchmark
        if table is None:
            if not path:
                raise ConfigError(
                    "benchmark: the tabular evaluator needs --benchmark PATH to a table "
                    "(NAS-Bench-201 format, for example ../shared/data/nb201-cifar10.csv)"
                )
            table = Table(path, space, self.config)
        if not self.config.partial:
            table.check_complete()
        self.table = table
        self.fidelity = self._check_fidelity(self.context.fidelity)
        if self.table.time_columns is not None:
            self.cost_unit = "seconds"  # of training, from the table

    def _check_fidelity(self, fidelity: float | None) -> int:
        if fidelity is None:
            return self.table.max_fidelity
        if int(fidelity) not in self.table.fidelities:
            raise ConfigError(
                f"fidelity: {fidelity} is not in {self.table.path} (available: {', '.join(map(str, self.table.fidelities))})"
            )
        return int(fidelity)

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        fid = self.fidelity if fidelity is None else self._check_fidelity(fidelity)
        reward = self.table.value(arch, self.table.reward_columns[fid])
        if reward is None:
            return Result.failure(f"{arch} is not in {self.table.path}")
        test = self.table.value(arch, self.table.report_column)
        times = self.table.time_columns
        cost = float(fid) if times is None else self.table.value(arch, times[fid])
        own = {c: self.table.value(arch, c) for c in OWN_COST_COLUMNS if c in self.table.col_index}
        return Result(reward, {"test_accuracy": test, "fidelity": fid, **own}, cost=float(cost or 0.0))

    @property
    def fidelities(self) -> tuple[float, ...]:
        return tuple(float(f) for f in self.table.fidelities)

    def cost_model(self) -> CostModel:
        """The benchmark's network (``cost_model_args``, NAS-Bench-201's C=16, N=5 by default), its parameters and
        FLOPs counted for the whole table at once and cached in the cache directory; a table's own ``params`` /
        ``flops`` columns replace the counts."""
        from ..paths import default_cache_dir
        from ..train.loop import resolve_device

        c = self.config
        shape = tuple(c.cost_input)

        def build(arch: Architecture) -> Any:
            return self.space.build(arch, num_classes=c.cost_classes, in_channels=shape[0], **c.cost_model_args)

        model = CostModel(self.space, build, shape, self.measure, resolve_device(self.context.device))
        if self.cost_metrics & {"params", "flops"}:
            archs = self.table.archs
            values = table_costs(self.space, build, shape, archs,
                                 {"model": c.cost_model_args, "classes": c.cost_classes},
                                 self.context.cache_dir or default_cache_dir(), additive=self.space.name == "nb201")
            model.preset(archs, values, ("params", "flops"))
        own = [c for c in OWN_COST_COLUMNS if c in self.table.col_index]
        if own:
            model.preset(self.table.archs, np.stack([self.table.column(c) for c in own], axis=1), own)
        return model

    def optimum(self) -> tuple[Architecture, Result]:
        rewards = self.table.column(self.table.reward_columns[self.fidelity])
        best = int(np.nanargmax(rewards))
        arch = self.table.archs[best]
        return arch, self._evaluate(arch, None, 0)

    def __repr__(self) -> str:
        return f"<TabularEvaluator {self.table.path} fidelity={self.fidelity} rows={len(self.table.archs)}>"

