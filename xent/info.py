"""Information quantities of probability distributions, from self-information to KL divergence.

Distributions lie on ``axis`` (default: the last); all other axes are batch axes. Results are
in nats, or in the unit of ``base`` (2 for bits). float16, float32 and float64 inputs; sums
accumulate in double. An input that is not a distribution (a negative or NaN entry, a row
that does not sum to 1 within :data:`SUM_TOLERANCE`) raises ValueError naming its row, unless
``normalize=True`` asks for each row to be divided by its sum (as ``scipy.stats.entropy``
does), which xent does without copying the input.
"""

import numbers

import numpy as np

from . import _check, _kernels
from . import reference as _reference
from ._multiclass import cross_entropy
from ._threads import get_num_threads, shares_cpus
from ._validation import (
    as_rows,
    bool_option,
    check_axis,
    check_enabled,
    compute_dtype,
    first_outside_unit,
    float_array,
)

__all__ = [
    "self_information",
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "binary_entropy",
    "entropy_from_logits",
    "perplexity",
    "SUM_TOLERANCE",
]

#: How far from 1 a row's sum may be, per input dtype, before it is not a distribution.
SUM_TOLERANCE = {
    np.dtype(np.float16): 1e-2,
    np.dtype(np.float32): 1e-4,
    np.dtype(np.float64): 1e-8,
}

_Dist = _kernels.Dist
_Element = _kernels.Element
_loss_cross_entropy = cross_entropy  # the loss of logits; this module's cross_entropy is of
# two distributions


def _log_base(base):
    """The divisor turning nats into the unit of ``base``: log(base)."""
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise TypeError(f"base must be a positive number or None, got {base!r}")
    base = float(base)
    if not (base > 0 and base != 1 and np.isfinite(base)):
        raise ValueError(f"base must be positive, finite and not 1, got {base!r}")
    return np.log(base)


def _distributions(p, name, axis, dtype=None):
    """(array, batch shape, (N, C) rows in the compute dtype) of distributions on ``axis``."""
    a = float_array(p, name)
    if axis is None:  # SciPy's axis=None: one distribution of all the entries
        moved = a.reshape(-1)
    else:
        moved = np.moveaxis(a, check_axis(axis, a.ndim), -1)
    if moved.shape[-1] == 0:
        raise ValueError(f"{name} has shape {a.shape}: its distribution axis is empty")
    compute = dtype or compute_dtype(a.dtype)
    return a, moved.shape[:-1], as_rows(moved, compute)


def _validate(name, sums, mins, batch, dtype, normalize):
    """Raise ValueError for the first row that is not a distribution (or cannot be made one)."""
    with np.errstate(invalid="ignore"):
        if normalize:
            bad = ~(mins >= 0) | ~(sums > 0) | ~np.isfinite(sums)
        else:
            bad = ~(mins >= 0) | ~(np.abs(sums - 1) <= SUM_TOLERANCE[dtype])
    if not bad.any():
        return
    row = int(np.argmax(bad))
    where = ", ".join(str(int(i)) for i in np.unravel_index(row, batch)) if batch else ""
    what = f"{name}[{where}]" if batch else name
    if not mins[row] >= 0:
        reason = f"has an entry {float(mins[row])!r}: probabilities must be >= 0"
    elif normalize:
        reason = f"sums to {float(sums[row])!r}, which cannot be normalised"
    else:
        reason = (
            f"sums to {float(sums[row])!r}, not 1 (tolerance {SUM_TOLERANCE[dtype]:g}); "
            f"pass normalize=True to divide by the sum"
        )
    raise ValueError(f"{what} is not a probability distribution: it {reason}")


def _finish(values, batch, dtype):
    with np.errstate(over="ignore"):
        out = np.asarray(values).astype(dtype, copy=False).reshape(batch)
    return out[()] if out.ndim == 0 else out


def _two_distributions(p, q, axis):
    a, batch, _ = _distributions(p, "p", axis)
    b = float_array(q, "q")
    if b.shape != a.shape:
        raise ValueError(f"q has shape {b.shape}, expected the shape of p {a.shape}")
    compute = np.result_type(compute_dtype(a.dtype), compute_dtype(b.dtype))
    _, _, p_rows = _distributions(a, "p", axis, compute)
    _, _, q_rows = _distributions(b, "q", axis, compute)
    return a, b, batch, p_rows, q_rows


def _dist_sums(kind, p_rows, q_rows, threads):
    sums = np.empty((p_rows.shape[0], 5))
    _kernels.dist_rows(kind, p_rows, q_rows, sums, threads)
    return sums.T  # sum_p, sum_q, total, min_p, min_q


#: With normalize=True, rows whose sum lies outside this range are divided by it before the
#: kernel sums them: there ``sum p log p`` would overflow (p = [1e308]) or its subnormal terms
#: lose their digits (p = [5e-324, 5e-324]).
_SAFE_SUM = (2.0**-900, 2.0**900)


def _normalized_sums(kind, p_rows, q_rows, sums, threads):
    """``sums`` (from :func:`_dist_sums`) with the far-scaled rows recomputed from the rows
    divided by their sums; the normalising formulas give the same answer at any scale."""
    lo, hi = _SAFE_SUM
    with np.errstate(invalid="ignore"):
        far = (sums[0] < lo) | (sums[0] > hi)
        if q_rows is not None:
            far |= (sums[1] < lo) | (sums[1] > hi)
        far &= (sums[0] > 0) & np.isfinite(sums[0])
        if q_rows is not None:
            far &= (sums[1] > 0) & np.isfinite(sums[1])
    if not far.any():
        return sums
    rows = np.flatnonzero(far)
    p = p_rows[rows].astype(np.float64) / sums[0][rows, None]
    q = None if q_rows is None else q_rows[rows].astype(np.float64) / sums[1][rows, None]
    sums = sums.copy()
    sums[:, rows] = _dist_sums(kind, p, q, threads)
    return sums


def _check_rows(name, got, batch, reference_rows, dtype):
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    sample = _check.sample_rows(got.size)
    _check.compare(name, got[sample], reference_rows(sample), dtype, rows=sample)


@shares_cpus
def entropy(p, axis=-1, base=None, normalize=False, *, qk=None, num_threads=None, check=None):
    """Shannon entropy ``-sum p log p`` of distributions along ``axis``, with 0 log 0 = 0.

    With ``qk``, the relative entropy ``sum p log(p / qk)`` instead, as
    ``scipy.stats.entropy(pk, qk)``: ``p`` and ``qk`` are broadcast against each other and
    the result is :func:`kl_divergence`'s. SciPy's positional form ``entropy(pk, qk, base,
    axis)`` is recognised (an array where ``axis`` is expected is ``qk``), with SciPy's
    defaults then (axis 0, both normalised). Called with keywords, xent's defaults hold
    (the last axis, no normalisation): pass ``normalize=True`` for SciPy's numbers on
    unnormalised input.

    Parameters
    ----------
    p : array_like
        Probabilities, float16/float32/float64 (integers promoted to float64).
    axis : int or None, optional
        The distribution axis (default: the last); ``None``: all entries are one
        distribution (SciPy's ``axis=None``).
    base : float, optional
        Logarithm base (default e: nats; 2: bits).
    normalize : bool, optional
        Divide each row by its sum first, instead of requiring it to sum to 1.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute (a sample of) the rows with :mod:`xent.reference`.

    Returns
    -------
    scalar or numpy.ndarray
        One entropy per distribution, in the dtype of ``p``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent.info
    >>> p = np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    >>> np.round(xent.info.entropy(p, base=2), 4)  # bits; 0 log 0 counts 0
    array([1., 2.])
    >>> np.round(xent.info.entropy(p), 4)  # nats
    array([0.6931, 1.3863])

    Counts instead of probabilities, with ``normalize=True``:

    >>> counts = np.array([2.0, 1.0, 1.0])
    >>> round(float(xent.info.entropy(counts, base=2, normalize=True)), 4)
    1.5
    """
    scipy_form = (
        qk is None
        and axis is not None
        and not isinstance(axis, numbers.Integral)
        and np.ndim(axis) >= 1
    )
    if scipy_form:
        # SciPy's entropy(pk, qk, base, axis): shift the positional arguments, and take
        # SciPy's defaults with them (axis 0, pk and qk normalised)
        qk, base, axis = axis, base, (normalize if not isinstance(normalize, bool) else 0)
        normalize = True
    if qk is not None:
        try:
            return _relative_entropy(p, qk, axis, base, normalize, num_threads, check)
        except (TypeError, ValueError) as e:
            if scipy_form:  # name the argument the caller passed
                raise type(e)(f"axis (an array there is SciPy's qk): {e}") from None
            raise
    log_base = _log_base(base)

    normalize = bool_option(normalize, "normalize")
    a, batch, rows = _distributions(p, "p", axis)
    threads = get_num_threads(num_threads)
    sums = _dist_sums(_Dist.DIST_ENTROPY, rows, None, threads)
    _validate("p", sums[0], sums[3], batch, a.dtype, normalize)
    if normalize:
        sums = _normalized_sums(_Dist.DIST_ENTROPY, rows, None, sums, threads)
    sum_p, _, total, _, _ = sums
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (np.log(sum_p) - total / sum_p) if normalize else -total
    result = _finish(h / log_base, batch, a.dtype)
    if check_enabled(check):
        _check_rows(
            "info.entropy",
            result,
            batch,
            lambda s: _reference.entropy(rows[s], base=base, normalize=normalize),
            a.dtype,
        )
    return result


def _relative_entropy(p, qk, axis, base, normalize, num_threads, check):
    """entropy(p, qk=qk): kl_divergence of p and qk broadcast against each other."""
    pk, qk = np.asarray(p), np.asarray(qk)
    if pk.dtype.kind in "iub":
        pk = pk.astype(np.float64)
    if qk.dtype.kind in "iub":
        qk = qk.astype(np.float64)
    try:
        pk, qk = np.broadcast_arrays(pk, qk)
    except ValueError:
        raise ValueError(
            f"qk of shape {qk.shape} does not broadcast against p of shape {pk.shape}"
        ) from None
    return kl_divergence(pk, qk, axis, base, normalize, num_threads=num_threads, check=check)


@shares_cpus
def cross_entropy(p, q, axis=-1, base=None, normalize=False, *, num_threads=None, check=None):
    """Cross-entropy ``H(p, q) = -sum p log q`` between distributions along ``axis``.

    Never below the entropy of ``p`` (Gibbs' inequality), equal to it only when q = p.
    Infinite where q = 0 and p > 0; terms with p = 0 count 0. Parameters as for
    :func:`entropy`, with ``q`` of the shape of ``p``. This is the quantity between two
    distributions; for the loss of logits against labels see :func:`xent.cross_entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent.info
    >>> p = np.array([0.5, 0.5, 0.0])
    >>> q = np.array([0.25, 0.25, 0.5])
    >>> round(float(xent.info.cross_entropy(p, q, base=2)), 4)  # H(p) = 1 bit, D(p || q) = 1
    2.0
    >>> print(xent.info.cross_entropy(q, p, base=2))  # q puts mass where p has none
    inf
    """
    log_base = _log_base(base)
    normalize = bool_option(normalize, "normalize")
    a, b, batch, p_rows, q_rows = _two_distributions(p, q, axis)
    dtype = np.result_type(a.dtype, b.dtype)
    threads = get_num_threads(num_threads)
    sums = _dist_sums(_Dist.DIST_CROSS_ENTROPY, p_rows, q_rows, threads)
    _validate("p", sums[0], sums[3], batch, a.dtype, normalize)
    _validate("q", sums[1], sums[4], batch, b.dtype, normalize)
    if normalize:
        sums = _normalized_sums(_Dist.DIST_CROSS_ENTROPY, p_rows, q_rows, sums, threads)
    sum_p, sum_q, total, _, _ = sums
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (np.log(sum_q) - total / sum_p) if normalize else -total
    result = _finish(h / log_base, batch, dtype)
    if check_enabled(check):
        _check_rows(
            "info.cross_entropy",
            result,
            batch,
            lambda s: _reference.cross_entropy_dist(
                p_rows[s], q_rows[s], base=base, normalize=normalize
            ),
            dtype,
        )
    return result


@shares_cpus
def kl_divergence(p, q, axis=-1, base=None, normalize=False, *, num_threads=None, check=None):
    """Kullback-Leibler divergence ``sum p log(p / q)`` along ``axis``.

    SciPy's ``rel_entr`` conventions per term: 0 where p = 0, +inf where p > 0 and q = 0.
    Parameters as for :func:`cross_entropy`. Never negative for distributions, 0 for q = p.

    Examples
    --------
    >>> import numpy as np
    >>> import xent.info
    >>> p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    >>> q = np.array([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5]])
    >>> np.round(xent.info.kl_divergence(p, q, base=2), 4)
    array([1., 0.])
    >>> round(float(xent.info.kl_divergence(p[0], q[0])), 4)  # nats: log 2
    0.6931
    """
    log_base = _log_base(base)
    normalize = bool_option(normalize, "normalize")
    a, b, batch, p_rows, q_rows = _two_distributions(p, q, axis)
    dtype = np.result_type(a.dtype, b.dtype)
    threads = get_num_threads(num_threads)
    sums = _dist_sums(_Dist.DIST_KL, p_rows, q_rows, threads)
    _validate("p", sums[0], sums[3], batch, a.dtype, normalize)
    _validate("q", sums[1], sums[4], batch, b.dtype, normalize)
    if normalize:
        sums = _normalized_sums(_Dist.DIST_KL, p_rows, q_rows, sums, threads)
    sum_p, sum_q, total, _, _ = sums
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (total / sum_p + np.log(sum_q) - np.log(sum_p)) if normalize else total
    result = _finish(kl / log_base, batch, dtype)
    if check_enabled(check):
        _check_rows(
            "info.kl_divergence",
            result,
            batch,
            lambda s: _reference.kl_divergence(
                p_rows[s], q_rows[s], base=base, normalize=normalize
            ),
            dtype,
        )
    return result


def _elementwise(kind, name, p, base, num_threads):
    log_base = _log_base(base)
    a = float_array(p, "p", min_ndim=0)
    threads = get_num_threads(num_threads)
    compute = compute_dtype(a.dtype)
    shaped = a.reshape(1) if a.ndim == 0 else a
    rows = as_rows(shaped, compute)
    out = np.empty(rows.shape, dtype=compute)
    _, bad = _kernels.elementwise(
        kind, rows, None, None, None, out, None, 1.0 / log_base, None, threads
    )
    if bad:
        raise ValueError(f"{name}: {first_outside_unit('p', a)}: not a probability")
    with np.errstate(over="ignore"):
        result = out.astype(a.dtype, copy=False).reshape(a.shape)
    return result[()] if result.ndim == 0 else result


@shares_cpus
def self_information(p, base=None, *, num_threads=None):
    """Surprisal ``-log p`` of each probability (``inf`` for p = 0).

    Parameters
    ----------
    p : array_like
        Probabilities in [0, 1], any shape; others raise ValueError.
    base : float, optional
        Logarithm base (default e: nats; 2: bits).
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.

    Returns
    -------
    scalar or numpy.ndarray
        The shape and dtype of ``p``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent.info
    >>> p = np.array([0.5, 0.25, 0.125, 0.0])
    >>> np.round(xent.info.self_information(p, base=2), 4)  # in bits
    array([ 1.,  2.,  3., inf])
    >>> np.round(xent.info.self_information(p), 4)  # in nats
    array([0.6931, 1.3863, 2.0794,    inf])
    """
    return _elementwise(_Element.ELEMENT_SELF_INFORMATION, "self_information", p, base, num_threads)


@shares_cpus
def binary_entropy(p, base=None, *, num_threads=None):
    """Entropy of a Bernoulli(p) variable, ``-p log p - (1 - p) log(1 - p)``, elementwise.

    Parameters and returns as for :func:`self_information`; 0 at p = 0 and p = 1, and
    exactly 1 bit at p = 1/2 with ``base=2``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent.info
    >>> p = np.array([0.0, 0.1, 0.5, 1.0])
    >>> np.round(xent.info.binary_entropy(p, base=2), 4)
    array([0.   , 0.469, 1.   , 0.   ])
    """
    return _elementwise(_Element.ELEMENT_BINARY_ENTROPY, "binary_entropy", p, base, num_threads)


@shares_cpus
def entropy_from_logits(logits, axis=-1, base=None, *, num_threads=None, check=None):
    """Entropy of ``softmax(logits)`` along ``axis``, without forming the probabilities.

    The predictive entropy of a classifier: per row ``sum_k p_k (lse - x_k)`` with
    ``p = softmax(x)``; -inf logits contribute 0. Parameters as for :func:`entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> import xent.info
    >>> logits = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, -np.inf]])
    >>> np.round(xent.info.entropy_from_logits(logits, base=2), 4)  # uniform: 2 bits
    array([2.    , 0.9602])
    >>> row = xent.softmax(logits[1])
    >>> print(np.allclose(xent.info.entropy_from_logits(logits[1]), xent.info.entropy(row)))
    True
    """
    log_base = _log_base(base)
    a, batch, rows = _distributions(logits, "logits", axis)
    threads = get_num_threads(num_threads)
    out = np.empty(rows.shape[0], dtype=rows.dtype)
    _kernels.softmax_entropy_rows(rows, out, threads)
    result = _finish(out / log_base, batch, a.dtype)
    if check_enabled(check):
        _check_rows(
            "info.entropy_from_logits",
            result,
            batch,
            lambda s: _reference.entropy_from_logits(rows[s], base=base),
            a.dtype,
        )
    return result


@shares_cpus
def perplexity(
    logits,
    target,
    *,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    num_threads=None,
    check=None,
):
    """Perplexity ``exp(mean cross-entropy)`` of logits against targets.

    Arguments as for :func:`xent.cross_entropy` (whose mean it exponentiates); returns a
    scalar in the logits' dtype (NaN when every row is ignored).

    Examples
    --------
    >>> import numpy as np
    >>> import xent.info
    >>> logits = np.zeros((3, 10))  # a uniform guess among 10 classes
    >>> target = np.array([1, 4, 7])
    >>> round(float(xent.info.perplexity(logits, target)), 6)
    10.0

    Ignored rows (padding) are left out, as in :func:`xent.cross_entropy`:

    >>> logits[0, 1] = 5.0
    >>> round(float(xent.info.perplexity(logits, target)), 4)
    4.7336
    >>> round(float(xent.info.perplexity(logits, np.array([-100, 4, 7]))), 4)
    10.0
    """
    loss = _loss_cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction="mean",
        label_smoothing=label_smoothing,
        num_threads=num_threads,
        check=check,
    )
    with np.errstate(over="ignore"):
        return type(loss)(np.exp(np.float64(loss)))
