"""nasforge: neural architecture search in one library.

The three parts of NAS are kept apart: a search space (:mod:`nasforge.spaces`) describes
architectures, a strategy (:mod:`nasforge.strategies`) proposes them through ask/tell, and an
evaluator (:mod:`nasforge.evaluators`) scores them; :func:`run_search` drives any combination::

    import numpy as np
    import nasforge as nf

    space = nf.create_space("nb201")
    strategy = nf.create_strategy("re", space, seed=0)
    evaluator = nf.create_evaluator(nf.RunConfig(benchmark="nb201-cifar10.csv"), space)
    record = nf.run_search(space, strategy, evaluator, budget=100)
    print(record.best.arch, record.best.result.test_accuracy)
"""

from __future__ import annotations

import os as _os
import signal as _signal
import sys as _sys
from typing import Any as _Any

__version__ = "0.1.0"

__all__ = [
    "Architecture", "Components", "EVALUATORS", "NasforgeError", "Result", "RunConfig", "RunStore",
    "SPACES", "STRATEGIES", "SearchRecord", "build_components", "create_evaluator", "create_space",
    "create_executor", "create_strategy", "derive", "load_record", "make_run_config", "parse_arch", "resume", "retrain_ranked", "run_search",
    "search",
]


def _is_command() -> bool:
    """Whether this process is the `nasforge` command (argv[0] is "-m" only while `python -m nasforge` looks for
    its module), not a program that imports nasforge."""
    return _os.path.basename(_sys.argv[0]).partition(".")[0] in ("nasforge", "-m")


# Ctrl-C while the command starts (torch takes a second or two to import) is held until the imports end, then ends
# the command as Ctrl-C does later: one line and code 130. Raised inside torch's C++ start-up it would abort the
# process or print a traceback from inside torch. A program importing nasforge gets the interrupt as usual.
_held: list[int] = []


def _hold_ctrl_c() -> _Any:
    """Hold SIGINT in ``_held`` (the command only); returns the handler to restore, or None."""
    if not _is_command():
        return None
    try:
        return _signal.signal(_signal.SIGINT, lambda signum, frame: _held.append(signum))
    except ValueError:  # not the main thread
        return None


_previous = _hold_ctrl_c()
try:
    from . import (  # noqa: F401  (register built-ins)
        evaluators,
        oneshot,
        spaces,
        strategies,
    )
    from .api import derive, load_record, parse_arch, resume, retrain_ranked, search
    from .arch import Architecture
    from .config import RunConfig, make_run_config
    from .errors import NasforgeError
    from .export import build  # noqa: F401  (nasforge.build: a model from a genotype file)
    from .factory import Components, build_components, create_evaluator, create_executor, create_space, create_strategy
    from .plugins import ENV_VAR as _PLUGINS_VAR
    from .plugins import load_plugins as _load_plugins
    from .registry import EVALUATORS, SPACES, STRATEGIES
    from .result import Result
    from .run import RunStore, SearchRecord, run_search

    _load_plugins(_os.environ.get(_PLUGINS_VAR))  # after the built-ins: plug-ins may build on them
finally:
    if _previous is not None:
        _signal.signal(_signal.SIGINT, _previous)
if _held:
    _sys.stderr.write("nasforge: interrupted\n")
    raise SystemExit(130)
