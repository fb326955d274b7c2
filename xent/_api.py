"""The functions of class scores, under the module name xent has always imported them from.

They live in :mod:`xent._multiclass` (argument checking in :mod:`xent._validation`); this
module keeps ``from xent._api import cross_entropy`` working for code that used it.
"""

from ._multiclass import (cross_entropy, cross_entropy_with_grad, log_softmax, logsumexp,
                          nll_loss, softmax)

__all__ = ["cross_entropy", "cross_entropy_with_grad", "log_softmax", "logsumexp", "nll_loss",
           "softmax"]
