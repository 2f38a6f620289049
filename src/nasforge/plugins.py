"""Plug-ins named in the environment: modules imported with nasforge so that their components register.

A component outside the package (a space, strategy, evaluator...) registers itself when its module is
imported. In Python, import it; for the command line, and for the worker processes any search starts
(they inherit the environment), name it in ``NASFORGE_PLUGINS``, comma-separated::

    NASFORGE_PLUGINS=mypkg.spaces,nasforge.testing nasforge search --space toy --evaluator toy ...

``nasforge.testing`` (the ``toy`` space, the ``toy`` and ``faulty`` evaluators) is such a plug-in: it
is not part of the production registries.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

#: environment variable listing the plug-in modules to import
ENV_VAR = "NASFORGE_PLUGINS"


def plugin_names(spec: str | None) -> list[str]:
    """The module names of a ``NASFORGE_PLUGINS`` value (comma-separated, blanks ignored)."""
    return [name.strip() for name in (spec or "").split(",") if name.strip()]


def load_plugins(spec: str | None) -> list[str]:
    """Import every module named in ``spec``; returns those imported.

    A module that cannot be imported is skipped with a warning naming it, so that a stale setting does
    not stop every command; what it would have registered is then reported unknown where it is used.
    """
    loaded = []
    for name in plugin_names(spec):
        try:
            importlib.import_module(name)
        except Exception as exc:
            log.warning("%s: cannot import the plug-in %r (%s: %s)", ENV_VAR, name, type(exc).__name__, exc)
            continue
        loaded.append(name)
    return loaded
