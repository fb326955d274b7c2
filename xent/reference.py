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

Semantics follow SciPy (``logsumexp``, ``log_softmax``, ``softmax``; the
information quantities ``entropy``, ``cross_entropy_dist``,
``kl_divergence``, ``binary_entropy`` follow ``scipy.special.entr``,
``xlogy`` and ``rel_entr``) and PyTorch (``cross_entropy``, ``nll_loss``,
``binary_cross_entropy``, ``binary_cross_entropy_with_logits`` and the
``*_grad`` functions, which equal its autograd), with the deliberate
differences for non-finite logits documented on each function.
"""

import numpy as np

__all__ = [
    "logsumexp", "log_softmax", "softmax", "cross_entropy", "nll_loss",
    # Information quantities.
    "self_information", "entropy", "cross_entropy_dist", "kl_divergence",
    "binary_entropy", "entropy_from_logits", "perplexity",
    # Binary cross-entropy.
    "binary_cross_entropy", "binary_cross_entropy_with_logits",
    # Gradients.
    "cross_entropy_grad", "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits_grad",
    # Fused linear cross-entropy.
    "linear_cross_entropy", "linear_cross_entropy_grad",
]

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


# ---------------------------------------------------------------------------
# Information quantities
# ---------------------------------------------------------------------------

def _result(out):
    """A float64 array, or a NumPy float64 scalar when 0-d."""
    out = np.asarray(out, dtype=np.float64)
    return out[()] if out.ndim == 0 else out


def _in_base(values, base):
    """Convert nats to units of `base` (``None``: keep nats)."""
    if base is None:
        return values
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return values / np.log(np.float64(base))


def _normalized(p, axis):
    """``p / sum(p, axis)``; a zero sum gives NaN (no warning)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return p / np.sum(p, axis=axis, keepdims=True)


def _xlogy(x, y):
    """``x * log(y)``; 0 where ``x == 0`` and `y` is not NaN (SciPy's xlogy)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where((x == 0) & ~np.isnan(y), 0.0, x * np.log(y))


def _rel_entr(x, y):
    """SciPy's ``rel_entr``: ``x log(x / y)``, 0, +inf or NaN elementwise.

    For ``x, y > 0`` the logarithm is evaluated as SciPy (>= 1.15) does:
    ``log1p((x - y) / y)`` when ``x / y`` is in (0.5, 2) (accurate when the
    two are close), ``log(x / y)`` when the ratio is a normal finite number,
    and ``log(x) - log(y)`` when it underflows or overflows.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore",
                     under="ignore"):
        ratio = x / y
        log_ratio = np.where(
            (ratio > 0.5) & (ratio < 2.0), np.log1p((x - y) / y),
            np.where((ratio > np.finfo(np.float64).tiny) & (ratio < np.inf),
                     np.log(ratio), np.log(x) - np.log(y)))
        value = x * log_ratio
    out = np.where((x > 0) & (y > 0), value,
                   np.where((x == 0) & (y >= 0), 0.0, np.inf))
    return np.where(np.isnan(x) | np.isnan(y), np.nan, out)


def self_information(p, base=None):
    """Self-information (surprisal) ``-log(p)``, elementwise.

    Parameters
    ----------
    p : array_like
        Probabilities (not validated).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``-log(p) / log(base)``, same shape as `p`; ``p == 0`` gives +inf,
        negative `p` gives NaN.
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _result(_in_base(-np.log(p), base))


def entropy(p, axis=-1, base=None, normalize=False):
    """Shannon entropy of distributions along an axis.

    Parameters
    ----------
    p : array_like
        Probabilities; each slice along `axis` is one distribution (not
        validated).
    axis : int, optional
        Distribution axis (default: last).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.
    normalize : bool, optional
        If True, divide `p` by its sum along `axis` first (as
        ``scipy.stats.entropy`` always does); a zero sum gives NaN.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``-sum(p * log(p), axis)`` with ``0 log 0 = 0``, i.e. the sum of
        ``scipy.special.entr(p)``, divided by ``log(base)``.  A zero-length
        axis gives 0.
    """
    p = np.asarray(p, dtype=np.float64)
    if normalize:
        p = _normalized(p, axis)
    with np.errstate(invalid="ignore", over="ignore"):
        h = -np.sum(_xlogy(p, p), axis=axis)
    return _result(_in_base(h, base))


def cross_entropy_dist(p, q, axis=-1, base=None, normalize=False):
    """Cross-entropy ``H(p, q)`` between distributions along an axis.

    Parameters
    ----------
    p, q : array_like
        Probabilities (broadcast against each other; not validated).
    axis : int, optional
        Distribution axis (default: last).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.
    normalize : bool, optional
        If True, divide `p` and `q` by their sums along `axis` first.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``-sum(xlogy(p, q), axis)`` divided by ``log(base)``: a term with
        ``p == 0`` is 0 (unless ``q`` is NaN), ``p > 0`` with ``q == 0``
        gives +inf.

    See Also
    --------
    cross_entropy : the loss on logits.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if normalize:
        p = _normalized(p, axis)
        q = _normalized(q, axis)
    with np.errstate(invalid="ignore", over="ignore"):
        h = -np.sum(_xlogy(p, q), axis=axis)
    return _result(_in_base(h, base))


def kl_divergence(p, q, axis=-1, base=None, normalize=False):
    """Kullback-Leibler divergence ``KL(p || q)`` along an axis.

    Parameters
    ----------
    p, q : array_like
        Probabilities (broadcast against each other; not validated).
    axis : int, optional
        Distribution axis (default: last).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.
    normalize : bool, optional
        If True, divide `p` and `q` by their sums along `axis` first (as
        ``scipy.stats.entropy(p, q)`` always does).

    Returns
    -------
    numpy.ndarray or numpy.float64
        The sum along `axis` of ``scipy.special.rel_entr(p, q)``, divided by
        ``log(base)``.

    Notes
    -----
    Each term is ``p * log(p / q)`` where ``p > 0`` and ``q > 0``, 0 where
    ``p == 0`` and ``q >= 0``, NaN where either is NaN and +inf otherwise
    (``p > 0`` with ``q == 0``, or a negative entry).  As in SciPy (>= 1.15)
    the log is ``log1p((p - q) / q)`` when ``p / q`` is in (0.5, 2), so
    nearly equal distributions keep their tiny divergence accurately, and
    ``log(p) - log(q)`` when ``p / q`` underflows or overflows.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if normalize:
        p = _normalized(p, axis)
        q = _normalized(q, axis)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.sum(_rel_entr(p, q), axis=axis)
    return _result(_in_base(d, base))


def binary_entropy(p, base=None):
    """Entropy of Bernoulli(p), elementwise.

    Parameters
    ----------
    p : array_like
        Probabilities of the positive outcome (not validated).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``-p log(p) - (1 - p) log1p(-p)`` with ``0 log 0 = 0`` (so 0 at
        ``p = 0`` and ``p = 1``), divided by ``log(base)``.
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = np.where(p == 0, 0.0, p * np.log(p))
        negative = np.where(p == 1, 0.0, (1.0 - p) * np.log1p(-p))
    return _result(_in_base(-positive - negative, base))


def entropy_from_logits(logits, axis=-1, base=None):
    """Entropy of ``softmax(logits)`` along an axis.

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities.
    axis : int, optional
        Class axis (default: last).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``sum(softmax(x) * -log_softmax(x), axis)`` divided by ``log(base)``,
        a term being 0 where the softmax is exactly 0 (so -inf logits
        contribute nothing).  Rows that :func:`log_softmax` makes NaN (all
        -inf, or containing +inf) give NaN.
    """
    x = np.asarray(logits, dtype=np.float64)
    ls = log_softmax(x, axis=axis)
    with np.errstate(invalid="ignore", over="ignore"):
        probs = np.exp(ls)
        terms = np.where(probs == 0, 0.0, probs * -ls)
        h = np.sum(terms, axis=axis)
    return _result(_in_base(h, base))


def perplexity(logits, target, *, weight=None, ignore_index=-100,
               label_smoothing=0.0):
    """Perplexity, ``exp`` of the mean cross-entropy.

    Parameters
    ----------
    logits, target, weight, ignore_index, label_smoothing
        As for :func:`cross_entropy` (classes on the last axis).

    Returns
    -------
    numpy.float64
        ``exp(cross_entropy(logits, target, ..., reduction="mean"))``; NaN
        when the mean is NaN (e.g. every row ignored).
    """
    loss = cross_entropy(logits, target, weight=weight,
                         ignore_index=ignore_index, reduction="mean",
                         label_smoothing=label_smoothing)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.float64(np.exp(loss))


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
    return _result(_reduce(losses, losses.size, reduction))


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
    """
    _check_reduction(reduction)
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


def binary_cross_entropy_with_logits(logits, target, *, weight=None,
                                     pos_weight=None, reduction="mean"):
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
    Evaluated as PyTorch does, without overflow for any finite ``x``::

        (1 - y) * x + L * (log1p(exp(-|x|)) + max(-x, 0)),
        L = 1 + (pos_weight - 1) * y.

    For very negative ``x`` with ``y = 0`` the two terms cancel, so the
    small result has an absolute (not relative) error of a few ulps of
    ``|x|``, as in PyTorch.
    """
    _check_reduction(reduction)
    x, y = _binary_inputs(logits, target)
    w = _elementwise_weight(weight, x.shape)
    big_l = _log_weight(pos_weight, y)
    with np.errstate(invalid="ignore", over="ignore"):
        softplus_neg = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0.0)
        if big_l is not None:
            softplus_neg = big_l * softplus_neg
        losses = w * ((1.0 - y) * x + softplus_neg)
    return _elementwise_reduce(losses, reduction)


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------

def _grad_scale(reduction, denominator, grad_output, shape):
    """The factor ``g`` multiplying each row's (or element's) gradient.

    ``"none"``: `grad_output` broadcast to `shape` (default ones).
    ``"sum"``: `grad_output` (a scalar, default 1).  ``"mean"``:
    ``grad_output / denominator`` (inf or NaN for a zero denominator).
    """
    if reduction == "none":
        if grad_output is None:
            return np.ones(shape, dtype=np.float64)
        return np.broadcast_to(np.asarray(grad_output, dtype=np.float64),
                               shape)
    g = np.float64(1.0) if grad_output is None else np.asarray(
        grad_output, dtype=np.float64)
    if g.ndim != 0:
        g = g.reshape(())  # a one-element array; anything else raises
    if reduction == "sum":
        return g
    with np.errstate(divide="ignore", invalid="ignore"):
        return g / np.float64(denominator)


def cross_entropy_grad(logits, target, *, weight=None, ignore_index=-100,
                       reduction="mean", label_smoothing=0.0,
                       grad_output=None):
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
    """
    _check_reduction(reduction)
    x = np.asarray(logits, dtype=np.float64)
    n_classes = x.shape[-1]
    batch_shape = x.shape[:-1]
    w = _class_weights(weight, n_classes)
    eps = float(label_smoothing)

    raw_target = np.asarray(target)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = softmax(x)
        if np.issubdtype(raw_target.dtype, np.integer):
            safe_t, ignored, w_t = _class_index_rows(raw_target, ignore_index,
                                                     w)
            rows = np.zeros(x.shape, dtype=np.float64)
            if eps != 1.0:
                onehot = np.arange(n_classes) == safe_t[..., None]
                rows = rows + ((1.0 - eps) * w[safe_t])[..., None] * (
                    p - onehot)
            if eps != 0.0:
                rows = rows + (eps / n_classes) * (np.sum(w) * p - w)
            denominator = np.sum(w_t)
        else:
            q = np.asarray(raw_target, dtype=np.float64)
            if q.shape != x.shape:
                raise ValueError(
                    f"probability target shape {q.shape} != logits shape "
                    f"{x.shape}")
            if eps != 0.0:
                q = q * (1.0 - eps) + eps / n_classes
            wq = np.where(q == 0, 0.0, w * q)
            rows = np.sum(wq, axis=-1, keepdims=True) * p - wq
            ignored = np.zeros(batch_shape, dtype=bool)
            denominator = int(np.prod(batch_shape))
        g = _grad_scale(reduction, denominator, grad_output, batch_shape)
        grad = np.asarray(g)[..., None] * rows
        grad = np.where(ignored[..., None], 0.0, grad)
    return grad


# PyTorch's floor for x * (1 - x) in the BCE backward is the float32 constant
# 1e-12f, i.e. 9.999999960041972e-13 as a double.
_BCE_GRAD_FLOOR = np.float64(np.float32(1e-12))


def binary_cross_entropy_grad(probs, target, *, weight=None,
                              reduction="mean", grad_output=None):
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
    """
    _check_reduction(reduction)
    x, y = _binary_inputs(probs, target)
    w = _elementwise_weight(weight, x.shape)
    g = _grad_scale(reduction, x.size, grad_output, x.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(
            g * w * (x - y) / np.maximum(x * (1.0 - x), _BCE_GRAD_FLOOR),
            dtype=np.float64)


def _sigmoid(x):
    """Logistic sigmoid without overflow: ``exp`` only of ``-|x|``."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy_with_logits_grad(logits, target, *, weight=None,
                                          pos_weight=None, reduction="mean",
                                          grad_output=None):
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
    """
    _check_reduction(reduction)
    x, y = _binary_inputs(logits, target)
    w = _elementwise_weight(weight, x.shape)
    g = _grad_scale(reduction, x.size, grad_output, x.shape)
    sig = _sigmoid(x)
    with np.errstate(invalid="ignore", over="ignore"):
        if pos_weight is None:
            d = sig - y
        else:
            pw = np.broadcast_to(np.asarray(pos_weight, dtype=np.float64),
                                 x.shape)
            d = _log_weight(pos_weight, y) * sig - pw * y
        return np.asarray(g * w * d, dtype=np.float64)


# ---------------------------------------------------------------------------
# Evaluation metrics (xent.evaluate)
# ---------------------------------------------------------------------------

__all__ += ["evaluate", "target_rank"]


def target_rank(logits, target):
    """Rank of each row's target logit: how many logits are not ``<=`` it.

    Parameters
    ----------
    logits : array_like, shape (N, C)
    target : array_like of int, shape (N,)
        Class indices in ``[0, C)``.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        ``#{j : not (x[j] <= x[t])}``: the logits strictly greater than the
        target's, plus the NaN ones. Ties do not count (a target tied for the
        largest logit has rank 0, so top-1 counts it correct); a NaN target
        has rank C (never correct for any k <= C).
    """
    x = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target).astype(np.int64)
    x_t = _gather(x, t)
    with np.errstate(invalid="ignore"):
        return np.sum(~(x <= x_t[:, None]), axis=-1).astype(np.int64)


def evaluate(logits, target, *, topk=(1, 5), weight=None, ignore_index=-100):
    """Loss, perplexity, accuracies and predictive entropy of a classifier.

    Parameters
    ----------
    logits : array_like, shape (..., C)
        Unnormalised scores, classes on the last axis.
    target : array_like of int, shape (...)
        Class indices; rows equal to ``ignore_index`` are left out of every
        metric (they are only counted in ``ignored``).
    topk : sequence of int, optional
        The k of each top-k accuracy.
    weight : array_like, shape (C,), optional
        Class weights: they weight the loss (and so the perplexity) as in
        :func:`cross_entropy`; accuracies and entropy are plain means over
        the counted rows, unweighted.

    Returns
    -------
    dict
        ``loss``: ``cross_entropy(..., reduction="mean")`` (weighted mean);
        ``perplexity``: ``exp(loss)``; ``accuracy``: fraction of counted rows
        whose :func:`target_rank` is 0; ``top{k}_accuracy``: rank < k;
        ``entropy``: mean of :func:`entropy_from_logits` (nats) over counted
        rows; ``count``: rows counted; ``ignored``: rows equal to
        ``ignore_index``. With no row counted the means are NaN.
    """
    x = np.asarray(logits, dtype=np.float64)
    n_classes = x.shape[-1]
    x = x.reshape(-1, n_classes)
    t = np.asarray(target).astype(np.int64).reshape(-1)
    kept = t != ignore_index
    x, t = x[kept], t[kept]
    if np.any((t < 0) | (t >= n_classes)):
        raise IndexError("target class index out of range")
    w = _class_weights(weight, n_classes)[t]
    count = int(t.size)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        row_loss = w * _gather(-log_softmax(x), t)
        loss = np.sum(row_loss) / np.sum(w)
        rank = target_rank(x, t)
        report = {"loss": float(loss), "perplexity": float(np.exp(loss)),
                  "accuracy": float(np.mean(rank < 1)) if count else float("nan")}
        for k in topk:
            report[f"top{int(k)}_accuracy"] = (float(np.mean(rank < k)) if count
                                                else float("nan"))
        entropy = entropy_from_logits(x) if count else np.zeros(0)
        report["entropy"] = float(np.mean(entropy)) if count else float("nan")
    report["count"] = count
    report["ignored"] = int(np.sum(~kept))
    return report


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


def linear_cross_entropy(hidden, weight, target, *, bias=None, ignore_index=-100,
                         reduction="mean", label_smoothing=0.0, softcap=None):
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

    Returns
    -------
    numpy.ndarray or numpy.float64
    """
    _, _, z = _linear_logits(hidden, weight, bias, softcap)
    return cross_entropy(z, target, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing)


def linear_cross_entropy_grad(hidden, weight, target, *, bias=None, ignore_index=-100,
                              reduction="mean", label_smoothing=0.0, softcap=None,
                              grad_output=None):
    """Gradients of :func:`linear_cross_entropy`: ``(grad_hidden, grad_weight[, grad_bias])``.

    By the chain rule through the materialised logits: with ``G`` the gradient of
    :func:`cross_entropy` with respect to the (capped) logits, times ``1 - tanh^2`` when
    capped, ``grad_hidden = G @ weight``, ``grad_weight = G.T @ hidden``,
    ``grad_bias = G.sum(0)`` (batch axes flattened). PyTorch's autograd gives the same.
    """
    h, w, z = _linear_logits(hidden, weight, bias, softcap)
    g = cross_entropy_grad(z, target, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing, grad_output=grad_output)
    if softcap is not None:
        with np.errstate(invalid="ignore"):  # an entry of 0 stays 0 (ignored rows)
            g = np.where(g == 0, 0.0, g * (1.0 - (z / softcap) ** 2))
    n_rows = int(np.prod(g.shape[:-1], dtype=np.int64))
    g2 = g.reshape(n_rows, w.shape[0])
    grads = ((g2 @ w).reshape(h.shape), g2.T @ h.reshape(n_rows, w.shape[1]))
    if bias is not None:
        grads += (g2.sum(axis=0),)
    return grads
