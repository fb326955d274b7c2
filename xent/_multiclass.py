"""Functions of class scores along one axis: logsumexp, log_softmax, softmax, cross_entropy
(and its gradient) and nll_loss.

Conventions shared by every function of xent:

* Classes lie on the last axis (``axis`` where a function takes one); all leading axes are
  batch axes. (PyTorch puts classes on axis 1 of a multi-dimensional input.)
* float32 and float64 inputs are computed in their own precision with double accumulators;
  float16 and bfloat16 (``ml_dtypes.bfloat16``) are computed in float32 and returned in their
  own dtype. ``logsumexp``, ``log_softmax``, ``softmax``, and ``cross_entropy`` and
  ``cross_entropy_with_grad`` with class indices read them directly, a few rows or a chunk
  of a row at a time widened in cache (rows shorter than 262,144 classes), and write half
  results directly; other functions convert them to float32 first. Other dtypes are refused.
* Any row stride is read in place, read-only arrays and memory maps included; an input whose
  class axis is not contiguous is copied once.
* Inputs are never modified, unless passed as ``out=``.

Arguments are checked by :mod:`xent._validation`; the kernels are xent/_kernels.pyx.
"""

import functools
import math

import numpy as np

from . import _check, _kernels
from . import _sample_weight as _sw
from . import reference as _reference
from ._threads import get_num_threads, shares_cpus
from ._validation import (
    as_rows,
    bad_label_message,
    bool_option,
    check_axis,
    check_enabled,
    check_ignore_index,
    check_label_smoothing,
    check_loss,
    check_reduction,
    class_targets,
    class_weights,
    compute_dtype,
    float_array,
    grad_output_factors,
    gradient_array,
    half_rows,
    input_array,
    out_array,
    probability_rows,
    reduce_loss,
    safe_divide,
    store,
    writable_rows,
)

__all__ = [
    "CrossEntropyInputs",
    "check_z_loss",
    "cross_entropy",
    "cross_entropy_grad_hess",
    "cross_entropy_with_grad",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
]


# ---- SciPy's conventions: any array-like, integers promoted, several axes ------------------


def scipy_array(x, name, promote_to=None):
    """x as a float array the kernels take, as SciPy's special functions accept it: Python
    scalars and lists, integers and bools promoted to float64 (to promote_to if given); 0-d
    allowed. Complex input is refused with a TypeError naming the argument, and so are masked
    arrays and np.matrix (input_array's rules)."""
    a = input_array(x, name)
    if a.dtype.kind == "c":
        raise TypeError(
            f"{name} is complex ({a.dtype}): xent computes with real values only "
            f"(pass {name}.real, or use scipy for complex log-sum-exp)"
        )
    if a.dtype.kind in "iub":
        a = a.astype(promote_to if promote_to is not None else np.float64)
    return float_array(a, name, min_ndim=0)


def check_axes(axis, ndim):
    """The sorted tuple of axes to reduce: axis None (all), an int, or a tuple of ints."""
    if ndim == 0:  # a 0-d input reduces as a 1-element vector
        if axis is None or axis == () or axis in (0, -1) or axis in ((0,), (-1,)):
            return ()
        raise np.exceptions.AxisError(axis if isinstance(axis, int) else str(axis), 0, "axis")
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        axes = tuple(check_axis(ax, ndim) for ax in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"axis {axis!r} repeats an axis")
        return tuple(sorted(axes))
    return (check_axis(axis, ndim),)


def reduce_axes_last(a, axes):
    """(array, axis): a's axes to reduce as one axis, for a one-axis kernel. A single axis
    stays in place (the fast path moves it itself); several are moved last and reshaped
    into one (a copy where their layout needs it); a 0-d a becomes a 1-element vector."""
    if a.ndim == 0:
        return a.reshape(1), 0
    if len(axes) == 1:
        return a, axes[0]
    moved = np.moveaxis(a, axes, tuple(range(a.ndim - len(axes), a.ndim)))
    # the merged length spelled out: -1 is ambiguous when another axis is empty
    merged = int(np.prod([a.shape[ax] for ax in axes], dtype=np.int64))
    return moved.reshape(moved.shape[: a.ndim - len(axes)] + (merged,)), -1


# ---- logsumexp, log_softmax, softmax --------------------------------------------------------


@shares_cpus
def logsumexp(
    x, axis=-1, b=None, keepdims=False, return_sign=False, *, num_threads=None, check=None
):
    """Logarithm of the sum of exponentials along an axis, as ``scipy.special.logsumexp``.

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 values; integers and bools are promoted to
        float64, Python scalars and lists accepted. Complex input raises TypeError.
    axis : int, tuple of ints or None, optional
        Axis or axes to reduce (default: the last, xent's class axis; ``None``: all, SciPy's
        default). A single axis is the fast path; several are moved last and reshaped once.
    b : array_like, optional
        Weights broadcast against ``x``: ``log(sum(b * exp(x)))``. Negative weights need
        ``return_sign=True`` when the sum is negative (without it the result is NaN, as
        SciPy's). Entries with ``b == 0`` are left out, even where ``x`` is +inf.
    keepdims : bool, optional
        Keep the reduced axes with length 1. (Passed positionally as the third argument, a
        bool is taken as ``keepdims``, xent's earlier signature.)
    return_sign : bool, optional
        Also return the sign of the sum (+1, -1, or 0 for a sum of exactly 0).
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` and raise :class:`xent.CheckError` on
        disagreement (``None``: only if ``XENT_CHECK=1``).

    Returns
    -------
    numpy.ndarray or scalar (and the sign, with ``return_sign``)
        In the dtype of ``x`` (of ``x`` and ``b`` together when ``b`` is given); a scalar
        when every axis is reduced without ``keepdims``.

    Notes
    -----
    SciPy's rules: a row containing +inf gives +inf, a row of all -inf (or an empty axis)
    gives -inf, and a NaN anywhere in the row gives NaN. The row's maximum's own terms are
    summed apart from the others, so a result near 0 keeps its relative accuracy:
    ``logsumexp([0, -40])`` is 4.248354255291589e-18. With ``b``, every row is computed in
    float64 (and rounded once to the result's dtype): the terms ``b exp(x - m)``, ``m`` the
    row's largest ``x`` with a weight not 0, in double-double, summed in double-double (and
    exactly where positive and negative weights cancel), the log in double-double, so the
    result is within a few ulp of the exact value (measured against mpmath: weights of
    either sign, sums cancelling to 1e-12 of their terms, subnormal and huge weights).
    ``logsumexp([0, 1e-300], b=[1, -1], return_sign=True)`` is ``(-690.7755278982137,
    -1.0)``, the exact value. Where ``m`` and ``log(sum)`` cancel (a result much smaller
    than ``|m|``), about ``2**-95 |m|`` is left as an absolute error. The result's dtype is
    ``x``'s and ``b``'s promoted as numpy promotes them (float64 for integers alone), as
    SciPy's.

    A float32 (or half-precision) result below 1 in magnitude is computed again from the
    row in float64: where a negative maximum and the log of the sum cancel (log-probabilities
    give about 1e-8), float32 terms would leave it only about 5e-7 absolute, not 1e-6
    relative. That costs a row about ten times its float32 time (``logsumexp`` of
    normalised float32 log-probabilities: all of them); other rows pay nothing. In float64,
    a result smaller than half its row's negative maximum (``log P(A)`` of a likely event
    from log-probabilities) is computed again in double-double arithmetic, within an ulp:
    the double sum would leave it an ulp or two of the maximum, thousands of its own. Not
    below ``2**-45`` of the maximum, where the result is the rounding residue of an already
    normalised row (about 1e-17) and is left as the double kernel gives it.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])
    >>> np.round(xent.logsumexp(x), 4)  # one value per row; 1000 does not overflow
    array([   3.4076, 1001.0986])
    >>> xent.logsumexp(x, keepdims=True).shape
    (2, 1)
    >>> np.round(xent.logsumexp(x, axis=0), 4)
    array([1000., 1000., 1000.])

    A row of all -inf gives -inf, as SciPy's:

    >>> print(xent.logsumexp(np.array([-np.inf, -np.inf])))
    -inf
    """
    if isinstance(b, (bool, np.bool_)):
        b, keepdims = None, bool(b)  # xent's earlier logsumexp(x, axis, keepdims)
    a = scipy_array(x, "x")
    keepdims = bool_option(keepdims, "keepdims")
    return_sign = bool_option(return_sign, "return_sign")
    threads = get_num_threads(num_threads)
    checking = check_enabled(check)
    if b is not None:
        return _weighted_logsumexp(x, a, axis, b, keepdims, return_sign, threads, checking)
    shape = a.shape
    axes = check_axes(axis, a.ndim)
    rows, ax = reduce_axes_last(a, axes)
    result = _logsumexp_axis(rows, ax, False, threads, checking)
    result = _keep_dims(result, shape, axes, keepdims)
    if return_sign:
        sign = np.where(np.isnan(result), np.nan, np.where(result == -np.inf, 0.0, 1.0))
        sign = sign.astype(np.asarray(result).dtype)
        return result, (sign[()] if sign.ndim == 0 else sign)
    return result


def _keep_dims(result, shape, axes, keepdims):
    """A reduction's result with its reduced axes back (length 1) if keepdims; 0-d: a scalar."""
    result = np.asarray(result)
    if keepdims:
        result = result.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return result[()] if result.ndim == 0 else result


def _weighted_result_dtype(x_dtype, b_dtype):
    """The dtype of logsumexp(x, b=b), SciPy's rule: x's and b's dtypes promoted together
    as numpy does (float32 with int32 is float64, float16 with float16 stays float16), and
    float64 when both are integers or bools."""
    try:
        dtype = np.result_type(x_dtype, b_dtype)
    except TypeError:  # bfloat16 (ml_dtypes) beside a dtype numpy cannot promote it with
        dtype = np.result_type(compute_dtype(x_dtype), compute_dtype(b_dtype))
    return np.dtype(np.float64) if dtype.kind in "iub" else dtype


def _weighted_logsumexp(x, a, axis, b, keepdims, return_sign, threads, checking):
    """logsumexp(a, b=b): log|sum b e^a| and its sign, every row computed in float64 to
    within an ulp or so and rounded once to the result's dtype (row_lse_weighted_dd in
    xent/src/xent_lse_exact.h).
    x is the caller's argument (its dtype decides the result's with b's), a its checked
    float array. Rows with a NaN, +inf or no live entry follow SciPy's rules here."""
    b_given = input_array(b, "b")
    result_dtype = _weighted_result_dtype(input_array(x, "x").dtype, b_given.dtype)
    b = scipy_array(b_given, "b", promote_to=a.dtype)
    try:
        a, b = np.broadcast_arrays(
            a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
        )
    except ValueError:
        raise ValueError(
            f"b of shape {b.shape} does not broadcast against x of shape {a.shape}"
        ) from None
    shape = a.shape
    axes = check_axes(axis, a.ndim)
    rows_a, ax = reduce_axes_last(a, axes)
    rows_b, _ = reduce_axes_last(b, axes)
    rows_a, rows_b = np.moveaxis(rows_a, ax, -1), np.moveaxis(rows_b, ax, -1)
    batch, n = rows_a.shape[:-1], rows_a.shape[-1]
    count = int(np.prod(batch, dtype=np.int64))  # -1 is ambiguous when n is 0
    rows_a = np.ascontiguousarray(rows_a).reshape(count, n)
    rows_b = np.ascontiguousarray(rows_b).reshape(count, n)
    result = np.full(rows_a.shape[0], -np.inf)
    sign = np.zeros(rows_a.shape[0])
    if n and rows_a.shape[0]:
        _kernels.logsumexp_rows_weighted(rows_a, rows_b, result, sign, threads)
        _weighted_special_rows(rows_a, rows_b, result, sign)
    if checking:
        _check_weighted(rows_a, rows_b, result, sign, result_dtype)
    if not return_sign:
        result = np.where(sign < 0, np.nan, result)
    result, sign = result.reshape(batch), sign.reshape(batch)
    with np.errstate(over="ignore"):
        result = _keep_dims(result.astype(result_dtype), shape, axes, keepdims)
    if return_sign:
        return result, _keep_dims(sign.astype(result_dtype), shape, axes, keepdims)
    return result


def _weighted_special_rows(a, b, result, sign):
    """SciPy's rules, in place, for the rows (R, C) that logsumexp_rows_weighted leaves as NaN: a NaN
    weight, or a NaN value with a weight not 0, gives NaN (sign NaN), and so does an
    infinite weight on -inf; +inf values with weights of one sign (or infinite weights)
    give +inf with that sign, of both signs inf - inf, NaN; rows with
    no entry of weight not 0 above -inf are an empty sum, -inf with sign 0."""
    todo = np.flatnonzero(np.isnan(result))
    if not todo.size:
        return
    a, b = a[todo], b[todo]
    live = b != 0
    with np.errstate(invalid="ignore"):
        nan = np.any(np.isnan(b) | (np.isnan(a) & live), axis=-1)
        nan = nan | np.any(np.isinf(b) & (a == -np.inf), axis=-1)  # inf * e^-inf
        up = np.any(((a == np.inf) & (b > 0)) | ((b == np.inf) & (a > -np.inf)), axis=-1)
        down = np.any(((a == np.inf) & (b < 0)) | ((b == -np.inf) & (a > -np.inf)), axis=-1)
    value = np.where(up | down, np.inf, -np.inf)
    value_sign = np.where(up, 1.0, np.where(down, -1.0, 0.0))
    bad = nan | (up & down)
    result[todo] = np.where(bad, np.nan, value)
    sign[todo] = np.where(bad, np.nan, value_sign)


def _check_weighted(a, b, result, sign, dtype):
    """Check mode: the rows' sum of b e^a from xent.reference's log-sum-exps of the positive
    and negative weights' terms, compared as sums scaled by the larger of the two (a
    difference that cancels is then held to the terms' size, not to its own)."""
    sample = _check.sample_rows(a.shape[0])
    a, b = a[sample], b[sample]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = {}
        for name, side in (("pos", b > 0), ("neg", b < 0)):
            logs = np.where(side, a + np.log(np.where(side, np.abs(b), 1.0)), -np.inf)
            logs = np.where(np.isnan(b), np.nan, logs)
            terms[name] = (
                _reference.logsumexp(logs) if a.shape[-1] else np.full(a.shape[0], -np.inf)
            )
        p, q = terms["pos"], terms["neg"]
        top = np.maximum(p, q)
        finite = np.isfinite(top)
        scale = np.where(finite, top, 0.0)
        both_inf = (p == np.inf) & (q == np.inf)  # inf - inf
        expected = np.where(finite, np.exp(p - scale) - np.exp(q - scale), top)
        expected = np.where(both_inf, np.nan, expected)
        got = np.where(
            finite,
            np.where(sign == 0, 0.0, sign * np.exp(result[sample] - scale)),
            result[sample],
        )
    _check.compare("logsumexp", got, expected, dtype, rows=sample)


#: float32 log-sum-exps smaller than this in magnitude are computed again from float64 rows.
#: There a negative max and log(sum) cancel: the float32 kernels' sum of terms is within
#: about 5.5e-7 of its value (the budget of xent_lse.h), which is within 1e-6 of the result
#: only where the result is at least about 0.6 in magnitude. The float64 kernel's terms put
#: the error at an ulp or two of the max; where that is more than 4.8e-7 of the result
#: (below _F32_DEEP of the max: 1.1e-6 was measured at a log P(A) of 1e-9) the row goes on
#: to double-double (row_lse_dd), which leaves about 2^-95 of the max.
_F32_CANCEL_BELOW = 1.0
_F32_DEEP = 2.0**-30


#: float64 log-sum-exps whose magnitude is below half their row's max's (a negative max: the
#: kernel's m + log(sum) cancels, and its error, an ulp or two of |m|, is many of the result)
#: are computed again in double-double (row_lse_dd, about twice the kernel's time an entry),
#: whose error, about 2^-95 |m|, is within 2 ulp of a result down to 2^-45 |m|. Below
#: _F64_RESIDUE |m| it is not tried: such a result is the rounding residue of an already
#: normalised row (log-probabilities, whose logsumexp is about 1e-17), of which double-double
#: would keep about 11 digits, not all, for every row of such an array.
_F64_RESIDUE = 2.0**-45


def _recompute_cancelled(lse, rows_of, threads, compute=np.float32, n_classes=None):
    """Rows whose log-sum-exp (in ``lse``, float32 or float64, one per row in C order) lost
    its relative digits where a negative max and log(sum) cancel, computed again in place.

    float32 (``compute``): below _F32_CANCEL_BELOW in magnitude, again in float64 (and below
    _F32_DEEP of the max in double-double). float64:
    where |lse| < |max| / 2 (only possible below log(C) in magnitude, C = ``n_classes``) and
    above _F64_RESIDUE |max|, in double-double. ``rows_of(index)`` gives the rows at flat row
    indices as an array (k, C). Returns lse."""
    if compute == np.float32:
        near = np.flatnonzero(np.abs(lse) < _F32_CANCEL_BELOW)
        if near.size:
            again = np.empty(near.size, dtype=np.float64)
            rows = np.asarray(rows_of(near), dtype=np.float64)
            _kernels.logsumexp_rows(rows, again, threads)
            # where even the double sum's ulp or two of the max is too much (over 4.8e-7 of
            # the result below 2^-30 of the max): again in double-double
            deep = np.flatnonzero(np.abs(again) < _F32_DEEP * np.abs(_row_max(rows)))
            if deep.size:
                exact = np.empty(deep.size, dtype=np.float64)
                _kernels.logsumexp_rows_exact(np.ascontiguousarray(rows[deep]), exact, threads)
                again[deep] = exact
            lse[near] = again
        return lse
    if n_classes is None or n_classes < 2:
        return lse  # one entry: the result is that entry, exactly
    near = np.flatnonzero(np.abs(lse) < math.log(n_classes))
    if near.size:
        # the maxima: of every row in one reduction where most rows are near (normalised
        # log-probabilities), without gathering them
        if 2 * near.size > lse.size:
            top = -_row_max(rows_of(None)).reshape(-1)[near]
        else:
            top = -_row_max(rows_of(near))
        size = np.abs(lse[near])
        need = near[(top > 0) & (size < top / 2) & (size >= _F64_RESIDUE * top)]
        if need.size:
            again = np.empty(need.size, dtype=np.float64)
            rows = np.ascontiguousarray(rows_of(need), dtype=np.float64)
            _kernels.logsumexp_rows_exact(rows, again, threads)
            lse[need] = again
    return lse


def _row_max(rows):
    """The max of each row (last axis; NaN where the row holds one). Short rows a column at a
    time: numpy's reduction along a short last axis loops a row at a time (534,000 float64 rows
    of 2: 13.9 ms, 0.9 ms this way)."""
    if rows.shape[-1] > 16 or rows.shape[-1] == 0:
        return np.max(rows, axis=-1)
    top = rows[..., 0].copy()
    for j in range(1, rows.shape[-1]):
        np.maximum(top, rows[..., j], out=top)
    return top


def _rows_at(a, index):
    """The rows (last axis) of ``a`` at flat row indices ``index``, as an array (k, C); all
    of them (any shape whose last axis is the rows') where ``index`` is None."""
    if index is None:
        return a
    if a.ndim == 1:  # one row
        return a[None, :][index]
    return a[np.unravel_index(index, a.shape[:-1])]


def _logsumexp_axis(a, ax, keepdims, threads, checking):
    """logsumexp of the checked float array a along the one axis ax (the fast path)."""
    moved = np.moveaxis(a, ax, -1)
    batch, n_classes = moved.shape[:-1], moved.shape[-1]
    compute = compute_dtype(a.dtype)
    half = half_rows(moved) if n_classes else None
    if half is not None:
        result = np.empty(half[0].shape[0], dtype=compute)
        if result.size:
            _kernels.logsumexp_rows_half(*half, result, threads)
    else:
        rows = as_rows(moved, compute)
        result = np.full(rows.shape[0], -np.inf, dtype=compute)
        if rows.shape[0] and n_classes:
            _kernels.logsumexp_rows(rows, result, threads)
    if result.size and n_classes and compute in (np.float32, np.float64):
        _recompute_cancelled(result, lambda i: _rows_at(moved, i), threads, compute, n_classes)
    if checking:
        rows = as_rows(moved, compute)
        sample = _check.sample_rows(rows.shape[0])
        _check.compare(
            "logsumexp", result[sample], _reference.logsumexp(rows[sample]), a.dtype, rows=sample
        )
    with np.errstate(over="ignore"):
        result = result.astype(a.dtype, copy=False).reshape(batch)
    if keepdims:
        result = np.expand_dims(result, ax)
    return result[()] if result.ndim == 0 else result


def _rowwise_transform(name, kernel, reference_fn, x, axis, out, num_threads, check):
    """Shared body of log_softmax and softmax: one kernel call per row, written to ``out``."""
    a = scipy_array(x, "x")
    axes = check_axes(axis, a.ndim)
    if a.ndim == 0 or len(axes) != 1:  # SciPy's axis=None, tuples, 0-d: as one axis, once
        rows, _ = reduce_axes_last(a, axes)
        moved_shape = rows.shape[:-1] + tuple(a.shape[i] for i in axes)
        result = _rowwise_transform(
            name, kernel, reference_fn, rows, -1, None, num_threads, check
        ).reshape(moved_shape)
        result = np.moveaxis(result, tuple(range(a.ndim - len(axes), a.ndim)), axes)
        if out is None:
            return result[()] if result.ndim == 0 else result
        out_array(out, a.shape, a.dtype)
        out[...] = result
        return out
    ax = axes[0]
    threads = get_num_threads(num_threads)
    checking = check_enabled(check)
    if out is None:
        out = np.empty(a.shape, dtype=a.dtype)
    else:
        out_array(out, a.shape, a.dtype)
    compute = compute_dtype(a.dtype)
    if not checking and _half_transform(name, a, ax, out, threads):
        return out
    rows = as_rows(np.moveaxis(a, ax, -1), compute)
    if checking:  # copied before the kernel runs, which may overwrite x (out=x)
        sample = _check.sample_rows(rows.shape[0])
        checked_rows = rows[sample].copy()
    if rows.size:
        target = np.moveaxis(out, ax, -1)
        dest = writable_rows(target, rows)
        if dest is None:
            buffer = np.empty(rows.shape, dtype=compute)
            kernel(rows, buffer, threads)
            store(target, buffer, threads)
        else:
            kernel(rows, dest, threads)
    if checking:
        got = np.moveaxis(out, ax, -1).reshape(rows.shape)[sample]
        _check.compare(name, got, reference_fn(checked_rows), a.dtype, rows=sample)
    return out


@shares_cpus
def log_softmax(x, axis=-1, out=None, *, num_threads=None, check=None):
    """Logarithm of the softmax along an axis: ``x - logsumexp(x, axis, keepdims=True)``.

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 values; integers and bools are promoted to
        float64, Python scalars, lists and 0-d arrays accepted (SciPy's rules); complex
        input raises TypeError.
    axis : int, tuple of ints or None, optional
        Class axis (default: the last). As SciPy's: ``None`` normalises over every entry, a
        tuple over those axes together (moved last and reshaped once: the one-axis case is
        the fast path).
    out : numpy.ndarray, optional
        Where to write the result: same shape and dtype as ``x``, writeable. May be ``x``
        itself for an in-place computation.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` and raise :class:`xent.CheckError` on
        disagreement (``None``: only if ``XENT_CHECK=1``).

    Returns
    -------
    numpy.ndarray
        The result (``out`` if given).

    Notes
    -----
    Computed as ``(x - m) - log(sum(exp(x - m)))`` in double and rounded once. SciPy's rules:
    a row ``[inf, 1]`` gives ``[nan, -inf]``, a row of all -inf gives NaN, NaN spreads to
    the whole row.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    >>> np.round(xent.log_softmax(x), 4)
    array([[-2.4076, -1.4076, -0.4076],
           [-1.0986, -1.0986, -1.0986]], dtype=float32)

    With ``out=x`` the result overwrites the input, allocating nothing:

    >>> xent.log_softmax(x, out=x) is x
    True
    >>> np.round(x[1], 4)
    array([-1.0986, -1.0986, -1.0986], dtype=float32)
    """
    return _rowwise_transform(
        "log_softmax",
        _kernels.log_softmax_rows,
        _reference.log_softmax,
        x,
        axis,
        out,
        num_threads,
        check,
    )


@shares_cpus
def softmax(x, axis=-1, out=None, *, num_threads=None, check=None):
    """Softmax along an axis: ``exp(x - logsumexp(x, axis, keepdims=True))``.

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 values; integers and bools are promoted to
        float64, Python scalars, lists and 0-d arrays accepted (SciPy's rules); complex
        input raises TypeError.
    axis : int, tuple of ints or None, optional
        Class axis (default: the last). As SciPy's: ``None`` normalises over every entry, a
        tuple over those axes together (moved last and reshaped once: the one-axis case is
        the fast path).
    out : numpy.ndarray, optional
        Where to write the result: same shape and dtype as ``x``; may be ``x`` itself.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` and raise :class:`xent.CheckError` on
        disagreement (``None``: only if ``XENT_CHECK=1``).

    Returns
    -------
    numpy.ndarray
        Probabilities (``out`` if given).

    Notes
    -----
    Defined as ``exp(log_softmax(x))``: a row ``[inf, 1]`` gives ``[nan, 0]`` (SciPy gives
    ``[nan, nan]``), a row of all -inf gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> p = xent.softmax(x)
    >>> np.round(p, 4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    >>> np.round(p.sum(axis=-1), 12)
    array([1., 1.])

    Classes on another axis, here the first:

    >>> np.round(xent.softmax(x, axis=0), 4)
    array([[0.7311, 0.8808, 0.9526],
           [0.2689, 0.1192, 0.0474]])
    """
    return _rowwise_transform(
        "softmax", _kernels.softmax_rows, _reference.softmax, x, axis, out, num_threads, check
    )


# ---- losses ---------------------------------------------------------------------------------


class CrossEntropyInputs:
    """The checked arguments of a cross-entropy call, shared by the loss and its gradient."""

    def __init__(
        self, logits, target, weight, ignore_index, reduction, label_smoothing, num_threads
    ):
        x = float_array(logits, "logits")
        n_classes = x.shape[-1]
        if n_classes == 0:
            raise ValueError(f"logits has shape {x.shape}: the class axis (last) is empty")
        self.x, self.batch, self.n_classes = x, x.shape[:-1], n_classes
        self.target = t = input_array(target, "target")
        self.weight = class_weights(weight, n_classes)
        self.ignore_index = check_ignore_index(ignore_index)
        self.reduction = check_reduction(reduction)
        self.smoothing = check_label_smoothing(label_smoothing)
        self.threads = get_num_threads(num_threads)
        self.compute = compute_dtype(x.dtype)
        # float16 and bfloat16 logits are read as they are for class indices (rows is then
        # made only if the gradient or check mode asks for it)
        self.half = half_rows(x) if t.dtype.kind in "iu" else None
        if t.dtype.kind == "f":
            if t.shape != x.shape:
                raise ValueError(
                    f"probability target has shape {t.shape}, expected the logits' shape "
                    f"{x.shape} (for class indices use an integer dtype)"
                )
            if self.ignore_index >= 0:
                raise ValueError(
                    f"ignore_index={self.ignore_index} is not supported with "
                    f"probability targets (as in PyTorch); leave it negative"
                )
            self.probabilities = True
            self.target_rows = probability_rows(t, self.compute)
        elif t.dtype.kind in "iu":
            self.probabilities = False
            self.target_rows = class_targets(t, self.batch, x.shape)
        else:
            raise TypeError(
                f"target must hold integer class indices or floating "
                f"probabilities, got dtype {t.dtype}"
            )

    @functools.cached_property
    def rows(self):
        """The logits as (N, C) rows in the compute dtype (a view unless converted)."""
        return as_rows(self.x, self.compute)

    @property
    def options(self):
        """The options, as xent.reference takes them."""
        return dict(
            weight=self.weight, ignore_index=self.ignore_index, label_smoothing=self.smoothing
        )

    def raise_bad_label(self, row):
        raise IndexError(
            bad_label_message(self.target, int(row), self.n_classes, self.ignore_index)
        )

    def losses(self, sample=None, parts=False):
        """(total, mean's denominator, row losses or None), over all rows or a sample.

        With ``parts``, the total and the denominator are arrays of doubles whose exact sums
        they are, unrounded (see ``xent_exact_parts``), to be summed with other blocks' parts.
        """
        target = self.target_rows if sample is None else self.target_rows[sample]
        row_loss = (
            np.empty(target.shape[0], dtype=self.compute)
            if (self.reduction == "none" or sample is not None)
            else None
        )
        options = (self.weight, self.ignore_index, self.smoothing, False, row_loss, self.threads)
        if sample is None and self.half is not None:
            total, weight_sum, bad = _kernels.index_loss_half(
                *self.half, target, *options, parts=parts
            )
        else:
            rows = self.rows if sample is None else self.rows[sample]
            if self.probabilities:
                total = _kernels.probability_loss(
                    rows, target, self.weight, self.smoothing, row_loss, self.threads, parts=parts
                )
                return total, rows.shape[0], row_loss
            total, weight_sum, bad = _kernels.index_loss(rows, target, *options, parts=parts)
        if bad >= 0:
            self.raise_bad_label(bad)
        return total, weight_sum, row_loss

    def check_loss(self, name, result):
        """Check mode for the loss (its rows must still hold the logits)."""
        check_loss(
            name,
            result,
            self.reduction,
            self.rows.shape[0],
            lambda s: self.losses(s)[2],
            lambda s: _reference.cross_entropy(
                self.rows[s], self.target_rows[s], reduction="none", **self.options
            ),
            lambda: _reference.cross_entropy(
                self.rows, self.target_rows, reduction=self.reduction, **self.options
            ),
            self.x.dtype,
        )


@shares_cpus
def cross_entropy(
    logits,
    target,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    sample_weight=None,
    z_loss=0.0,
    return_lse=False,
    num_threads=None,
    check=None,
):
    """Cross-entropy between logits and targets, with PyTorch's ``F.cross_entropy`` semantics.

    Parameters
    ----------
    logits : array_like, shape (..., C)
        Unnormalised scores, float16/bfloat16/float32/float64; classes on the last axis.
    target : array_like
        Integer class indices of shape ``(...)`` (any integer dtype), or floating class
        probabilities of shape ``(..., C)``, computed in the logits' dtype (a nonzero
        probability too small for it is kept as its smallest subnormal, never rounded to 0).
    weight : array_like, shape (C,), optional
        Per-class weights.
    ignore_index : int, optional
        Class-index rows with this target contribute 0 to the loss and to the mean's
        denominator (default -100). Probability targets have no ignored rows; there, as in
        PyTorch, a non-negative ``ignore_index`` is an error.
    reduction : {"mean", "sum", "none"}, optional
        ``"none"``: per-row losses of shape ``(...)``. ``"sum"``: their sum. ``"mean"``: with
        class indices, the sum divided by the total weight of the non-ignored rows (NaN when
        every row is ignored); with probabilities, divided by the number of rows.
    label_smoothing : float, optional
        In [0, 1]: the target is mixed with the uniform distribution, as in PyTorch.
    sample_weight : array_like, shape (...), optional
        One weight per row, scikit-learn's: ``"none"`` returns ``s_i l_i``, ``"sum"`` their
        sum, ``"mean"`` that sum divided by ``sum_i s_i w[t_i]`` over the non-ignored rows
        (``sum_i s_i`` without class weights or with probabilities), summed exactly.
    z_loss : float, optional
        Adds ``z_loss * lse**2`` per row, ``lse = logsumexp(logits_row)`` (PaLM's auxiliary
        loss, which keeps the log-normaliser near 0), unweighted by class weights. Ignored
        rows add nothing; with ``"mean"`` the z-loss terms are divided by the number of rows
        not ignored (the cross-entropy part keeps its own denominator, the total weight), as
        Liger-Kernel does. Default 0: none.
    return_lse : bool, optional
        Also return the per-row log-sum-exp (shape ``(...)``, the logits' dtype). Either
        option costs one more read of the logits (about the time of the loss itself); the
        loss without them is unchanged to the bit.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` (rows sampled when many) and raise
        :class:`xent.CheckError` on disagreement.

    Returns
    -------
    scalar or numpy.ndarray
        In the dtype of ``logits``. Sums are the exact sums of the per-row float64 losses
        (and weights), rounded once: the same bits on any number of threads and for any
        order of the rows. With ``return_lse``, the
        pair ``(loss, lse)``.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index`` (the first such row is
        named).

    Notes
    -----
    Per row, with ``nll_j = -log_softmax(x)_j``: ``(1 - eps) w[t] nll_t + eps/C sum_j w_j
    nll_j`` for class indices, ``sum_j w_j q_j nll_j`` with ``q = (1 - eps) p + eps/C`` for
    probabilities. Where PyTorch returns NaN for any row holding +inf, xent follows the
    formula: +inf when the target logit is finite, NaN when it is +inf. A row of all -inf
    gives NaN. A probability of exactly 0 contributes 0 even against a -inf logit (PyTorch:
    NaN).

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    >>> target = np.array([0, 2, 1])
    >>> round(float(xent.cross_entropy(logits, target)), 4)
    0.4832
    >>> np.round(xent.cross_entropy(logits, target, reduction="none"), 4)
    array([0.2413, 0.1096, 1.0986])

    Rows whose target is ``ignore_index`` count for nothing, not even in the mean:

    >>> padded = np.array([0, 2, -100])
    >>> round(float(xent.cross_entropy(logits, padded)), 4)
    0.1755
    >>> round(float(xent.cross_entropy(logits, target, label_smoothing=0.1)), 4)
    0.5965

    Probabilities as targets (soft labels), in the logits' shape:

    >>> soft = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3]])
    >>> round(float(xent.cross_entropy(logits, soft)), 4)
    0.5332
    """
    z_loss, return_lse = check_z_loss(z_loss), bool_option(return_lse, "return_lse")
    if sample_weight is not None:
        if z_loss or return_lse:
            raise ValueError("sample_weight cannot be combined with z_loss or return_lse")
        rows = cross_entropy(
            logits,
            target,
            weight=weight,
            ignore_index=ignore_index,
            reduction="none",
            label_smoothing=label_smoothing,
            num_threads=num_threads,
            check=check,
        )
        sw, denominators = _sample_weight_rows(rows, target, weight, ignore_index, sample_weight)
        return _sw.reduce_weighted(
            rows, sw, denominators, check_reduction(reduction), np.asarray(rows).dtype
        )
    problem = CrossEntropyInputs(
        logits, target, weight, ignore_index, reduction, label_smoothing, num_threads
    )
    total, denominator, row_loss = problem.losses()
    result = reduce_loss(
        total, denominator, row_loss, problem.reduction, problem.batch, problem.x.dtype
    )
    if check_enabled(check):
        problem.check_loss("cross_entropy", result)
    if z_loss or return_lse:  # the z-loss and log-sum-exp options, combined last
        lse = _row_logsumexp(problem)
        if z_loss:
            result = _add_z_loss(problem, total, denominator, row_loss, lse, z_loss)
        if return_lse:
            return result, _lse_result(problem, lse)
    return result


@shares_cpus
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
    out=None,
    sample_weight=None,
    num_threads=None,
    check=None,
):
    """Cross-entropy and its gradient with respect to the logits, in one pass.

    Parameters
    ----------
    logits, target, weight, ignore_index, reduction, label_smoothing, sample_weight, num_threads
        As for :func:`cross_entropy` (with ``sample_weight``, row i's gradient is scaled by
        its weight, and for a mean divided by the weighted mean's denominator).
    z_loss : float, optional
        As for :func:`cross_entropy`; the z-loss's gradient, ``2 z_loss lse softmax(x)`` per
        row, is added to the gradient (with ``out=logits`` that costs one copy of the
        logits, which the z-loss's gradient reads after the cross-entropy's overwrote them).
    return_lse : bool, optional
        Also return the per-row log-sum-exp, as a third element.
    grad_output : scalar or array_like, optional
        The gradient flowing into the loss: for ``reduction="none"`` one value per row
        (shape of the batch), else a scalar (default 1).
    out : numpy.ndarray, optional
        Where to write the gradient: the logits' shape and dtype. May be ``logits`` itself,
        which the gradient then overwrites; the call then allocates nothing of size N x C.
    check : bool or None, optional
        Recompute the losses and gradients of (a sample of) the rows with
        :mod:`xent.reference` and raise :class:`xent.CheckError` on disagreement.

    Returns
    -------
    loss : scalar or numpy.ndarray
        Exactly what :func:`cross_entropy` returns.
    grad : numpy.ndarray
        d loss / d logits (``out`` if given): PyTorch's autograd gradient of
        ``F.cross_entropy`` with the same options. Ignored rows get 0. A mean over no
        (non-ignored) row gives a NaN loss and a zero gradient.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> target = np.array([0, 2])
    >>> loss, grad = xent.cross_entropy_with_grad(logits, target)
    >>> round(float(loss), 4)
    0.1755
    >>> np.round(grad, 4)  # (softmax(logits) - one_hot(target)) / 2 rows
    array([[-0.1072,  0.0876,  0.0196],
           [ 0.0247,  0.0272, -0.0519]])

    The gradient may overwrite the logits (``out=logits``), which a training step no longer
    needs, so the call allocates no second array of the logits' size:

    >>> loss, grad = xent.cross_entropy_with_grad(logits, target, reduction="sum", out=logits)
    >>> grad is logits
    True
    >>> np.round(logits[0], 4)
    array([-0.2144,  0.1753,  0.0391])
    """
    z_loss, return_lse = check_z_loss(z_loss), bool_option(return_lse, "return_lse")
    if sample_weight is not None:
        if z_loss or return_lse:
            raise ValueError("sample_weight cannot be combined with z_loss or return_lse")
        reduction = check_reduction(reduction)
        batch = np.shape(logits)[:-1]
        sw = _sw.sample_weights(sample_weight, batch)
        denominators = _sample_denominators(target, weight, ignore_index, sw)
        rows, grad = cross_entropy_with_grad(
            logits,
            target,
            weight=weight,
            ignore_index=ignore_index,
            reduction="none",
            label_smoothing=label_smoothing,
            out=out,
            num_threads=num_threads,
            check=check,
            grad_output=_sw.row_grad_output(reduction, grad_output, sw, denominators),
        )
        return _sw.reduce_weighted(rows, sw, denominators, reduction, np.asarray(rows).dtype), grad
    problem = CrossEntropyInputs(
        logits, target, weight, ignore_index, reduction, label_smoothing, num_threads
    )
    factor, row_factors = grad_output_factors(grad_output, problem.reduction, problem.batch)
    # the z-loss and log-sum-exp options read the logits before the gradient may overwrite them
    lse = _row_logsumexp(problem) if z_loss or return_lse else None
    checking = check_enabled(check)
    grad = gradient_array(
        out, problem.x, target=problem.target, weight=weight, grad_output=grad_output
    )
    half_dest = _half_gradient_rows(problem, grad) if not (z_loss or checking) else None
    if half_dest is not None:
        return _half_loss_grad(problem, half_dest, grad, factor, row_factors, lse, return_lse)
    x, rows, n_rows = problem.x, problem.rows, problem.rows.shape[0]
    if checking:  # copied now: the gradient may overwrite the logits
        sample = _check.sample_rows(n_rows)
        saved = rows[sample].copy(), problem.target_rows[sample].copy()
    row_loss = (
        np.empty(n_rows, dtype=problem.compute)
        if (problem.reduction == "none" or checking)
        else None
    )
    dest = writable_rows(grad, rows)
    buffer = dest if dest is not None else np.empty(rows.shape, dtype=problem.compute)
    z_rows = (
        (rows.copy() if z_loss and np.may_share_memory(buffer, rows) else rows) if z_loss else None
    )
    if problem.probabilities:
        scale = safe_divide(factor, n_rows) if problem.reduction == "mean" else factor
        total = _kernels.probability_loss_grad(
            rows,
            problem.target_rows,
            problem.weight,
            problem.smoothing,
            scale,
            row_factors,
            row_loss,
            buffer,
            problem.threads,
        )
        denominator = n_rows
    else:
        weight_total, bad = _kernels.index_weight_total(
            problem.target_rows, problem.weight, problem.ignore_index, problem.n_classes
        )
        if bad >= 0:
            problem.raise_bad_label(bad)
        scale = safe_divide(factor, weight_total) if problem.reduction == "mean" else factor
        total, denominator = _kernels.index_loss_grad(
            rows,
            problem.target_rows,
            problem.weight,
            problem.ignore_index,
            problem.smoothing,
            scale,
            row_factors,
            row_loss,
            buffer,
            problem.threads,
            _streams(buffer, rows, z_loss),
        )
    if z_loss:
        _add_z_loss_grad(problem, z_rows, lse, z_loss, factor, row_factors, buffer)
    if dest is None and rows.size:
        store(grad, buffer, problem.threads)
    loss = reduce_loss(total, denominator, row_loss, problem.reduction, problem.batch, x.dtype)
    if checking and not z_loss:  # the reference check covers the loss without a z-loss
        row_scale = scale * (row_factors[sample] if row_factors is not None else 1.0)
        row_scale = np.broadcast_to(np.asarray(row_scale, dtype=np.float64), sample.shape)
        _check.compare(
            "cross_entropy_with_grad (loss)",
            row_loss[sample],
            _reference.cross_entropy(*saved, reduction="none", **problem.options),
            x.dtype,
            rows=sample,
        )
        # Compared per unit of each row's incoming gradient, so the tolerance means the same
        # whatever the scale (1 / N for a mean).
        unit = np.where(row_scale != 0, np.abs(row_scale), 1.0)[:, None]
        expected = _reference.cross_entropy_grad(
            *saved, reduction="none", grad_output=row_scale, **problem.options
        )
        _check.compare(
            "cross_entropy_with_grad (gradient)",
            grad.reshape(rows.shape)[sample] / unit,
            expected / unit,
            x.dtype,
            rows=sample,
            unit=unit,
        )
    if z_loss:
        loss = _add_z_loss(problem, total, denominator, row_loss, lse, z_loss)
    if return_lse:
        return loss, grad, _lse_result(problem, lse)
    return loss, grad


def _half_transform(name, a, ax, out, threads):
    """log_softmax / softmax of float16 or bfloat16 ``a`` into ``out`` read and written as
    half bits, a chunk widened at a time; False (nothing done) where that does not apply."""
    moved = np.moveaxis(a, ax, -1)
    half = half_rows(moved) if moved.shape[-1] else None
    if half is None or not out.dtype.isnative:
        return False
    dest = writable_rows(np.moveaxis(out, ax, -1).view(np.uint16), half[0])
    if dest is None:
        return False
    if dest.size:
        _kernels.transform_rows_half(*half, name == "softmax", dest, threads)
    return True


#: Gradients at least this large, apart from the logits, are written with non-temporal
#: stores: larger than the caches of most machines, so that what is read next would not find
#: them there anyway, and the stores then skip reading each line before writing it.
#: Measured by benchmarks/half_speed.py (loss + gradient into a new array).
STREAM_BYTES = 64 * 2**20


def _streams(buffer, rows, z_loss):
    """Whether the gradient kernel writes buffer with non-temporal stores.

    Not in place (the logits' lines are in cache already: measured no faster), and not with
    a z-loss, whose gradient is added to the buffer right after.
    """
    return bool(
        buffer.nbytes >= STREAM_BYTES and not z_loss and not np.may_share_memory(buffer, rows)
    )


def _half_gradient_rows(problem, grad):
    """grad's half bits as rows the half gradient kernel can write, or None.

    That takes float16 / bfloat16 logits read directly (problem.half) with class indices, and
    a gradient array of native byte order whose rows are either the logits' own (in place) or
    apart from them.
    """
    if problem.half is None or problem.probabilities or not grad.dtype.isnative:
        return None
    return writable_rows(grad.view(np.uint16), problem.half[0])


def _half_loss_grad(problem, dest, grad, factor, row_factors, lse, return_lse):
    """cross_entropy_with_grad of half logits, widened a few rows (or a chunk) at a time.

    The gradient is computed in float32 in cache and rounded into ``dest``: no float32 copy
    of the logits or of their gradient, the same bits as the float32 path rounded.
    """
    n_rows = dest.shape[0]
    weight_total, bad = _kernels.index_weight_total(
        problem.target_rows, problem.weight, problem.ignore_index, problem.n_classes
    )
    if bad >= 0:
        problem.raise_bad_label(bad)
    scale = safe_divide(factor, weight_total) if problem.reduction == "mean" else factor
    row_loss = np.empty(n_rows, dtype=problem.compute) if problem.reduction == "none" else None
    total, denominator = _kernels.index_loss_grad_half(
        *problem.half,
        problem.target_rows,
        problem.weight,
        problem.ignore_index,
        problem.smoothing,
        scale,
        row_factors,
        row_loss,
        dest,
        problem.threads,
    )
    loss = reduce_loss(
        total, denominator, row_loss, problem.reduction, problem.batch, problem.x.dtype
    )
    if return_lse:
        return loss, grad, _lse_result(problem, lse)
    return loss, grad


@shares_cpus
def nll_loss(
    log_probs,
    target,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    sample_weight=None,
    num_threads=None,
    check=None,
):
    """Negative log-likelihood of class indices, with PyTorch's ``F.nll_loss`` semantics.

    Parameters
    ----------
    log_probs : array_like, shape (..., C)
        Log-probabilities (for instance from :func:`log_softmax`), classes on the last axis.
    target : array_like of int, shape (...)
        Class indices, any integer dtype.
    weight : array_like, shape (C,), optional
        Per-class weights.
    ignore_index : int, optional
        Rows with this target contribute 0 to the loss and to the mean's denominator.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the total weight of the non-ignored rows (NaN if none).
    sample_weight : array_like, shape (...), optional
        One weight per row, scikit-learn's: ``"none"`` returns ``s_i l_i``, ``"sum"`` their
        sum, ``"mean"`` that sum divided by ``sum_i s_i w[t_i]`` over the non-ignored rows,
        summed exactly.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` and raise :class:`xent.CheckError` on
        disagreement.

    Returns
    -------
    scalar or numpy.ndarray
        ``-weight[t] * log_probs[..., t]`` per row, or its reduction, in the input dtype.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> log_probs = xent.log_softmax(np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]))
    >>> target = np.array([0, 2])
    >>> round(float(xent.nll_loss(log_probs, target)), 4)  # the mean of -log_probs[i, target[i]]
    0.1755

    Class weights make the mean a weighted one:

    >>> weight = np.array([1.0, 1.0, 3.0])
    >>> np.round(xent.nll_loss(log_probs, target, weight=weight, reduction="none"), 4)
    array([0.2413, 0.3288])
    >>> round(float(xent.nll_loss(log_probs, target, weight=weight)), 4)
    0.1425
    """
    if sample_weight is not None:
        rows = nll_loss(
            log_probs,
            target,
            weight=weight,
            ignore_index=ignore_index,
            reduction="none",
            num_threads=num_threads,
            check=check,
        )
        sw, denominators = _sample_weight_rows(rows, target, weight, ignore_index, sample_weight)
        return _sw.reduce_weighted(
            rows, sw, denominators, check_reduction(reduction), np.asarray(rows).dtype
        )
    x = float_array(log_probs, "log_probs")
    n_classes = x.shape[-1]
    if n_classes == 0:
        raise ValueError(f"log_probs has shape {x.shape}: the class axis (last) is empty")
    batch = x.shape[:-1]
    t = input_array(target, "target")
    if t.dtype.kind not in "iu":
        raise TypeError(f"nll_loss takes integer class indices as target, got dtype {t.dtype}")
    labels = class_targets(t, batch, x.shape)
    w = class_weights(weight, n_classes)
    ignore = check_ignore_index(ignore_index)
    reduction = check_reduction(reduction)
    threads = get_num_threads(num_threads)
    checking = check_enabled(check)
    compute = compute_dtype(x.dtype)
    rows = as_rows(x, compute)

    def compute_rows(sample=None):
        r = rows if sample is None else rows[sample]
        labels_used = labels if sample is None else labels[sample]
        row_loss = (
            np.empty(r.shape[0], dtype=compute)
            if (reduction == "none" or sample is not None)
            else None
        )
        total, weight_sum, bad = _kernels.index_loss(
            r, labels_used, w, ignore, 0.0, True, row_loss, threads
        )
        if bad >= 0:
            raise IndexError(bad_label_message(t, int(bad), n_classes, ignore))
        return total, weight_sum, row_loss

    total, denominator, row_loss = compute_rows()
    result = reduce_loss(total, denominator, row_loss, reduction, batch, x.dtype)
    if checking:
        options = dict(weight=w, ignore_index=ignore)
        check_loss(
            "nll_loss",
            result,
            reduction,
            rows.shape[0],
            lambda s: compute_rows(s)[2],
            lambda s: _reference.nll_loss(rows[s], labels[s], reduction="none", **options),
            lambda: _reference.nll_loss(rows, labels, reduction=reduction, **options),
            x.dtype,
        )
    return result


def _sample_denominators(target, weight, ignore_index, sw):
    """Each row's weight in a sample-weighted mean: s_i w[t_i] (0 if ignored), or s_i for
    probability targets."""
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        return sw * _sw.class_row_weights(t, weight, ignore_index)
    return sw


def _sample_weight_rows(rows, target, weight, ignore_index, sample_weight):
    """(sample weights of the rows, the mean's per-row denominators)."""
    sw = _sw.sample_weights(sample_weight, np.shape(rows))
    return sw, _sample_denominators(target, weight, ignore_index, sw)


# ---- gradient and diagonal Hessian per row, for gradient boosting ----------------------------

GRAD_HESS_NOTES = """
    Relation to scikit-learn and gradient boosting: the per-row loss is the cross-entropy
    ``lse(x) - x_t``, which is scikit-learn's ``HalfMultinomialLoss`` (half the multinomial
    deviance: the same function), so ``(grad, hess)`` equal its
    ``gradient_hessian(y_true, raw_prediction, sample_weight)``: ``s w[t] (p - onehot(t))``
    and ``s w[t] p (1 - p)``, the diagonal of the Hessian (its usual stand-in in boosting).
    XGBoost's and LightGBM's custom multiclass objectives take exactly these, row-major::

        def objective(predt, dtrain):          # xgboost: obj=objective
            labels = dtrain.get_label().astype(np.int64)
            w = dtrain.get_weight()
            return xent.cross_entropy_grad_hess(predt.reshape(len(labels), -1), labels,
                                                sample_weight=w if w.size else None)

    (LightGBM's ``objective(preds, train_data)`` likewise, with ``train_data.get_label()``.)
"""


@shares_cpus
def cross_entropy_grad_hess(
    logits,
    target,
    *,
    weight=None,
    ignore_index=-100,
    sample_weight=None,
    num_threads=None,
    check=None,
):
    """Gradient and diagonal Hessian of each row's cross-entropy, in one pass over the logits.

    Parameters
    ----------
    logits : array_like, shape (..., C)
        Unnormalised scores, classes on the last axis.
    target : array_like of int, shape (...)
        Class indices.
    weight : array_like, shape (C,), optional
        Per-class weights: row i is scaled by ``weight[t_i]``.
    ignore_index : int, optional
        Rows with this target get zero gradient and Hessian.
    sample_weight : array_like, shape (...), optional
        Per-row weights: row i is scaled by ``sample_weight[i]``.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` and raise :class:`xent.CheckError` on
        disagreement.

    Returns
    -------
    grad, hess : numpy.ndarray
        Of the logits' shape and dtype: ``c (p - onehot(t))`` and ``c p (1 - p)`` with
        ``p = softmax(x)`` and ``c = sample_weight[i] weight[t_i]`` (the losses are not
        reduced: no mean's ``1/N``).

    Notes
    -----
    Computed from ``log_softmax`` (one kernel pass): ``p = exp(ls)`` and
    ``1 - p = -expm1(ls)``, so the target's ``p_t - 1`` of a confident row and every
    ``1 - p`` keep their relative accuracy.
    """
    problem = CrossEntropyInputs(logits, target, weight, ignore_index, "none", 0.0, num_threads)
    if problem.probabilities:
        raise TypeError("cross_entropy_grad_hess takes integer class indices as target")
    _, bad = _kernels.index_weight_total(
        problem.target_rows, problem.weight, problem.ignore_index, problem.n_classes
    )
    if bad >= 0:
        problem.raise_bad_label(bad)
    x = problem.x
    ls = log_softmax(x, num_threads=num_threads).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        p, q = np.exp(ls), -np.expm1(ls)
    row_w = _sw.class_row_weights(problem.target, weight, ignore_index)
    sw = None if sample_weight is None else _sw.sample_weights(sample_weight, problem.batch)
    t = np.where(np.asarray(problem.target) == ignore_index, 0, problem.target)[..., None]
    is_target = np.arange(x.shape[-1]) == t
    # huge weights overflow to inf, as the losses do, unwarned
    with np.errstate(invalid="ignore", over="ignore"):
        c = (row_w if sw is None else row_w * sw)[..., None]
        grad = c * np.where(is_target, -q, p)
        hess = c * p * q
        grad, hess = grad.astype(x.dtype), hess.astype(x.dtype)
    if check_enabled(check):
        want = _reference.cross_entropy_grad_hess(
            x, problem.target, weight=weight, ignore_index=ignore_index, sample_weight=sample_weight
        )
        _check.compare("cross_entropy_grad_hess (grad)", grad, want[0], x.dtype)
        _check.compare("cross_entropy_grad_hess (hess)", hess, want[1], x.dtype)
    return grad, hess


cross_entropy_grad_hess.__doc__ += GRAD_HESS_NOTES
cross_entropy_grad_hess.__doc__ += """
    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> grad, hess = xent.cross_entropy_grad_hess(logits, np.array([0, 2]))
    >>> np.round(grad, 4)
    array([[-0.2144,  0.1753,  0.0391],
           [ 0.0493,  0.0545, -0.1038]])
    >>> np.round(hess, 4)
    array([[0.1684, 0.1446, 0.0376],
           [0.0469, 0.0515, 0.093 ]])

    ``sample_weight`` scales each row's pair (as a booster's instance weights do):

    >>> grad, hess = xent.cross_entropy_grad_hess(logits, np.array([0, 2]),
    ...                                           sample_weight=np.array([2.0, 0.5]))
    >>> np.round(hess, 4)
    array([[0.3369, 0.2891, 0.0752],
           [0.0234, 0.0258, 0.0465]])
"""


# ---- z-loss and the per-row log-sum-exp (cross_entropy's z_loss= and return_lse=) -----------


def check_z_loss(value):
    """The z-loss coefficient as a float, or a ValueError naming the argument."""
    z = float(value)
    if not (math.isfinite(z) and z >= 0):
        raise ValueError(f"z_loss must be a finite number >= 0, got {value!r}")
    return z


def _row_logsumexp(problem):
    """logsumexp of every logits row of a CrossEntropyInputs, float64 (one more read)."""
    n = int(np.prod(problem.batch, dtype=np.int64))
    lse = np.empty(n, dtype=problem.compute)
    if n:
        if problem.half is not None:
            _kernels.logsumexp_rows_half(*problem.half, lse, problem.threads)
        else:
            _kernels.logsumexp_rows(problem.rows, lse, problem.threads)
    lse = lse.astype(np.float64)
    if n and problem.compute in (np.float32, np.float64):
        _recompute_cancelled(
            lse,
            lambda i: _rows_at(problem.x, i),
            problem.threads,
            problem.compute,
            problem.x.shape[-1] if problem.x.ndim else 1,
        )
    return lse


def _lse_result(problem, lse):
    with np.errstate(over="ignore"):
        return lse.astype(problem.x.dtype).reshape(problem.batch)


def _z_rows(problem):
    """Which rows carry a z-loss (not ignored), and how many."""
    if problem.probabilities:
        kept = np.ones(problem.target_rows.shape[0], dtype=bool)
    else:
        kept = problem.target_rows != problem.ignore_index
    return kept, int(np.count_nonzero(kept))


def _add_z_loss(problem, total, denominator, row_loss, lse, z_loss):
    """The loss with ``z_loss * lse**2`` added per row not ignored, reduced as the issue of
    PaLM's z-loss wants: its mean over the rows kept, beside the cross-entropy's mean."""
    kept, count = _z_rows(problem)
    with np.errstate(over="ignore", invalid="ignore"):
        z_rows = np.where(kept, z_loss * lse * lse, 0.0)
        dtype = problem.x.dtype
        if problem.reduction == "none":
            return (row_loss.astype(np.float64) + z_rows).astype(dtype).reshape(problem.batch)
        z_total = np.sum(z_rows)
        if problem.reduction == "sum":
            return dtype.type(np.float64(total) + z_total)
        with np.errstate(divide="ignore"):
            return dtype.type(
                np.float64(total) / np.float64(denominator) + z_total / np.float64(count)
            )


def _add_z_loss_grad(problem, rows, lse, z_loss, factor, row_factors, buffer):
    """buffer += d (z-loss) / d logits = 2 z_loss lse softmax(x) times each row's incoming
    gradient; rows must still hold the logits (and not share memory with buffer)."""
    kept, count = _z_rows(problem)
    scale = factor / count if problem.reduction == "mean" and count else factor
    coef = 2.0 * z_loss * lse * scale
    if row_factors is not None:
        coef = coef * row_factors
    coef = np.where(kept & np.isfinite(lse), coef, 0.0)
    if problem.reduction == "mean" and not count:
        coef[:] = 0.0
    _kernels.add_scaled_softmax(rows, lse, np.ascontiguousarray(coef), buffer, problem.threads)
