"""Typed configuration: dataclasses, YAML files and ``key=value`` overrides (parsed, never evaluated).

A run is described by :class:`RunConfig`. Each space, strategy and evaluator declares its own
hyper-parameters as a nested ``Config`` dataclass; ``strategy.population=50`` on the command line is
converted to the type that dataclass declares, and an unknown or ill-typed key is an error naming it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import ConfigError
from .objectives import MeasureConfig, parse_constraints, parse_objectives

COMPONENTS = ("space", "strategy", "evaluator")
#: sections of ``SECTION.KEY=VALUE`` overrides and nested YAML mappings: the components and the prior
SECTIONS = (*COMPONENTS, "prior")


def parse_scalar(text: str) -> Any:
    """Read one override value with YAML's safe scalar rules (``3`` -> int, ``[1,2]`` -> list)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise :class:`ConfigError` naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [parse_scalar(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if isinstance(tp, type) and is_dataclass(tp):
        return build(tp, value, where)
    return value


def build(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, coercing every field to its declared type."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    unknown = sorted(set(values) - set(known))
    prefix = f"{where}: " if where else ""  # the top level has no field name to give
    if unknown:
        raise ConfigError(
            f"{prefix}unknown field {unknown[0]!r}; known fields: {', '.join(sorted(known)) or '(none)'}"
        )
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix}{exc}") from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain YAML/JSON-ready data (tuples become lists)."""
    def plain(v: Any) -> Any:
        if is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def config_class(factory: Any) -> type | None:
    """The ``Config`` dataclass a registered component declares, if any."""
    cls = getattr(factory, "Config", None)
    return cls if isinstance(cls, type) and is_dataclass(cls) else None


@dataclass
class RunConfig:
    """Everything that defines a search run. Written resolved to ``config.yaml`` in the run directory."""

    space: str = "nb201"
    strategy: str = "re"
    evaluator: str = "tabular"
    space_args: dict[str, Any] = field(default_factory=dict)
    strategy_args: dict[str, Any] = field(default_factory=dict)
    evaluator_args: dict[str, Any] = field(default_factory=dict)
    benchmark: str | None = None
    fidelity: int | None = None
    budget: int = 100
    epochs: int | None = None  # a one-shot search's length in passes over its training split (sets budget)
    seed: int = 0
    executor: str = "sequential"
    workers: int = 1
    dataset: str | None = None  # data set of evaluators that train (None: digits, shipped with scikit-learn)
    data: str | None = None  # where the data set's files are (CIFAR-10: folder or .tar.gz)
    device: str = "auto"  # torch device of training evaluators: auto, cpu, cuda, cuda:1...
    cache_dir: str | None = None  # decoded data cache (None: $NASFORGE_CACHE or ~/.cache/nasforge)
    trial_timeout: float | None = None  # seconds an evaluation may take before its worker is replaced
    max_retries: int = 2  # re-runs of an evaluation whose worker raised, timed out or was lost
    ray_address: str | None = None  # Ray cluster to join ("auto", "HOST:6379"); None starts a local one
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    threads: int | None = None  # torch CPU threads per training process (None: chosen, see nasforge.threads)
    objectives: list[str] = field(default_factory=list)  # e.g. [accuracy, -params]: a multi-objective search
    constraints: list[str] = field(default_factory=list)  # e.g. ["params<=1.5e6"]: infeasible ones are skipped
    measure: MeasureConfig = field(default_factory=MeasureConfig)  # costs to report, latency settings
    prior: str | None = None  # evaluator whose reward chooses a strategy's initial samples (zerocost), or none
    prior_args: dict[str, Any] = field(default_factory=dict)  # that evaluator's settings (--set prior.proxy=nwot)
    prior_draws: int = 10  # uniform samples per initial sample, of which the prior keeps the best

    def __post_init__(self) -> None:
        if self.budget <= 0:
            raise ConfigError(f"budget: must be a positive number of evaluations, got {self.budget}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs: must be a positive number of passes over the training split, got {self.epochs}")
        if self.workers <= 0:
            raise ConfigError(f"workers: must be at least 1, got {self.workers}")
        if self.trial_timeout is not None and self.trial_timeout <= 0:
            raise ConfigError(f"trial_timeout: must be positive seconds, got {self.trial_timeout}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries: must be 0 or more, got {self.max_retries}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: must be at least 1, got {self.threads}")
        self.objectives = [str(o) for o in parse_objectives(self.objectives, "objectives")]
        if isinstance(self.measure, dict):
            self.measure = build(MeasureConfig, self.measure, "measure")
        parse_constraints(self.constraints, "constraints")
        if self.prior_draws < 1:
            raise ConfigError(f"prior_draws: must be at least 1, got {self.prior_draws}")

    def to_yaml_dict(self) -> dict[str, Any]:
        """Nested form: ``strategy: {name: re, population: 50}``."""
        data = to_dict(self)
        for comp in COMPONENTS:
            data[comp] = {"name": data.pop(comp), **data.pop(f"{comp}_args")}
        return data


def _split_components(data: dict[str, Any], source: str) -> dict[str, Any]:
    data = dict(data)
    for comp in SECTIONS:
        value = data.get(comp)
        if isinstance(value, dict):
            value = dict(value)
            if "name" not in value:
                raise ConfigError(f"{source}: {comp}: a mapping needs a 'name' field")
            data[comp] = value.pop("name")
            data[f"{comp}_args"] = {**data.get(f"{comp}_args", {}), **value}
    return data


def apply_overrides(
    data: dict[str, Any], overrides: list[str], sections: tuple[str, ...] = COMPONENTS
) -> dict[str, Any]:
    """Apply ``key=value`` strings; ``strategy.population=50`` goes to the strategy's arguments.

    ``SECTION.KEY=VALUE`` sets ``KEY`` of the mapping ``SECTION_args``, for each of ``sections`` (a search's
    components by default; final training's are ``train, data, model, space``)."""
    data = _split_components(data, "config")
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        head, dot, rest = key.partition(".")
        value = parse_scalar(raw)
        if dot:
            if head not in sections:
                raise ConfigError(f"override {item!r}: {head!r} is not one of {', '.join(sections)}")
            current = data.get(f"{head}_args")
            data[f"{head}_args"] = {**(current if isinstance(current, dict) else {}), rest: value}  # a copy
        else:
            data[key] = value
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    return _split_components(data, str(path))


def make_run_config(data: dict[str, Any], overrides: Sequence[str] = (), source: str = "") -> RunConfig:
    """Build a :class:`RunConfig` from plain data plus overrides, checking every type."""
    data = apply_overrides(data, list(overrides), SECTIONS)
    where = f"{source}: " if source else ""
    try:
        return build(RunConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def resolve_args(entry_factory: Any, args: dict[str, Any], where: str) -> Any:
    """Typed ``Config`` instance for a component's arguments (or the dict if it declares none)."""
    cls = config_class(entry_factory)
    if cls is None:
        if args:
            raise ConfigError(f"{where}: takes no parameters, got {', '.join(sorted(args))}")
        return None
    return build(cls, args, where)


def replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)


@dataclass(frozen=True)
class FieldDoc:
    """One setting of a config dataclass: name, type, default and the one-line help its source comment gives."""

    name: str
    type: str
    default: Any
    help: str


def _source_comments(cls: type) -> dict[str, str]:
    """``field -> comment`` from the class source: the comment on a field's line and the comment-only lines
    right below it (how the config dataclasses document their settings)."""
    import inspect
    import io
    import tokenize

    try:
        source = inspect.getsource(cls)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, tokenize.TokenError, IndentationError):
        return {}
    lines = source.splitlines()
    body_indent = None
    field_rows: dict[int, str] = {}
    for prev, tok in zip(tokens, tokens[1:]):
        if tok.type == tokenize.OP and tok.string == ":" and prev.type == tokenize.NAME:
            line = lines[prev.start[0] - 1]
            indent = len(line) - len(line.lstrip())
            if prev.start[1] == indent and indent > 0:
                body_indent = indent if body_indent is None else body_indent
                if indent == body_indent:
                    field_rows[prev.start[0]] = prev.string
    comments: dict[str, list[str]] = {}
    current, last_row = None, -1
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        row, text = tok.start[0], tok.string.lstrip("#").strip()
        if row in field_rows:
            current, last_row = field_rows[row], row
            comments[current] = [text]
        elif current is not None and row == last_row + 1 and lines[row - 1].lstrip().startswith("#"):
            comments[current].append(text)
            last_row = row
    return {name: " ".join(parts) for name, parts in comments.items()}


def field_docs(cls: type) -> list[FieldDoc]:
    """The settings of a config dataclass with their defaults and one-line help (from source comments)."""
    if not is_dataclass(cls):
        return []
    helps: dict[str, str] = {}
    for base in reversed(cls.__mro__):  # inherited settings keep their comments; subclasses may override them
        if is_dataclass(base):
            helps.update(_source_comments(base))
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        kind = hints.get(f.name, f.type)
        name = getattr(kind, "__name__", None) if isinstance(kind, type) else None
        out.append(FieldDoc(f.name, name or str(kind).replace("typing.", ""), default, helps.get(f.name, "")))
    return out
