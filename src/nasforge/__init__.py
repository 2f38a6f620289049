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
import sys as _sys

__version__ = "0.1.0"

__all__ = [
    "Architecture", "Components", "EVALUATORS", "NasforgeError", "Result", "RunConfig", "RunStore",
    "SPACES", "STRATEGIES", "SearchRecord", "build_components", "create_evaluator", "create_space",
    "create_executor", "create_strategy", "derive", "load_record", "make_run_config", "parse_arch", "resume", "retrain_ranked", "run_search",
    "search",
]


# Ctrl-C (or SIGTERM) while nasforge imports is held until the imports end: raised inside torch's C++ start-up it
# aborted the process or printed a traceback from inside torch. The `nasforge` command then ends as Ctrl-C ends it
# later, with one line and code 130 (argv[0] is "-m" only while `python -m nasforge` looks for its module); a
# program importing nasforge gets its KeyboardInterrupt when the import ends.
from .interrupts import deferred_interrupts as _deferred_interrupts

try:
    with _deferred_interrupts():
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
        from .factory import (
            Components,
            build_components,
            create_evaluator,
            create_executor,
            create_space,
            create_strategy,
        )
        from .plugins import ENV_VAR as _PLUGINS_VAR
        from .plugins import load_plugins as _load_plugins
        from .registry import EVALUATORS, SPACES, STRATEGIES
        from .result import Result
        from .run import RunStore, SearchRecord, run_search

        _load_plugins(_os.environ.get(_PLUGINS_VAR))  # after the built-ins: plug-ins may build on them
except KeyboardInterrupt:
    if _os.path.basename(_sys.argv[0]).partition(".")[0] not in ("nasforge", "-m"):
        raise
    _sys.stderr.write("nasforge: interrupted\n")
    raise SystemExit(130) from None
