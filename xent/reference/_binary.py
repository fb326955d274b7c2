"""Reference binary cross-entropy of probabilities and of logits, and their gradients."""

import numpy as np

from ._common import check_reduction, grad_scale, reduce_losses, result

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits_grad",
    "binary_cross_entropy_with_logits_grad_hess",
]


# ---------------------------------------------------------------------------
# Binary cross-entropy (PyTorch semantics)
# ---------------------------------------------------------------------------


def _binary_inputs(x, target):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if y.shape != x.shape:
        raise ValueError(f"target shape {y.shape} != input shape {x.shape}")
    return x, y


def _elementwise_weight(weight, shape):
    """`weight` broadcast to `shape` (all ones when None)."""
    if weight is None:
        return np.ones(shape, dtype=np.float64)
    return np.broadcast_to(np.asarray(weight, dtype=np.float64), shape)


def _elementwise_reduce(losses, reduction):
    """``"mean"`` divides by the number of elements (NaN when empty)."""
    return result(reduce_losses(losses, losses.size, reduction))


def binary_cross_entropy(probs, target, *, weight=None, reduction="mean"):
    """Binary cross-entropy on probabilities, PyTorch's semantics.

    Parameters
    ----------
    probs : array_like
        Predicted probabilities of the positive class (not validated).
    target : array_like
        Targets in [0, 1], same shape as `probs`.
    weight : array_like, optional
        Weights broadcast to the shape of `probs` (default: ones).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns the elementwise losses, ``"sum"`` their sum and
        ``"mean"`` their sum divided by the number of elements (NaN when
        empty).

    Returns
    -------
    numpy.ndarray or numpy.float64
        Losses ``-w * (y * max(log(x), -100) + (1 - y) * max(log1p(-x),
        -100))`` or their reduction.

    Notes
    -----
    As in PyTorch each log is clamped at -100, so ``x = 0`` or ``x = 1``
    gives a finite loss (``100 * y`` at ``x = 0``).

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> probs, target = np.array([0.9, 0.2, 0.0]), np.array([1.0, 0.0, 1.0])
    >>> np.round(reference.binary_cross_entropy(probs, target, reduction="none"), 4)
    array([  0.1054,   0.2231, 100.    ])
    >>> weight = np.array([1.0, 1.0, 0.0])
    >>> round(float(reference.binary_cross_entropy(probs, target, weight=weight)), 4)
    0.1095
    """
    check_reduction(reduction)
    x, y = _binary_inputs(probs, target)
    w = _elementwise_weight(weight, x.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_x = np.maximum(np.log(x), -100.0)
        log_1mx = np.maximum(np.log1p(-x), -100.0)
        losses = -w * (y * log_x + (1.0 - y) * log_1mx)
    return _elementwise_reduce(losses, reduction)


def _log_weight(pos_weight, y):
    """``L = 1 + (pos_weight - 1) * y`` (``None`` for no pos_weight)."""
    if pos_weight is None:
        return None
    pw = np.broadcast_to(np.asarray(pos_weight, dtype=np.float64), y.shape)
    return 1.0 + (pw - 1.0) * y


def binary_cross_entropy_with_logits(
    logits, target, *, weight=None, pos_weight=None, reduction="mean"
):
    """Binary cross-entropy on logits, PyTorch's semantics.

    Parameters
    ----------
    logits : array_like
        Logits of the positive class.
    target : array_like
        Targets in [0, 1], same shape as `logits`.
    weight : array_like, optional
        Weights broadcast to the shape of `logits` (default: ones).
    pos_weight : array_like, optional
        Weight of the positive term, broadcast to the shape of `logits`
        (typically shape ``(C,)``, the last axis); default 1.
    reduction : {"mean", "sum", "none"}, optional
        As for :func:`binary_cross_entropy`.

    Returns
    -------
    numpy.ndarray or numpy.float64
        Losses ``w * (pos_weight * y * softplus(-x) + (1 - y) * softplus(x))``
        or their reduction.

    Notes
    -----
    Evaluated without overflow for any finite ``x``, and with the linear
    parts gathered so that nothing cancels::

        L * log1p(exp(-|x|)) + ((1 - y) * x if x >= 0 else -pos_weight * y * x),
        L = 1 + (pos_weight - 1) * y.

    This equals PyTorch's ``(1 - y) * x + L * (log1p(exp(-|x|)) + max(-x, 0))``
    but keeps the relative accuracy of a small loss (very negative ``x`` with
    ``y = 0``), which PyTorch's form loses to the cancellation.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits, target = np.array([2.0, -1.0, 40.0]), np.array([1.0, 0.0, 0.0])
    >>> np.round(reference.binary_cross_entropy_with_logits(logits, target, reduction="none"), 4)
    array([ 0.1269,  0.3133, 40.    ])
    >>> np.round(
    ...     reference.binary_cross_entropy_with_logits(
    ...         logits, target, pos_weight=np.array([2.0, 2.0, 2.0]), reduction="none"
    ...     ),
    ...     4,
    ... )
    array([ 0.2539,  0.3133, 40.    ])
    """
    check_reduction(reduction)
    x, y = _binary_inputs(logits, target)
    w = _elementwise_weight(weight, x.shape)
    big_l = _log_weight(pos_weight, y)
    with np.errstate(invalid="ignore", over="ignore"):
        # (1 - y) x + L softplus(-x) with softplus(-x) = log1p(exp(-|x|)) + max(-x, 0): the
        # linear parts gathered first, (1 - y) x for x >= 0 and -pos_weight y x below, never
        # cancel, so a confident logit's small loss keeps its relative accuracy
        log_term = np.log1p(np.exp(-np.abs(x)))
        pw = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
        linear = np.where(x >= 0, (1.0 - y) * x, -pw * y * x)
        linear = np.where(x == -np.inf, np.nan, linear)  # PyTorch's -inf + inf
        if big_l is not None:
            log_term = big_l * log_term
        losses = w * (log_term + linear)
    return _elementwise_reduce(losses, reduction)


# PyTorch's floor for x * (1 - x) in the BCE backward is the float32 constant
# 1e-12f, i.e. 9.999999960041972e-13 as a double.
_BCE_GRAD_FLOOR = np.float64(np.float32(1e-12))


def binary_cross_entropy_grad(probs, target, *, weight=None, reduction="mean", grad_output=None):
    """Gradient of :func:`binary_cross_entropy` with respect to `probs`.

    Parameters
    ----------
    probs, target, weight, reduction
        As for :func:`binary_cross_entropy`.
    grad_output : array_like, optional
        The incoming gradient: for ``reduction="none"`` broadcast to the
        shape of `probs` (default ones); for ``"mean"`` and ``"sum"`` a
        scalar (default 1).

    Returns
    -------
    numpy.ndarray
        ``g * w * (x - y) / max(x * (1 - x), 1e-12)``, shape of `probs`,
        with ``g`` = `grad_output`, divided by the number of elements for
        ``"mean"``.

    Notes
    -----
    This is PyTorch's backward formula, not the derivative of the clamped
    loss: at ``x = 0`` or ``x = 1`` (where the loss's logs are clamped at
    -100 and its true derivative is 0) it gives ``(x - y) / 1e-12`` times
    ``g * w``, e.g. about -1e12 for ``x = 0, y = 1`` and 0 for ``x = y``.
    As in PyTorch the floor is the float32 ``1e-12``, which is
    ``9.999999960041972e-13`` (so ``1 / floor = 1000000003995.8029``).

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> probs, target = np.array([0.9, 0.2, 0.6]), np.array([1.0, 0.0, 1.0])
    >>> np.round(reference.binary_cross_entropy_grad(probs, target), 4)
    array([-0.3704,  0.4167, -0.5556])
    >>> np.round(reference.binary_cross_entropy_grad(probs, target, reduction="sum"), 4)
    array([-1.1111,  1.25  , -1.6667])
    """
    check_reduction(reduction)
    x, y = _binary_inputs(probs, target)
    w = _elementwise_weight(weight, x.shape)
    g = grad_scale(reduction, x.size, grad_output, x.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(
            g * w * (x - y) / np.maximum(x * (1.0 - x), _BCE_GRAD_FLOOR), dtype=np.float64
        )


def _sigmoid(x):
    """Logistic sigmoid without overflow: ``exp`` only of ``-|x|``."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy_with_logits_grad(
    logits, target, *, weight=None, pos_weight=None, reduction="mean", grad_output=None
):
    """Gradient of :func:`binary_cross_entropy_with_logits` w.r.t. logits.

    Parameters
    ----------
    logits, target, weight, pos_weight, reduction
        As for :func:`binary_cross_entropy_with_logits`.
    grad_output : array_like, optional
        As for :func:`binary_cross_entropy_grad`.

    Returns
    -------
    numpy.ndarray
        ``g * w * (L * sigmoid(x) - pos_weight * y)`` with
        ``L = 1 + (pos_weight - 1) * y`` (``pos_weight = 1`` when None, so
        ``sigmoid(x) - y``), shape of `logits`; PyTorch's formula.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits, target = np.array([2.0, -1.0, 0.5]), np.array([1.0, 0.0, 0.0])
    >>> np.round(
    ...     reference.binary_cross_entropy_with_logits_grad(logits, target, reduction="sum"), 4
    ... )
    array([-0.1192,  0.2689,  0.6225])
    >>> np.round(
    ...     reference.binary_cross_entropy_with_logits_grad(
    ...         logits, target, pos_weight=np.array([3.0, 1.0, 1.0]), reduction="sum"
    ...     ),
    ...     4,
    ... )
    array([-0.3576,  0.2689,  0.6225])
    """
    check_reduction(reduction)
    x, y = _binary_inputs(logits, target)
    w = _elementwise_weight(weight, x.shape)
    g = grad_scale(reduction, x.size, grad_output, x.shape)
    sig, sig_neg = _sigmoid(x), _sigmoid(-x)
    with np.errstate(invalid="ignore", over="ignore"):
        # L sigmoid(x) - pw y = (1 - y) sigmoid(x) - pw y sigmoid(-x): 1 - sigmoid(x) is never
        # formed, so sigmoid(20) - 1 = -2.06e-9 survives
        pw = (
            1.0
            if pos_weight is None
            else np.broadcast_to(np.asarray(pos_weight, dtype=np.float64), x.shape)
        )
        d = (1.0 - y) * sig - pw * y * sig_neg
        return np.asarray(g * w * d, dtype=np.float64)


def binary_cross_entropy_with_logits_grad_hess(
    logits, target, *, weight=None, pos_weight=None, sample_weight=None
):
    """Per-element gradient and second derivative of the BCE with logits (no reduction).

    Returns
    -------
    grad, hess : numpy.ndarray
        ``c * (L * sigmoid(x) - pos_weight * y)`` and ``c * L * sigmoid(x) * sigmoid(-x)``
        with ``L = 1 + (pos_weight - 1) * y`` and ``c = weight * sample_weight``;
        scikit-learn's ``HalfBinomialLoss.gradient_hessian`` without the weights.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits, target = np.array([-1.0, 0.0, 2.0]), np.array([0.0, 1.0, 1.0])
    >>> grad, hess = reference.binary_cross_entropy_with_logits_grad_hess(logits, target)
    >>> np.round(grad, 4), np.round(hess, 4)
    (array([ 0.2689, -0.5   , -0.1192]), array([0.1966, 0.25  , 0.105 ]))
    >>> grad, hess = reference.binary_cross_entropy_with_logits_grad_hess(
    ...     logits, target, pos_weight=2.0
    ... )
    >>> np.round(grad, 4), np.round(hess, 4)
    (array([ 0.2689, -1.    , -0.2384]), array([0.1966, 0.5   , 0.21  ]))
    """
    x, y = _binary_inputs(logits, target)
    c = _elementwise_weight(weight, x.shape)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)
        c = c * sw.reshape(sw.shape + (1,) * (x.ndim - sw.ndim))
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    sig, sig_neg = _sigmoid(x), _sigmoid(-x)
    with np.errstate(invalid="ignore", over="ignore"):
        big_l = 1.0 + (pw - 1.0) * y
        grad = c * ((1.0 - y) * sig - pw * y * sig_neg)
        hess = c * big_l * sig * sig_neg
    return np.asarray(grad, dtype=np.float64), np.asarray(hess, dtype=np.float64)
