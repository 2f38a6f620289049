"""Training-free (zero-cost) proxies: scores of untrained networks that predict their trained accuracy.

:mod:`~nasforge.proxies.measures` computes the proxies of one network on a few minibatches;
:mod:`~nasforge.proxies.ensemble` ranks them against a reference sample so that their rank ensemble scores
each architecture on its own. The ``zerocost`` evaluator (``nasforge.evaluators.zerocost``) builds on them.
"""

from .ensemble import ReferenceRanks
from .measures import DATA_PROXIES, FLOOR, PROXIES, batch_proxies, jacobian_score, measure, synflow

__all__ = ["DATA_PROXIES", "FLOOR", "PROXIES", "ReferenceRanks", "batch_proxies", "jacobian_score", "measure",
           "synflow"]
