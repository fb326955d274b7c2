"""Pure-NumPy reference implementations (the oracle).

Every fast kernel in :mod:`xent` is tested against the functions in this
module.  They are written for clarity, not speed: plain vectorised NumPy in
float64 over the whole array, no compiled code and no clever tricks beyond
the ones needed to match SciPy's results to the last few ulps.

Conventions
-----------
* Inputs are converted with ``np.asarray(..., dtype=np.float64)`` and are
  never modified.  Results are float64 arrays, or NumPy float64 scalars for
  reduced losses.
* Classes lie on the last axis (``axis=-1``) unless ``axis`` is given;
  leading axes are batch axes.
* Inputs are not validated thoroughly; the public API does that.

Layout
------
The package mirrors :mod:`xent`: the functions ``xent.X`` has are ``xent.reference.X``, with
the same return shapes (``cross_entropy_with_grad`` returns ``(loss, grad)``), and
:mod:`xent.reference.info` and :mod:`xent.reference.linear` mirror :mod:`xent.info` and
:mod:`xent.linear`. The older names stay: ``cross_entropy_dist`` (``info.cross_entropy``)
and the ``*_grad`` functions, which return the gradient alone.

Semantics follow SciPy (``logsumexp``, ``log_softmax``, ``softmax``; the
information quantities ``entropy``, ``cross_entropy_dist``,
``kl_divergence``, ``binary_entropy`` follow ``scipy.special.entr``,
``xlogy`` and ``rel_entr``) and PyTorch (``cross_entropy``, ``nll_loss``,
``binary_cross_entropy``, ``binary_cross_entropy_with_logits`` and the
``*_grad`` functions, which equal its autograd), with the deliberate
differences for non-finite logits documented on each function.
"""

from . import info, linear  # noqa: F401 (xent.reference.info mirrors xent.info)
from ._binary import (
    binary_cross_entropy,
    binary_cross_entropy_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    binary_cross_entropy_with_logits_grad_hess,
)
from ._evaluation import calibration_errors, compare, evaluate, target_rank
from ._multiclass import cross_entropy_grad_hess, log_softmax, logsumexp, nll_loss, softmax
from ._z_loss import cross_entropy, cross_entropy_grad  # with z_loss= and return_lse=
from .info import (
    binary_entropy,
    cross_entropy_dist,
    entropy,
    entropy_from_logits,
    kl_divergence,
    perplexity,
    self_information,
)
from . import divergence  # noqa: F401 (xent.reference.divergence mirrors xent.divergence)
from .divergence import (
    js_divergence_logits,
    js_divergence_logits_with_grad,
    kl_divergence_logits,
    kl_divergence_logits_with_grad,
    tv_distance_logits,
    tv_distance_logits_with_grad,
)
from .linear import linear_cross_entropy, linear_cross_entropy_grad, linear_cross_entropy_with_grad

__all__ = [
    "logsumexp",
    "log_softmax",
    "softmax",
    "cross_entropy",
    "nll_loss",
    # Information quantities.
    "self_information",
    "entropy",
    "cross_entropy_dist",
    "kl_divergence",
    "binary_entropy",
    "entropy_from_logits",
    "perplexity",
    # Binary cross-entropy.
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    # Gradients.
    "cross_entropy_grad",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits_grad",
    # Losses with their gradients, as the public functions return them.
    "cross_entropy_with_grad",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits_with_grad",
    # Gradients and diagonal Hessians per row, for gradient boosting.
    "cross_entropy_grad_hess",
    "binary_cross_entropy_with_logits_grad_hess",
    # Fused linear cross-entropy.
    "linear_cross_entropy",
    "linear_cross_entropy_grad",
    "linear_cross_entropy_with_grad",
    # Divergences between two sets of logits (distillation).
    "kl_divergence_logits",
    "kl_divergence_logits_with_grad",
    "js_divergence_logits",
    "js_divergence_logits_with_grad",
    "tv_distance_logits",
    "tv_distance_logits_with_grad",
    # Evaluation.
    "evaluate",
    "target_rank",
    "compare",
    "calibration_errors",
]


def cross_entropy_with_grad(
    logits,
    target,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    return_lse=False,
    grad_output=None,
):
    """``(loss, grad)`` as :func:`xent.cross_entropy_with_grad` returns them (and the
    per-row log-sum-exp third with ``return_lse``).

    :func:`cross_entropy` and :func:`cross_entropy_grad` of the same arguments.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> loss, grad = reference.cross_entropy_with_grad(np.array([[2.0, 0.5, -1.0]]), np.array([0]))
    >>> round(float(loss), 4), np.round(grad, 4)
    (0.2413, array([[-0.2144,  0.1753,  0.0391]]))
    """
    options = dict(
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
    )
    loss = cross_entropy(logits, target, return_lse=return_lse, **options)
    grad = cross_entropy_grad(logits, target, grad_output=grad_output, **options)
    return (loss[0], grad, loss[1]) if return_lse else (loss, grad)


def binary_cross_entropy_with_grad(
    probs, target, *, weight=None, reduction="mean", grad_output=None
):
    """``(loss, grad)`` as :func:`xent.binary_cross_entropy_with_grad` returns them.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> loss, grad = reference.binary_cross_entropy_with_grad(
    ...     np.array([0.9, 0.2]), np.array([1.0, 0.0]), reduction="sum"
    ... )
    >>> round(float(loss), 4), np.round(grad, 4)
    (0.3285, array([-1.1111,  1.25  ]))
    """
    options = dict(weight=weight, reduction=reduction)
    return (
        binary_cross_entropy(probs, target, **options),
        binary_cross_entropy_grad(probs, target, grad_output=grad_output, **options),
    )


def binary_cross_entropy_with_logits_with_grad(
    logits, target, *, weight=None, pos_weight=None, reduction="mean", grad_output=None
):
    """``(loss, grad)`` as :func:`xent.binary_cross_entropy_with_logits_with_grad` returns
    them.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> loss, grad = reference.binary_cross_entropy_with_logits_with_grad(
    ...     np.array([2.0, -1.0]), np.array([1.0, 0.0]), reduction="sum"
    ... )
    >>> round(float(loss), 4), np.round(grad, 4)
    (0.4402, array([-0.1192,  0.2689]))
    """
    options = dict(weight=weight, pos_weight=pos_weight, reduction=reduction)
    return (
        binary_cross_entropy_with_logits(logits, target, **options),
        binary_cross_entropy_with_logits_grad(logits, target, grad_output=grad_output, **options),
    )
