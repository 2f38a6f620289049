"""NAS-Bench-301 surrogate: predict a DARTS cell pair's CIFAR-10 accuracy with an ONNX model.

The benchmark folder (``--benchmark``, for example ``../shared/data/nb301-surrogate``) holds the YAHPO
Gym v2 surrogate of NAS-Bench-301: ``model_v2.onnx`` takes ``x_cat`` (int32 ``[batch, 34]``, the cell
encoded column by column) and ``x_cont`` (float32 ``[batch, 1]``, the training epoch 1..98) and
predicts ``[validation accuracy (fraction), validation cross-entropy, runtime (s), runtime increase]``;
``encoding_v2.json`` maps each column's values to the integers the model expects.

Encoding: the 34 columns are ``edge_normal_0..13``, ``edge_reduce_0..13`` (numeric order), then
``inputs_node_normal_3..5`` and ``inputs_node_reduce_3..5``; this order was checked against 500 really
trained cells (Spearman 0.595; the alphabetical order the column names suggest gives 0.49). Edges that
the chosen input pairs leave unused are ``#na#``. Node 2 always takes nodes 0 and 1, so it has no
column. The columns are the ``darts`` space's decision names, so the space must use the ``darts``
operation set with 4 nodes.

Protocol: the reward is the predicted validation accuracy in percent at the run's fidelity (the epoch,
98 by default: NAS-Bench-301 trained for 98 epochs). The surrogate predicts no test accuracy, so the
reported ``test_accuracy`` is the same prediction at epoch 98 (at any fidelity), which is how
surrogate benchmarks are usually reported. The cost is the predicted runtime in seconds at the chosen
epoch: the model's runtime output is the time spent up to that epoch (it grows from about 200 s at
epoch 1 to about 5,000 s at 98), so a lower fidelity costs proportionally less without rescaling.

onnxruntime is an optional extra (``pip install 'nasforge[onnx]'``). The session runs on one thread
(evaluations are parallelised by the executors, not inside one prediction); it is not pickled but
rebuilt on first use in another process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..arch import Architecture
from ..errors import ConfigError, DataError
from ..registry import EVALUATORS
from ..result import Result
from ..spaces.base import SearchSpace
from .base import Evaluator

#: the network of NAS-Bench-301's training protocol (Siems et al. 2020), whose costs the surrogate reports
NB301_NETWORK = {"C": 32, "layers": 8, "affine": False}

#: the model's columns, in the order ``x_cat`` holds them
COLUMNS: tuple[str, ...] = (
    *(f"edge_{cell}_{e}" for cell in ("normal", "reduce") for e in range(14)),
    *(f"inputs_node_{cell}_{n}" for cell in ("normal", "reduce") for n in (3, 4, 5)),
)
#: prefix of the column names in ``encoding_v2.json`` (ConfigSpace names of the original benchmark)
KEY_PREFIX = "NetworkSelectorDatasetInfo_COLON_darts_COLON_"
NOT_CHOSEN = "#na#"
MAX_EPOCH = 98
#: output columns of the model
VAL_ACCURACY, VAL_CROSS_ENTROPY, RUNTIME = 0, 1, 2


@dataclass
class SurrogateConfig:
    """File names inside the benchmark folder (the defaults are the YAHPO Gym v2 release)."""

    model: str = "model_v2.onnx"  # ONNX model file inside the benchmark folder
    encoding: str = "encoding_v2.json"  # decision-to-input encoding file inside the benchmark folder


class SurrogateEncoding:
    """Architecture -> ``x_cat`` row: per column, the code of the decision's choice (0 when inactive)."""

    def __init__(self, space: SearchSpace, encoding: dict[str, dict[str, int]], source: str = "encoding",
                 columns: Sequence[str] = COLUMNS) -> None:
        self.space = space
        self.columns = tuple(columns)
        index = {d.name: i for i, d in enumerate(space.decisions)}
        self.decision = np.array([index[c] for c in self.columns], dtype=np.intp)
        width = max(space.decisions[i].n_choices for i in self.decision)
        self.codes = np.zeros((len(self.columns), width), dtype=np.int32)
        for col, (name, dec) in enumerate(zip(self.columns, self.decision)):
            labels = space.decisions[dec].labels
            self.codes[col, : len(labels)] = self._column_codes(encoding, source, name, labels)

    @staticmethod
    def _column_codes(encoding: dict[str, dict[str, int]], source: str, column: str,
                      labels: Sequence[str]) -> list[int]:
        values = encoding.get(KEY_PREFIX + column)
        if not isinstance(values, dict):
            raise DataError(f"{source}: no entry {KEY_PREFIX + column!r}; is this the NAS-Bench-301 encoding?")
        if values.get(NOT_CHOSEN) != 0:
            raise DataError(f"{source}: {column!r} must map {NOT_CHOSEN!r} (an unused edge) to 0")
        missing = [label for label in labels if label not in values]
        if missing:
            raise DataError(f"{source}: {column!r} has no code for {', '.join(map(repr, missing))}")
        return [int(values[label]) for label in labels]

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """``[len(archs), columns]`` int32 codes."""
        choices = np.array([a.choices for a in archs], dtype=np.intp).reshape(len(archs), -1)
        active = np.array([self.space.active(a.choices) for a in archs], dtype=bool).reshape(len(archs), -1)
        picked = choices[:, self.decision]
        codes = self.codes[np.arange(len(self.columns)), picked]
        return np.where(active[:, self.decision], codes, 0).astype(np.int32)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "evaluator: the surrogate evaluator needs onnxruntime: pip install 'nasforge[onnx]'"
        ) from None
    return onnxruntime


def check_space(space: SearchSpace) -> None:
    """The surrogate knows the DARTS cell of 4 nodes and its 7 operations only."""
    config = getattr(space, "config", None)
    if space.name != "darts" or getattr(config, "ops", None) != "darts" or getattr(config, "nodes", None) != 4:
        raise ConfigError(
            "space: the NAS-Bench-301 surrogate was trained on DARTS cells of 4 nodes with the 7 'darts' "
            f"operations; got space {space.name!r} with {config!r}"
        )


def check_epoch(epoch: float) -> float:
    if not 1 <= epoch <= MAX_EPOCH:
        raise ConfigError(f"fidelity: the surrogate predicts epochs 1 to {MAX_EPOCH}, got {epoch}")
    return float(epoch)


@EVALUATORS.register("surrogate", spaces=("darts",), benchmark=True, tabular=False, trains=False)
class SurrogateEvaluator(Evaluator):
    """NAS-Bench-301 ONNX surrogate for the darts space: reward predicted validation accuracy (%)."""

    Config = SurrogateConfig
    cost_unit = "seconds"

    def __init__(self, space: SearchSpace, config: SurrogateConfig | None = None, context: object = None) -> None:
        super().__init__(space, config, context)
        check_space(space)
        folder = self.context.benchmark
        if not folder:
            raise ConfigError(
                "benchmark: the surrogate evaluator needs --benchmark PATH to the NAS-Bench-301 surrogate "
                "folder (for example ../shared/data/nb301-surrogate)"
            )
        self.folder = self._folder(Path(folder))
        self.model_path = self._file(self.config.model, "the ONNX model")
        encoding_path = self._file(self.config.encoding, "the column encoding")
        self.encoding = SurrogateEncoding(space, self._read_json(encoding_path), str(encoding_path))
        fidelity = self.context.fidelity
        self.epoch = float(MAX_EPOCH) if fidelity is None else check_epoch(fidelity)
        self._session: Any = None
        self._load_session()  # fail now on a bad model rather than at the first evaluation

    def cost_model(self) -> Any:
        """The network NAS-Bench-301 trained (32 channels, 8 cells, CIFAR-10), for costs a run asks for."""
        from .costs import CostModel

        return CostModel(self.space, lambda a: self.space.build(a, num_classes=10, in_channels=3, **NB301_NETWORK),
                         (3, 32, 32), self.measure)

    def _folder(self, path: Path) -> Path:
        if path.is_file() and path.name == self.config.model:
            return path.parent  # the model file itself names its folder
        if not path.is_dir():
            raise DataError(
                f"{path}: NAS-Bench-301 surrogate folder not found (expected a folder holding "
                f"{self.config.model} and {self.config.encoding}, for example ../shared/data/nb301-surrogate)"
            )
        return path

    def _file(self, name: str, what: str) -> Path:
        path = self.folder / name
        if not path.is_file():
            raise DataError(f"{path}: {what} of the NAS-Bench-301 surrogate is missing")
        return path

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable JSON file ({exc})") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object mapping columns to value codes")
        return data

    def _load_session(self) -> Any:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise DataError(f"{self.model_path}: cannot load the ONNX model ({exc})") from None
        inputs = {i.name for i in session.get_inputs()}
        if inputs != {"x_cat", "x_cont"}:
            raise DataError(f"{self.model_path}: expected inputs x_cat and x_cont, got {', '.join(sorted(inputs))}")
        self._session = session
        return session

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # an onnxruntime session cannot be pickled; rebuilt on first use
        return state

    def predict(self, archs: Sequence[Architecture], epoch: float | None = None) -> np.ndarray:
        """Raw predictions ``[len(archs), 4]``: val. accuracy (fraction), val. cross-entropy, runtime (s), increase."""
        return self.predict_codes(self.encoding.encode(archs), epoch)

    def predict_codes(self, x_cat: np.ndarray, epoch: float | None = None) -> np.ndarray:
        """Predictions for already encoded rows (``x_cat`` of the model), all at one epoch."""
        epoch = self.epoch if epoch is None else check_epoch(epoch)
        return self._run(x_cat, np.full(len(x_cat), epoch))

    def _run(self, x_cat: np.ndarray, epochs: np.ndarray) -> np.ndarray:
        session = self._session or self._load_session()
        feeds = {"x_cat": np.asarray(x_cat, dtype=np.int32), "x_cont": epochs.astype(np.float32).reshape(-1, 1)}
        return session.run(None, feeds)[0]

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        epoch = self.epoch if fidelity is None else check_epoch(fidelity)
        # one call for the searched epoch and the final one: the report is always the 98-epoch accuracy
        epochs = np.array([epoch] if epoch == MAX_EPOCH else [epoch, MAX_EPOCH])
        out = self._run(np.repeat(self.encoding.encode([arch]), len(epochs), axis=0), epochs)
        seen, final = out[0], out[-1]
        reward = 100.0 * float(seen[VAL_ACCURACY])
        metrics = {
            "test_accuracy": 100.0 * float(final[VAL_ACCURACY]),
            "val_accuracy": reward,
            "val_cross_entropy": float(seen[VAL_CROSS_ENTROPY]),
            "runtime_s": float(seen[RUNTIME]),
            "epoch": epoch,
        }
        return Result(reward, metrics, cost=float(seen[RUNTIME]))

    @property
    def fidelities(self) -> tuple[float, ...]:
        """Whole epochs up to the run's (98 by default)."""
        return tuple(float(e) for e in range(1, int(self.epoch) + 1))

    def __repr__(self) -> str:
        return f"<SurrogateEvaluator {self.folder} epoch={self.epoch:g}>"
