"""cross_entropy's ``z_loss=`` and ``return_lse=`` options, for the reference: the plain
cross-entropy of :mod:`._multiclass` plus ``z_loss * lse**2`` per row not ignored (PaLM's
auxiliary loss), its mean taken over the rows kept."""

import numpy as np

from . import _multiclass


def _kept_rows(x, target, ignore_index):
    t = np.asarray(target)
    if np.issubdtype(t.dtype, np.integer):
        return t != ignore_index
    return np.ones(x.shape[:-1], dtype=bool)


def _z_terms(x, target, ignore_index, z_loss):
    lse = _multiclass.logsumexp(x, axis=-1)
    kept = _kept_rows(x, target, ignore_index)
    with np.errstate(over="ignore", invalid="ignore"):
        return lse, kept, np.where(kept, z_loss * lse * lse, 0.0)


def cross_entropy(
    logits,
    target,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    return_lse=False,
):
    """:func:`xent.reference._multiclass.cross_entropy` with ``z_loss * lse**2`` added per
    row not ignored (the mean of that term is over the rows kept), and with
    ``return_lse`` the pair ``(loss, logsumexp per row)``.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    >>> target = np.array([0, 2, -100])  # the last row is ignored
    >>> round(float(reference.cross_entropy(logits, target)), 4)
    0.1755
    >>> loss, lse = reference.cross_entropy(logits, target, z_loss=0.01, return_lse=True)
    >>> round(float(loss), 4), np.round(lse, 4)
    (0.2489, array([2.2413, 3.1096, 2.0986]))
    """
    loss = _multiclass.cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    x = np.asarray(logits, dtype=np.float64)
    lse, kept, z_rows = _z_terms(x, target, ignore_index, z_loss)
    if z_loss:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if reduction == "none":
                loss = loss + z_rows
            elif reduction == "sum":
                loss = loss + np.sum(z_rows)
            else:
                loss = loss + np.sum(z_rows) / np.float64(np.count_nonzero(kept))
    return (loss, lse) if return_lse else loss


def cross_entropy_grad(
    logits,
    target,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    grad_output=None,
):
    """The gradient of :func:`cross_entropy`: the z-loss adds ``2 z_loss lse softmax(x)``
    per row kept, times that row's incoming gradient.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> target = np.array([0, 2])
    >>> np.round(reference.cross_entropy_grad(logits, target), 4)
    array([[-0.1072,  0.0876,  0.0196],
           [ 0.0247,  0.0272, -0.0519]])

    The z-loss pushes every row's log-sum-exp down, so every class's logit:

    >>> np.round(reference.cross_entropy_grad(logits, target, z_loss=0.1), 4)
    array([[0.0689, 0.1269, 0.0283],
           [0.04  , 0.0442, 0.2268]])
    """
    grad = _multiclass.cross_entropy_grad(
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        grad_output=grad_output,
    )
    if not z_loss:
        return grad
    x = np.asarray(logits, dtype=np.float64)
    lse, kept, _ = _z_terms(x, target, ignore_index, z_loss)
    g = (
        np.ones(x.shape[:-1])
        if grad_output is None
        else np.broadcast_to(np.asarray(grad_output, dtype=np.float64), x.shape[:-1])
    )
    if reduction == "mean":
        g = g / max(int(np.count_nonzero(kept)), 1)
    coef = np.where(kept, 2.0 * z_loss * lse * g, 0.0)
    return grad + coef[..., None] * _multiclass.softmax(x)
