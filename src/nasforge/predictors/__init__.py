"""Performance predictors: models of an architecture's reward from its encoding, and acquisition functions.

The Gaussian process of Bayesian optimisation (:mod:`.gp`) and expected improvement over a candidate
pool (:mod:`.acquisition`) live here, apart from the strategies that use them, so that other
predictors (PNAS' ensemble, NAO's encoder-predictor, AlphaX's meta-predictor) can sit beside them.
"""

from .acquisition import GrowableMatrix, expected_improvement, log_expected_improvement
from .gp import (
    KERNELS,
    TARGETS,
    GaussianProcess,
    encoding_groups,
    normalise,
    single_threaded_blas,
)

__all__ = [
    "KERNELS",
    "TARGETS",
    "GaussianProcess",
    "GrowableMatrix",
    "encoding_groups",
    "expected_improvement",
    "log_expected_improvement",
    "normalise",
    "single_threaded_blas",
]
