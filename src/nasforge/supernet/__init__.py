"""One-shot weight sharing: super-networks whose steps run one sampled child (ENAS, EDNAS), or every candidate
operation weighted by a :class:`Relaxed` architecture (DARTS, GDAS; cell super-networks).

``build_supernet(space, num_classes=..., **model_args)`` gives the super-network of a ``darts``,
``nb201`` or ``enas-macro`` space; ``supernet(x, arch)`` runs the child ``arch``; ``extract_child``
returns the fixed network of ``arch`` carrying the super-network's weights. Each super-network is
one module here (discovered and registered in :data:`SUPERNETS`); what they share is in :mod:`.base`.
"""

from .._discover import import_all
from .base import (
    SUPERNETS,
    CellSupernet,
    Relaxed,
    SupernetOptions,
    batch_statistics_only,
    build_supernet,
    child_state_dict,
    extract_child,
    recalibrate_batch_norm,
)
from .cells import Mixture, SharedDAGCell

import_all(__name__, __path__, skip=("base", "cells"))

__all__ = [
    "SUPERNETS",
    "CellSupernet",
    "Mixture",
    "Relaxed",
    "SharedDAGCell",
    "SupernetOptions",
    "batch_statistics_only",
    "build_supernet",
    "child_state_dict",
    "extract_child",
    "recalibrate_batch_norm",
]
