"""Reference fused linear cross-entropy: the twin of :mod:`xent.linear`, logits formed whole."""

import numpy as np

from ._multiclass import log_softmax
from ._z_loss import cross_entropy, cross_entropy_grad

__all__ = [
    "linear_cross_entropy",
    "linear_cross_entropy_grad",
    "linear_cross_entropy_with_grad",
]


# ---- fused linear cross-entropy (xent.linear) -------------------------------------------------


def _linear_logits(hidden, weight, bias, softcap):
    """The logits ``hidden @ weight.T + bias`` (capped), materialised in float64."""
    h = np.asarray(hidden, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    z = h @ w.T
    if bias is not None:
        z = z + np.asarray(bias, dtype=np.float64)
    if softcap is not None:
        z = softcap * np.tanh(z / softcap)
    return h, w, z


def linear_cross_entropy(
    hidden,
    weight,
    target,
    *,
    bias=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    softcap=None,
    z_loss=0.0,
    return_lse=False,
    return_stats=False,
):
    """:func:`cross_entropy` of the logits ``hidden @ weight.T + bias``, formed whole.

    Parameters
    ----------
    hidden : array_like, shape (..., H)
    weight : array_like, shape (V, H)
    target : array_like of int, shape (...)
    bias : array_like, shape (V,), optional
    ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.
    softcap : float, optional
        Logits become ``softcap * tanh(logits / softcap)`` (Gemma's capping).
    z_loss, return_lse
        As for :func:`cross_entropy`.
    return_stats : bool, optional
        Also return ``(lse, entropy, argmax)`` per row (of the capped logits).

    Returns
    -------
    numpy.ndarray or numpy.float64, or the tuple ``(loss[, lse][, stats])``

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> hidden = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    >>> weight = np.array([[1.0, 1.0], [0.0, -1.0], [2.0, 0.5]])
    >>> target = np.array([2, 1, 0])
    >>> round(float(reference.linear_cross_entropy(hidden, weight, target)), 4)
    0.4461
    >>> np.round(
    ...     reference.linear_cross_entropy(hidden, weight, target, softcap=1.0, reduction="none"), 4
    ... )
    array([0.7876, 0.7107, 0.6741])
    """
    _, _, z = _linear_logits(hidden, weight, bias, softcap)
    loss, lse = cross_entropy(
        z,
        target,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        return_lse=True,
    )
    if not (return_lse or return_stats):
        return loss
    result = (loss,)
    if return_lse:
        result += (lse,)
    if return_stats:
        lp = log_softmax(z)
        entropy = -np.sum(np.where(np.isfinite(lp), np.exp(lp) * lp, 0.0), axis=-1)
        result += ((lse, entropy, np.argmax(z, axis=-1)),)
    return result


def linear_cross_entropy_grad(
    hidden,
    weight,
    target,
    *,
    bias=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    softcap=None,
    z_loss=0.0,
    grad_output=None,
):
    """Gradients of :func:`linear_cross_entropy`: ``(grad_hidden, grad_weight[, grad_bias])``.

    By the chain rule through the materialised logits: with ``G`` the gradient of
    :func:`cross_entropy` with respect to the (capped) logits, times ``1 - tanh^2`` when
    capped, ``grad_hidden = G @ weight``, ``grad_weight = G.T @ hidden``,
    ``grad_bias = G.sum(0)`` (batch axes flattened). PyTorch's autograd gives the same.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> hidden = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    >>> weight = np.array([[1.0, 1.0], [0.0, -1.0], [2.0, 0.5]])
    >>> grad_hidden, grad_weight = reference.linear_cross_entropy_grad(
    ...     hidden, weight, np.array([2, 1, -100])
    ... )
    >>> np.round(grad_hidden, 4)
    array([[-0.2124, -0.0063],
           [ 0.3925,  0.3706],
           [ 0.    ,  0.    ]])
    """
    h, w, z = _linear_logits(hidden, weight, bias, softcap)
    g = cross_entropy_grad(
        z,
        target,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        grad_output=grad_output,
    )
    if softcap is not None:
        with np.errstate(invalid="ignore"):  # an entry of 0 stays 0 (ignored rows)
            g = np.where(g == 0, 0.0, g * (1.0 - (z / softcap) ** 2))
    n_rows = int(np.prod(g.shape[:-1], dtype=np.int64))
    g2 = g.reshape(n_rows, w.shape[0])
    grads = ((g2 @ w).reshape(h.shape), g2.T @ h.reshape(n_rows, w.shape[1]))
    if bias is not None:
        grads += (g2.sum(axis=0),)
    return grads


def linear_cross_entropy_with_grad(
    hidden,
    weight,
    target,
    *,
    bias=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    softcap=None,
    z_loss=0.0,
    return_lse=False,
    grad_output=None,
):
    """``(loss, grad_hidden, grad_weight[, grad_bias])`` as
    :func:`xent.linear_cross_entropy_with_grad` returns them (with ``return_lse``, the pair
    of that tuple and the per-row log-sum-exp).

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> hidden = np.array([[1.0, 0.0], [0.5, -1.0]])
    >>> weight = np.array([[1.0, 1.0], [0.0, -1.0], [2.0, 0.5]])
    >>> result = reference.linear_cross_entropy_with_grad(
    ...     hidden, weight, np.array([2, 1]), bias=np.zeros(3)
    ... )
    >>> len(result), round(float(result[0]), 4), np.round(result[-1], 4)  # loss ... grad_bias
    (4, 0.5059, array([ 0.1833, -0.1817, -0.0016]))
    """
    options = dict(
        bias=bias,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        softcap=softcap,
        z_loss=z_loss,
    )
    loss, lse = linear_cross_entropy(hidden, weight, target, return_lse=True, **options)
    grads = (
        loss,
        *linear_cross_entropy_grad(hidden, weight, target, grad_output=grad_output, **options),
    )
    return (grads, lse) if return_lse else grads
