"""Registries: name -> factory, with capability metadata that tests and the CLI select by."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import NasforgeError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered factory with its capabilities (free-form keyword metadata)."""

    name: str
    factory: Callable[..., T]
    capabilities: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        doc = (getattr(self.factory, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    """A named collection of factories.

    >>> r = Registry("widget")
    >>> @r.register("w", fast=True)
    ... class W: pass
    >>> r.names(fast=True)
    ['w']
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or (f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s")
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = (), **capabilities: Any) -> Callable:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries or name in self._aliases:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, factory, dict(capabilities))
            for alias in aliases:
                self._aliases[alias] = name
            return factory

        return decorate

    def canonical(self, name: str) -> str:
        name = self._aliases.get(name, name)
        if name not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise NasforgeError(f"unknown {self.kind} {name!r}; known {self.plural}: {known}")
        return name

    def get(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name).factory(*args, **kwargs)

    def names(self, **capabilities: Any) -> list[str]:
        """Registered names whose capabilities equal all the given ones."""
        return sorted(
            e.name
            for e in self._entries.values()
            if all(e.capabilities.get(k) == v for k, v in capabilities.items())
        )

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))


SPACES: Registry = Registry("space")
STRATEGIES: Registry = Registry("strategy")
EVALUATORS: Registry = Registry("evaluator")
#: where evaluations run; entries declare ``in_process`` (the search's own process), ``parallel``, ``distributed``
EXECUTORS: Registry = Registry("executor")
