"""xent: fast, exact log-sum-exp cross-entropy and its relatives on multicore CPUs.

Every public function has a pure-numpy twin in :mod:`xent.reference`, and can check itself
against it (``check=True``, or ``XENT_CHECK=1``).
"""

import os as _os
import sys as _sys

# GNU OpenMP threads spin for up to 300,000 rounds (about a millisecond) before they sleep, at
# every barrier. On a machine whose cores are busy with other work a spinning thread takes the
# core a descheduled one needs, and a call on two threads ran 3-4x slower than on one
# (benchmarks/busy_callers.py). A short spin keeps the wake-up fast on an idle machine and
# yields the core on a busy one. Only a default: set either variable to choose otherwise;
# read once, when the OpenMP runtime loads (so not if another module loaded it first).
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from . import info, reference  # noqa: E402 (after the OpenMP default above)
from ._multiclass import (
    cross_entropy,
    cross_entropy_grad_hess,
    cross_entropy_with_grad,
    log_softmax,
    logsumexp,
    nll_loss,
    softmax,
)
from ._binary import (
    binary_cross_entropy,
    binary_cross_entropy_with_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad_hess,
    binary_cross_entropy_with_logits_with_grad,
)
from ._check import CheckError
from .divergence import (
    js_divergence_logits,
    js_divergence_logits_with_grad,
    kl_divergence_logits,
    kl_divergence_logits_with_grad,
    tv_distance_logits,
    tv_distance_logits_with_grad,
)
from ._dispatch import show_config
from ._threads import get_num_threads
from ._evaluation import EvaluationReport, evaluate
from ._compare import ComparisonReport, compare

# xent.evaluate is the function; its module is xent._evaluation. Code written when the module
# was xent/evaluate.py (``import xent.evaluate``, ``from xent.evaluate import
# EvaluationReport``) still finds it under the old name.
_sys.modules[__name__ + ".evaluate"] = _sys.modules[__name__ + "._evaluation"]

#: Loaded on first use: they need scipy's BLAS, whose import takes longer than all of xent's.
_LAZY = {"linear_cross_entropy": "linear", "linear_cross_entropy_with_grad": "linear"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xent' has no attribute {name!r}")


from ._version import __version__ as __version__  # noqa: E402

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad_hess",
    "binary_cross_entropy_with_logits_with_grad",
    "CheckError",
    "cross_entropy",
    "cross_entropy_grad_hess",
    "cross_entropy_with_grad",
    "evaluate",
    "compare",
    "ComparisonReport",
    "EvaluationReport",
    "get_num_threads",
    "info",
    "js_divergence_logits",
    "js_divergence_logits_with_grad",
    "kl_divergence_logits",
    "kl_divergence_logits_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "reference",
    "show_config",
    "softmax",
    "tv_distance_logits",
    "tv_distance_logits_with_grad",
]
