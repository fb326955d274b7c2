"""Reference log-sum-exp, log-softmax, softmax, cross-entropy, NLL and the cross-entropy
gradient.
"""

import numpy as np

from ._common import (
    check_reduction,
    class_index_rows,
    class_weights,
    gather,
    grad_scale,
    reduce_losses,
)

__all__ = [
    "logsumexp",
    "log_softmax",
    "softmax",
    "cross_entropy",
    "nll_loss",
    "cross_entropy_grad",
    "cross_entropy_grad_hess",
]


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

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])
    >>> np.round(reference.logsumexp(x), 4)
    array([   3.4076, 1001.0986])
    >>> np.round(reference.logsumexp(x, axis=0, keepdims=True), 4)
    array([[1000., 1000., 1000.]])
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
        rest = np.sum(np.where(is_max, 0.0, np.exp(x - shift)), axis=axis, keepdims=True)
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

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> np.round(reference.log_softmax(np.array([1.0, 2.0, 3.0])), 4)
    array([-2.4076, -1.4076, -0.4076])
    >>> np.round(reference.log_softmax(np.array([[1.0, 2.0], [1.0, 4.0]]), axis=0), 4)
    array([[-0.6931, -2.1269],
           [-0.6931, -0.1269]])
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        shifted = x - np.where(np.isfinite(m), m, 0.0)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


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

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> np.round(reference.softmax(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, -np.inf]])), 4)
    array([[0.09  , 0.2447, 0.6652],
           [0.5   , 0.5   , 0.    ]])
    """
    return np.exp(log_softmax(x, axis=axis))


def cross_entropy(
    logits, target, *, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
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

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> from xent import reference
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    >>> target = np.array([0, 2, -100])  # the last row is ignored
    >>> round(float(reference.cross_entropy(logits, target)), 4)
    0.1755
    >>> np.round(reference.cross_entropy(logits, target, label_smoothing=0.1, reduction="none"), 4)
    array([0.3913, 0.2996, 0.    ])

    It is the oracle :func:`xent.cross_entropy` is tested against:

    >>> fast, slow = xent.cross_entropy(logits, target), reference.cross_entropy(logits, target)
    >>> bool(np.isclose(fast, slow, rtol=1e-12))
    True
    """
    check_reduction(reduction)
    x = np.asarray(logits, dtype=np.float64)
    n_classes = x.shape[-1]
    w = class_weights(weight, n_classes)
    eps = float(label_smoothing)

    raw_target = np.asarray(target)
    with np.errstate(invalid="ignore", over="ignore"):
        # -log_softmax(x) = (c - x) + log(sum(exp(x - c))): the same value as lse - x, but
        # without rounding lse first, so huge logits keep their small differences.
        nll_per_class = -log_softmax(x)

        if np.issubdtype(raw_target.dtype, np.integer):
            safe_t, ignored, w_t = class_index_rows(raw_target, ignore_index, w)
            losses = np.zeros(safe_t.shape, dtype=np.float64)
            if eps != 1.0:
                losses = losses + (1.0 - eps) * w[safe_t] * gather(nll_per_class, safe_t)
            if eps != 0.0:
                losses = losses + (eps / n_classes) * np.sum(w * nll_per_class, axis=-1)
            losses = np.where(ignored, 0.0, losses)
            return reduce_losses(losses, np.sum(w_t), reduction)

        p = np.asarray(raw_target, dtype=np.float64)
        if p.shape != x.shape:
            raise ValueError(f"probability target shape {p.shape} != logits shape {x.shape}")
        if eps != 0.0:
            p = p * (1.0 - eps) + eps / n_classes
        terms = w * p * nll_per_class
        terms = np.where(p == 0, 0.0, terms)
        losses = np.sum(terms, axis=-1)
        return reduce_losses(losses, losses.size, reduction)


def nll_loss(log_probs, target, *, weight=None, ignore_index=-100, reduction="mean"):
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

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> log_probs = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    >>> round(float(reference.nll_loss(log_probs, np.array([0, 2]))), 4)
    0.2899
    >>> np.round(
    ...     reference.nll_loss(
    ...         log_probs, np.array([0, 2]), weight=np.array([1.0, 1.0, 2.0]), reduction="none"
    ...     ),
    ...     4,
    ... )
    array([0.3567, 0.4463])
    """
    check_reduction(reduction)
    lp = np.asarray(log_probs, dtype=np.float64)
    w = class_weights(weight, lp.shape[-1])
    safe_t, ignored, w_t = class_index_rows(target, ignore_index, w)
    with np.errstate(invalid="ignore", over="ignore"):
        losses = np.where(ignored, 0.0, -w[safe_t] * gather(lp, safe_t))
    return reduce_losses(losses, np.sum(w_t), reduction)


def cross_entropy_grad(
    logits,
    target,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    grad_output=None,
):
    """Gradient of :func:`cross_entropy` with respect to the logits.

    Parameters
    ----------
    logits, target, weight, ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy` (classes on the last axis).
    grad_output : array_like, optional
        The incoming gradient: for ``reduction="none"`` one value per row,
        broadcast to the batch shape ``logits.shape[:-1]`` (default ones);
        for ``"mean"`` and ``"sum"`` a scalar (default 1).

    Returns
    -------
    numpy.ndarray
        ``d(loss)/d(logits)`` times `grad_output`, shape of `logits`; equal
        to PyTorch's autograd result.

    Notes
    -----
    With ``p = softmax(x)``, ``C`` classes, class weights ``w`` (ones by
    default), ``W = sum(w)`` and ``eps`` the smoothing, the gradient of row
    ``i`` is ``g_i`` times

    * for a class index ``t``:
      ``(1 - eps) * w[t] * (p - onehot(t)) + (eps / C) * (W * p - w)``
      (a term with coefficient exactly 0 is left out, as in the loss);
      ignored rows are exactly 0;
    * for probabilities ``q`` (smoothed to ``q * (1 - eps) + eps / C``):
      ``sum_j(w[j] * q[j]) * p - w * q``, products with ``q[j] == 0``
      counting 0.

    ``g_i`` is `grad_output` for ``"sum"``; `grad_output` divided by the
    loss's denominator for ``"mean"`` (the total weight ``sum(w[t_i])`` of
    the non-ignored rows for class indices, the number of rows for
    probabilities); and ``grad_output[i]`` for ``"none"``.  A zero
    denominator makes non-ignored rows inf/NaN, as in PyTorch.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> target = np.array([0, 2])
    >>> np.round(reference.cross_entropy_grad(logits, target), 4)
    array([[-0.1072,  0.0876,  0.0196],
           [ 0.0247,  0.0272, -0.0519]])
    >>> np.round(
    ...     reference.cross_entropy_grad(
    ...         logits, target, reduction="none", grad_output=np.array([1.0, 0.5])
    ...     ),
    ...     4,
    ... )
    array([[-0.2144,  0.1753,  0.0391],
           [ 0.0247,  0.0272, -0.0519]])
    """
    check_reduction(reduction)
    x = np.asarray(logits, dtype=np.float64)
    n_classes = x.shape[-1]
    batch_shape = x.shape[:-1]
    w = class_weights(weight, n_classes)
    eps = float(label_smoothing)

    raw_target = np.asarray(target)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = softmax(x)
        if np.issubdtype(raw_target.dtype, np.integer):
            safe_t, ignored, w_t = class_index_rows(raw_target, ignore_index, w)
            rows = np.zeros(x.shape, dtype=np.float64)
            if eps != 1.0:
                onehot = np.arange(n_classes) == safe_t[..., None]
                rows = rows + ((1.0 - eps) * w[safe_t])[..., None] * (p - onehot)
            if eps != 0.0:
                rows = rows + (eps / n_classes) * (np.sum(w) * p - w)
            denominator = np.sum(w_t)
        else:
            q = np.asarray(raw_target, dtype=np.float64)
            if q.shape != x.shape:
                raise ValueError(f"probability target shape {q.shape} != logits shape {x.shape}")
            if eps != 0.0:
                q = q * (1.0 - eps) + eps / n_classes
            wq = np.where(q == 0, 0.0, w * q)
            rows = np.sum(wq, axis=-1, keepdims=True) * p - wq
            ignored = np.zeros(batch_shape, dtype=bool)
            denominator = int(np.prod(batch_shape))
        g = grad_scale(reduction, denominator, grad_output, batch_shape)
        grad = np.asarray(g)[..., None] * rows
        grad = np.where(ignored[..., None], 0.0, grad)
    return grad


def cross_entropy_grad_hess(logits, target, *, weight=None, ignore_index=-100, sample_weight=None):
    """Per-row gradient and diagonal Hessian of the cross-entropy (no reduction).

    Returns
    -------
    grad, hess : numpy.ndarray
        ``c * (p - onehot(t))`` and ``c * p * (1 - p)`` with ``p = softmax(logits)`` and
        ``c = sample_weight[i] * weight[t_i]`` (0 for rows whose target is
        ``ignore_index``); scikit-learn's ``HalfMultinomialLoss.gradient_hessian``.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> grad, hess = reference.cross_entropy_grad_hess(logits, np.array([0, 2]))
    >>> np.round(grad, 4)
    array([[-0.2144,  0.1753,  0.0391],
           [ 0.0493,  0.0545, -0.1038]])

    A row whose target is ``ignore_index`` gets zeros:

    >>> grad, hess = reference.cross_entropy_grad_hess(logits, np.array([0, -100]))
    >>> np.round(hess, 4)
    array([[0.1684, 0.1446, 0.0376],
           [0.    , 0.    , 0.    ]])
    """
    x = np.asarray(logits, dtype=np.float64)
    w = class_weights(weight, x.shape[-1])
    safe_t, ignored, _ = class_index_rows(np.asarray(target), ignore_index, w)
    c = np.where(ignored, 0.0, w[safe_t])
    if sample_weight is not None:
        c = c * np.asarray(sample_weight, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        p = softmax(x)
        onehot = np.arange(x.shape[-1]) == safe_t[..., None]
        return c[..., None] * (p - onehot), c[..., None] * p * (1.0 - p)
