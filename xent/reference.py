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

Semantics follow SciPy (``logsumexp``, ``log_softmax``, ``softmax``) and
PyTorch (``cross_entropy``, ``nll_loss``), with the deliberate differences
for non-finite logits documented on each function.
"""

import numpy as np

__all__ = ["logsumexp", "log_softmax", "softmax", "cross_entropy", "nll_loss"]

_REDUCTIONS = ("none", "mean", "sum")


def logsumexp(x, axis=-1, keepdims=False):
    """Log of the sum of exponentials along an axis, SciPy's semantics.

    Parameters
    ----------
    x : array_like
        Input values.
    axis : int, optional
        Axis to reduce (default: last).
    keepdims : bool, optional
        Keep the reduced axis with length 1.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``log(sum(exp(x), axis))``.

    Notes
    -----
    Where the row maximum ``m`` is finite, the result is
    ``log1p(s) + log(k) + m`` with ``k`` the number of entries equal to ``m``
    and ``s = sum(exp(x - m) over the other entries) / k``, which is SciPy's
    (>= 1.15) accurate formula.  Otherwise the row is not shifted and the
    result is ``log(sum(exp(x)))``: a row containing +inf gives +inf, a row
    of all -inf gives -inf, any NaN gives NaN (also together with +inf).
    A zero-length axis gives -inf.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # `initial` makes the max of an empty axis -inf instead of raising.
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        finite = np.isfinite(m)
        shift = np.where(finite, m, 0.0)

        # Accurate path (used where the maximum is finite).
        is_max = x == m
        n_max = np.sum(is_max, axis=axis, keepdims=True, dtype=np.float64)
        rest = np.sum(np.where(is_max, 0.0, np.exp(x - shift)), axis=axis,
                      keepdims=True)
        rest = np.where(rest == 0, rest, rest / n_max)
        accurate = np.log1p(rest) + np.log(n_max) + shift

        # Direct path (non-finite maximum: +inf, -inf, NaN, or empty axis).
        direct = np.log(np.sum(np.exp(x), axis=axis, keepdims=True))

        out = np.where(finite, accurate, direct)
    if not keepdims:
        out = np.squeeze(out, axis=axis)
    return out[()] if out.ndim == 0 else out


def log_softmax(x, axis=-1):
    """Logarithm of the softmax along an axis, SciPy's semantics.

    Parameters
    ----------
    x : array_like
        Input values.
    axis : int, optional
        Class axis (default: last).

    Returns
    -------
    numpy.ndarray
        ``x - logsumexp(x, axis, keepdims=True)``, same shape as `x`.

    Notes
    -----
    Computed as SciPy does, ``(x - c) - log(sum(exp(x - c)))`` with ``c`` the
    row maximum where it is finite and 0 otherwise; in exact arithmetic this
    is ``x - logsumexp(x)``.  A row ``[inf, 1]`` gives ``[nan, -inf]`` and a
    row of all -inf gives all NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        shifted = x - np.where(np.isfinite(m), m, 0.0)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis,
                                       keepdims=True))


def softmax(x, axis=-1):
    """Softmax along an axis, defined as ``exp(log_softmax(x, axis))``.

    Parameters
    ----------
    x : array_like
        Input values.
    axis : int, optional
        Class axis (default: last).

    Returns
    -------
    numpy.ndarray
        Probabilities, same shape as `x`.

    Notes
    -----
    For finite rows this equals ``scipy.special.softmax``.  For a row with
    +inf it follows :func:`log_softmax` (``[inf, 1]`` gives ``[nan, 0]``),
    whereas SciPy gives all NaN there.
    """
    return np.exp(log_softmax(x, axis=axis))


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(losses, denominator, reduction):
    """Apply `reduction` to per-row `losses`.

    ``"mean"`` is ``losses.sum() / denominator``; a zero denominator gives
    NaN (without a warning), as in PyTorch.
    """
    if reduction == "none":
        return losses
    with np.errstate(over="ignore", invalid="ignore"):  # inf + -inf is NaN, unwarned
        total = np.sum(losses, dtype=np.float64)
    if reduction == "sum":
        return np.float64(total)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(total) / np.float64(denominator)


def _class_weights(weight, n_classes):
    if weight is None:
        return np.ones(n_classes, dtype=np.float64)
    return np.asarray(weight, dtype=np.float64)


def _class_index_rows(target, ignore_index, w):
    """Split integer targets into (safe indices, ignored mask, row weights).

    Ignored rows get index 0 (any valid index; their losses are masked out)
    and weight 0.  Labels outside ``[0, C)`` raise IndexError; negative
    labels would otherwise silently index from the end.
    """
    t = np.asarray(target).astype(np.int64)
    ignored = t == ignore_index
    safe_t = np.where(ignored, 0, t)
    if np.any(safe_t < 0):
        raise IndexError("target class index out of range")
    w_t = np.where(ignored, 0.0, w[safe_t])
    return safe_t, ignored, w_t


def _gather(values, index):
    """``values[..., index[...]]``: one entry per row along the last axis."""
    return np.take_along_axis(values, index[..., None], axis=-1)[..., 0]


def cross_entropy(logits, target, *, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0):
    """Cross-entropy loss with PyTorch's semantics, classes on the last axis.

    Parameters
    ----------
    logits : array_like, shape (..., C)
        Unnormalised scores.
    target : array_like
        Either integer class indices of shape ``(...)`` or floating class
        probabilities of shape ``(..., C)``.
    weight : array_like, shape (C,), optional
        Per-class weights (default: all ones).
    ignore_index : int, optional
        Class-index rows with this target get loss 0 and weight 0.  Not used
        for probability targets.
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns the per-row losses, shape ``(...)``.  ``"sum"``
        sums them.  ``"mean"`` divides the sum by ``sum(weight[t_i])`` over
        the non-ignored rows for class indices, and by the number of rows
        for probabilities; a zero denominator gives NaN.
    label_smoothing : float, optional
        ``eps`` in [0, 1].

    Returns
    -------
    numpy.ndarray or numpy.float64
        Per-row losses or the reduced loss.

    Notes
    -----
    With ``lse = logsumexp(row)`` and ``w`` the class weights, the per-row
    loss for a class index ``t`` is::

        (1 - eps) * w[t] * (lse - x[t]) + (eps / C) * sum_j w[j] * (lse - x[j])

    and for probabilities ``p`` (smoothed to ``p * (1 - eps) + eps / C``)::

        sum_j w[j] * p[j] * (lse - x[j])

    A term whose coefficient is exactly 0 (the first when ``eps == 1``, the
    second when ``eps == 0``) is left out.

    Deliberate differences from PyTorch, which returns NaN for every row
    containing +inf and for ``p[j] == 0`` on ``x[j] == -inf``:

    * ``lse - x[j]`` is evaluated as ``-log_softmax(x)[j]``, so a row
      containing +inf gives +inf when the target logit is finite and NaN
      when it is +inf; a row of all -inf gives NaN.
    * A probability term with ``p[j] == 0`` is left out (counts 0), even
      where ``lse - x[j]`` is infinite or NaN: a class the target gives no
      mass cannot change the loss.
    """
    _check_reduction(reduction)
    x = np.asarray(logits, dtype=np.float64)
    n_classes = x.shape[-1]
    w = _class_weights(weight, n_classes)
    eps = float(label_smoothing)

    raw_target = np.asarray(target)
    with np.errstate(invalid="ignore", over="ignore"):
        # -log_softmax(x) = (c - x) + log(sum(exp(x - c))): the same value as lse - x, but
        # without rounding lse first, so huge logits keep their small differences.
        nll_per_class = -log_softmax(x)

        if np.issubdtype(raw_target.dtype, np.integer):
            safe_t, ignored, w_t = _class_index_rows(raw_target, ignore_index,
                                                     w)
            losses = np.zeros(safe_t.shape, dtype=np.float64)
            if eps != 1.0:
                losses = losses + (1.0 - eps) * w[safe_t] * _gather(
                    nll_per_class, safe_t)
            if eps != 0.0:
                losses = losses + (eps / n_classes) * np.sum(
                    w * nll_per_class, axis=-1)
            losses = np.where(ignored, 0.0, losses)
            return _reduce(losses, np.sum(w_t), reduction)

        p = np.asarray(raw_target, dtype=np.float64)
        if p.shape != x.shape:
            raise ValueError(
                f"probability target shape {p.shape} != logits shape {x.shape}")
        if eps != 0.0:
            p = p * (1.0 - eps) + eps / n_classes
        terms = w * p * nll_per_class
        terms = np.where(p == 0, 0.0, terms)
        losses = np.sum(terms, axis=-1)
        return _reduce(losses, losses.size, reduction)


def nll_loss(log_probs, target, *, weight=None, ignore_index=-100,
             reduction="mean"):
    """Negative log-likelihood loss with PyTorch's semantics, classes last.

    Parameters
    ----------
    log_probs : array_like, shape (..., C)
        Log-probabilities (not checked to be normalised).
    target : array_like of int, shape (...)
        Class indices.
    weight : array_like, shape (C,), optional
        Per-class weights (default: all ones).
    ignore_index : int, optional
        Rows with this target get loss 0 and weight 0.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides the sum of losses by ``sum(weight[t_i])`` over the
        non-ignored rows (NaN when that is 0, e.g. all rows ignored).

    Returns
    -------
    numpy.ndarray or numpy.float64
        Per-row losses ``-weight[t_i] * log_probs[i, t_i]`` or their
        reduction.
    """
    _check_reduction(reduction)
    lp = np.asarray(log_probs, dtype=np.float64)
    w = _class_weights(weight, lp.shape[-1])
    safe_t, ignored, w_t = _class_index_rows(target, ignore_index, w)
    with np.errstate(invalid="ignore", over="ignore"):
        losses = np.where(ignored, 0.0, -w[safe_t] * _gather(lp, safe_t))
    return _reduce(losses, np.sum(w_t), reduction)
