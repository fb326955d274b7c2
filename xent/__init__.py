"""xent: fast, exact log-sum-exp cross-entropy and its relatives on multicore CPUs.

Every public function has a pure-numpy twin in :mod:`xent.reference`, and can check itself
against it (``check=True``, or ``XENT_CHECK=1``).
"""

from . import info, reference
from ._api import (cross_entropy, cross_entropy_with_grad, log_softmax, logsumexp, nll_loss,
                   softmax)
from ._binary import (binary_cross_entropy, binary_cross_entropy_with_grad,
                      binary_cross_entropy_with_logits,
                      binary_cross_entropy_with_logits_with_grad)
from ._check import CheckError
from ._config import show_config
from ._threads import get_num_threads
# xent.evaluate is the function; its module stays importable as sys.modules["xent.evaluate"]
from .evaluate import EvaluationReport, evaluate

__version__ = "0.1.0"

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "CheckError",
    "cross_entropy",
    "cross_entropy_with_grad",
    "evaluate",
    "EvaluationReport",
    "get_num_threads",
    "info",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "reference",
    "show_config",
    "softmax",
]
