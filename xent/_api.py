"""xent's public functions: every decision about shapes, dtypes, options and errors.

The kernels (xent/_kernels.pyx) trust what they are given; everything a caller can get wrong
is caught here and raised as TypeError, ValueError or IndexError naming the argument.

Conventions shared by every function:

* Classes lie on the last axis (``axis`` where a function takes one); all leading axes are
  batch axes. (PyTorch puts classes on axis 1 of a multi-dimensional input.)
* float32 and float64 inputs are computed in their own precision with double accumulators;
  float16 and bfloat16 (``ml_dtypes.bfloat16``) are computed in float32 and returned in their
  own dtype. ``logsumexp`` and ``cross_entropy`` with class indices read them directly, a
  block of rows at a time widened in cache (rows shorter than 262,144 classes); other
  functions convert them to float32 first. Other dtypes are refused.
* Any row stride is read in place, read-only arrays and memory maps included; an input whose
  class axis is not contiguous is copied once.
* Inputs are never modified, unless passed as ``out=``.
"""

import functools
import numbers

import numpy as np

from . import _check, _kernels
from . import reference as _reference
from ._threads import get_num_threads, shares_cpus

REDUCTIONS = ("none", "mean", "sum")

_COMPUTE_DTYPE = {
    np.dtype(np.float16): np.dtype(np.float32),
    np.dtype(np.float32): np.dtype(np.float32),
    np.dtype(np.float64): np.dtype(np.float64),
}


# ---- argument checking ----------------------------------------------------------------------

def _is_bfloat16(dtype):
    """Whether dtype is ml_dtypes' bfloat16 (known by name: ml_dtypes need not be imported)."""
    return dtype.name == "bfloat16" and dtype.itemsize == 2 and dtype.type.__module__ == "ml_dtypes"


def _compute_dtype(dtype):
    """The dtype xent computes a float input of ``dtype`` in, or None if it takes no such input.

    ml_dtypes' bfloat16 joins the table (and check mode's tolerances) when first seen.
    """
    if _is_bfloat16(dtype) and dtype not in _COMPUTE_DTYPE:
        _COMPUTE_DTYPE[dtype] = np.dtype(np.float32)
        _check.TOLERANCES[dtype] = _check.BFLOAT16_TOLERANCE
    return _COMPUTE_DTYPE.get(dtype.newbyteorder("="))


def _aligned(a):
    """``a``, or an aligned copy of it.

    A numpy array may start at any byte (``np.frombuffer`` at an offset, a buffer unpickled by
    Dask); the kernels read whole elements, and in C a load from an address that is not a
    multiple of the element's size is undefined behaviour (UBSan reports it; a vector load
    may fault).
    """
    return a if a.flags.aligned else a.copy()


def _float_array(x, name, min_ndim=1):
    """``x`` as an aligned ndarray of a supported floating dtype, in native byte order."""
    a = np.asarray(x)
    if _compute_dtype(a.dtype) is None:
        kind = "floating" if a.dtype.kind == "f" else "non-floating"
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {kind} "
                        f"dtype {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.ndim < min_ndim:
        raise ValueError(f"{name} must have at least one dimension (the class axis), "
                         f"got a 0-d array")
    return _aligned(a)


def _rows(a, dtype):
    """(N, C) array of the (..., C) array ``a`` in ``dtype``, last axis contiguous.

    A view where possible: only a non-contiguous class axis, an incompatible batch layout or
    a dtype conversion makes a copy.
    """
    n_rows = int(np.prod(a.shape[:-1], dtype=np.int64))
    if a.dtype.itemsize == 2 and dtype == np.float32:   # float16, bfloat16: widened in parallel
        half = _rows(a, a.dtype).view(np.uint16)
        rows = np.empty(half.shape, dtype=dtype)
        _kernels.widen_half_rows(half, _is_bfloat16(a.dtype), rows, get_num_threads())
        return rows
    with np.errstate(over="ignore"):  # a value beyond the dtype's range rounds to inf
        rows = a.astype(dtype, copy=False).reshape(n_rows, a.shape[-1])
    if rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        rows = np.ascontiguousarray(rows)
    return rows


def _store(target, values, threads):
    """Write ``values`` (a contiguous compute-dtype array holding ``target``'s entries in C
    order) into ``target``, rounding to its dtype.

    Half-precision targets are rounded by xent's own kernel, to the same bits: numpy's
    conversion of subnormal float16 (small gradients are) is a hundred times slower.
    """
    if target.dtype.itemsize == 2 and values.dtype == np.float32 and values.size:
        bfloat = _is_bfloat16(target.dtype)
        if target.flags.c_contiguous and target.dtype.isnative:
            _kernels.narrow_half(values.reshape(-1), bfloat,
                                 target.reshape(-1).view(np.uint16), threads)
            return
        bits = np.empty(values.size, dtype=np.uint16)
        _kernels.narrow_half(values.reshape(-1), bfloat, bits, threads)
        np.copyto(target, bits.view(target.dtype.newbyteorder("=")).reshape(target.shape))
        return
    with np.errstate(over="ignore"):  # float16 out: inf beyond 65504
        np.copyto(target, values.reshape(target.shape), casting="unsafe")


def _half_rows(a):
    """(the float16 or bfloat16 bits of ``a`` as (N, C) uint16 rows, whether bfloat16), or None.

    None for other dtypes, and for rows so long that their kernels split them among threads:
    those are converted to float32 whole instead.
    """
    if a.dtype.itemsize != 2 or a.shape[-1] >= _kernels.split_row_length():
        return None
    rows = _rows(a, a.dtype)
    return rows.view(np.uint16), _is_bfloat16(a.dtype)


def _axis(axis, ndim):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int, got {type(axis).__name__} {axis!r}")
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(int(axis), ndim, "axis")
    return int(axis) % ndim


def _reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _label_smoothing(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"label_smoothing must be a float in [0, 1], got "
                        f"{type(value).__name__} {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"label_smoothing must lie in [0, 1], got {value!r}")
    return value


def _ignore_index(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {type(value).__name__} {value!r}")
    info = np.iinfo(np.intp)
    if not info.min <= int(value) <= info.max:
        raise ValueError(f"ignore_index={value} does not fit in a {info.bits}-bit integer")
    return int(value)


def _bool_option(value, name):
    """A yes/no option as a bool: True, False (numpy's too) or the ints 1 and 0.

    Anything else is refused rather than read by its truth value: ``normalize="no"`` would
    otherwise mean yes.
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral)
                                               and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def _check_flag(check):
    if check is not None and not isinstance(check, (bool, np.bool_)):
        raise TypeError(f"check must be True, False or None, got {check!r}")
    return _check.enabled(check)


def _class_weights(weight, n_classes):
    """Per-class weights as contiguous float64, or None."""
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.dtype.kind not in "fiu":
        raise TypeError(f"weight must be a real (floating or integer) array, got dtype "
                        f"{w.dtype}")
    if w.shape != (n_classes,):
        raise ValueError(f"weight has shape {w.shape}, expected ({n_classes},): one weight "
                         f"per class")
    return _aligned(np.ascontiguousarray(w, dtype=np.float64))


def _class_targets(target, batch_shape, logits_shape):
    """Integer class-index targets as contiguous intp of length N."""
    if target.dtype.kind not in "iu":
        raise TypeError(f"class-index target must have an integer dtype, got {target.dtype}")
    if target.shape != batch_shape:
        raise ValueError(
            f"target has shape {target.shape}, expected {batch_shape}: class indices have the "
            f"shape of logits {logits_shape} without its last (class) axis")
    flat = target.reshape(-1)
    limit = np.iinfo(np.intp).max
    if flat.dtype.kind == "u" and flat.size and flat.max() > limit:
        raise IndexError(_bad_label(target, int(np.argmax(flat)), logits_shape[-1], None))
    return _aligned(np.ascontiguousarray(flat, dtype=np.intp))


def _bad_label(target, row, n_classes, ignore_index):
    where = np.unravel_index(row, target.shape) if target.ndim else ()
    index = ", ".join(str(int(i)) for i in where)
    allowed = f"[0, {n_classes})"
    if ignore_index is not None:
        allowed += f" or equal ignore_index={ignore_index}"
    return (f"target[{index}] = {target.reshape(-1)[row]} is out of range: class indices "
            f"must lie in {allowed}")


def _probability_rows(target, dtype):
    """Probability targets as (N, C) rows in the logits' compute dtype.

    A nonzero probability too small for that dtype becomes its smallest subnormal, not 0:
    a probability of exactly 0 is left out of the loss, a tiny one still meets a -inf logit.
    """
    p = _float_array(target, "target")
    rows = _rows(p, dtype)
    if p.dtype.itemsize > rows.dtype.itemsize:
        p_rows = p.reshape(rows.shape)
        lost = (rows == 0) & (p_rows != 0)
        if lost.any():  # rows is a fresh array here: the cast to a narrower dtype copied
            rows[lost] = np.copysign(np.finfo(dtype).smallest_subnormal, p_rows[lost])
    return rows


def _out_array(out, shape, dtype, name="out"):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if out.dtype.newbyteorder("=") != dtype:  # either byte order: out may be x itself
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


# ---- logsumexp, log_softmax, softmax --------------------------------------------------------

@shares_cpus
def logsumexp(x, axis=-1, keepdims=False, *, num_threads=None, check=None):
    """Logarithm of the sum of exponentials along an axis.

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 values, at least 1-d.
    axis : int, optional
        Axis to reduce (default: the last).
    keepdims : bool, optional
        Keep the reduced axis with length 1.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` and raise :class:`xent.CheckError` on
        disagreement (``None``: only if ``XENT_CHECK=1``).

    Returns
    -------
    numpy.ndarray or scalar
        ``log(sum(exp(x), axis))`` in the dtype of ``x``; a scalar for 1-d input without
        ``keepdims``.

    Notes
    -----
    SciPy's rules: a row containing +inf gives +inf, a row of all -inf (or an empty axis)
    gives -inf, and a NaN anywhere in the row gives NaN.
    """
    a = _float_array(x, "x")
    ax = _axis(axis, a.ndim)
    keepdims = _bool_option(keepdims, "keepdims")
    threads = get_num_threads(num_threads)
    checking = _check_flag(check)
    moved = np.moveaxis(a, ax, -1)
    batch, n_classes = moved.shape[:-1], moved.shape[-1]
    compute = _COMPUTE_DTYPE[a.dtype]
    half = _half_rows(moved) if n_classes else None
    if half is not None:
        result = np.empty(half[0].shape[0], dtype=compute)
        if result.size:
            _kernels.logsumexp_rows_half(*half, result, threads)
    else:
        rows = _rows(moved, compute)
        result = np.full(rows.shape[0], -np.inf, dtype=compute)
        if rows.shape[0] and n_classes:
            _kernels.logsumexp_rows(rows, result, threads)
    if checking:
        rows = _rows(moved, compute)
        sample = _check.sample_rows(rows.shape[0])
        _check.compare("logsumexp", result[sample], _reference.logsumexp(rows[sample]),
                       a.dtype, rows=sample)
    with np.errstate(over="ignore"):
        result = result.astype(a.dtype, copy=False).reshape(batch)
    if keepdims:
        result = np.expand_dims(result, ax)
    return result[()] if result.ndim == 0 else result


def _writable_rows(out, rows):
    """``out`` as (N, C) rows the kernels can write in place of ``rows``' results, or None.

    That takes a view of ``rows``' dtype with a contiguous class axis which is either
    ``rows``' own memory, row for row (an in-place call), or apart from it: a partial overlap
    would let one thread overwrite rows another has yet to read.
    """
    if out.dtype != rows.dtype:
        return None
    try:
        view = out.reshape(rows.shape, copy=False)
    except ValueError:
        return None
    if view.shape[1] > 1 and view.strides[1] != view.itemsize:
        return None
    # .ctypes.data, not __array_interface__: numpy caches the latter's dicts (traced
    # memory grew by 2 MB over 60000 calls)
    same_rows = view.ctypes.data == rows.ctypes.data and view.strides == rows.strides
    if not same_rows and np.may_share_memory(view, rows):
        return None
    return view


def _rowwise_transform(name, kernel, reference_fn, x, axis, out, num_threads, check):
    """Shared body of log_softmax and softmax: one kernel call per row, written to ``out``."""
    a = _float_array(x, "x")
    ax = _axis(axis, a.ndim)
    threads = get_num_threads(num_threads)
    checking = _check_flag(check)
    if out is None:
        out = np.empty(a.shape, dtype=a.dtype)
    else:
        _out_array(out, a.shape, a.dtype)
    compute = _COMPUTE_DTYPE[a.dtype]
    rows = _rows(np.moveaxis(a, ax, -1), compute)
    if checking:  # copied before the kernel runs, which may overwrite x (out=x)
        sample = _check.sample_rows(rows.shape[0])
        checked_rows = rows[sample].copy()
    if rows.size:
        target = np.moveaxis(out, ax, -1)
        dest = _writable_rows(target, rows)
        if dest is None:
            buffer = np.empty(rows.shape, dtype=compute)
            kernel(rows, buffer, threads)
            _store(target, buffer, threads)
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
        float16, bfloat16, float32 or float64 values, at least 1-d.
    axis : int, optional
        Class axis (default: the last).
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
    """
    return _rowwise_transform("log_softmax", _kernels.log_softmax_rows,
                              _reference.log_softmax, x, axis, out, num_threads, check)


@shares_cpus
def softmax(x, axis=-1, out=None, *, num_threads=None, check=None):
    """Softmax along an axis: ``exp(x - logsumexp(x, axis, keepdims=True))``.

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 values, at least 1-d.
    axis : int, optional
        Class axis (default: the last).
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
    """
    return _rowwise_transform("softmax", _kernels.softmax_rows, _reference.softmax, x, axis,
                              out, num_threads, check)


# ---- losses ---------------------------------------------------------------------------------

def _reduce(total, denominator, row_loss, reduction, batch_shape, dtype):
    # Rounding to a narrower dtype may overflow to inf: that is the right answer, unwarned.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if reduction == "none":
            return row_loss.astype(dtype, copy=False).reshape(batch_shape)
        if reduction == "sum":
            return dtype.type(total)
        return dtype.type(np.float64(total) / np.float64(denominator))


def _loss_check(name, result, reduction, n_rows, per_row_xent, per_row_ref, reduced_ref,
                dtype):
    """Check a loss: its rows (sampled when many), or its reduced value when rows are few."""
    if reduction != "none" and n_rows <= _check.MAX_CHECK_ROWS:
        _check.compare(f"{name} (reduction={reduction!r})", result, reduced_ref(), dtype)
        return
    sample = _check.sample_rows(n_rows)
    got = result.reshape(-1)[sample] if reduction == "none" else per_row_xent(sample)
    _check.compare(name, got, per_row_ref(sample), dtype, rows=sample)


class _CrossEntropyInputs:
    """The checked arguments of a cross-entropy call, shared by the loss and its gradient."""

    def __init__(self, logits, target, weight, ignore_index, reduction, label_smoothing,
                 num_threads):
        x = _float_array(logits, "logits")
        n_classes = x.shape[-1]
        if n_classes == 0:
            raise ValueError(f"logits has shape {x.shape}: the class axis (last) is empty")
        self.x, self.batch, self.n_classes = x, x.shape[:-1], n_classes
        self.target = t = np.asarray(target)
        self.weight = _class_weights(weight, n_classes)
        self.ignore_index = _ignore_index(ignore_index)
        self.reduction = _reduction(reduction)
        self.smoothing = _label_smoothing(label_smoothing)
        self.threads = get_num_threads(num_threads)
        self.compute = _COMPUTE_DTYPE[x.dtype]
        # float16 and bfloat16 logits are read as they are for class indices (rows is then
        # made only if the gradient or check mode asks for it)
        self.half = _half_rows(x) if t.dtype.kind in "iu" else None
        if t.dtype.kind == "f":
            if t.shape != x.shape:
                raise ValueError(
                    f"probability target has shape {t.shape}, expected the logits' shape "
                    f"{x.shape} (for class indices use an integer dtype)")
            if self.ignore_index >= 0:
                raise ValueError(f"ignore_index={self.ignore_index} is not supported with "
                                 f"probability targets (as in PyTorch); leave it negative")
            self.probabilities = True
            self.target_rows = _probability_rows(t, self.compute)
        elif t.dtype.kind in "iu":
            self.probabilities = False
            self.target_rows = _class_targets(t, self.batch, x.shape)
        else:
            raise TypeError(f"target must hold integer class indices or floating "
                            f"probabilities, got dtype {t.dtype}")

    @functools.cached_property
    def rows(self):
        """The logits as (N, C) rows in the compute dtype (a view unless converted)."""
        return _rows(self.x, self.compute)

    @property
    def options(self):
        """The options, as xent.reference takes them."""
        return dict(weight=self.weight, ignore_index=self.ignore_index,
                    label_smoothing=self.smoothing)

    def raise_bad_label(self, row):
        raise IndexError(_bad_label(self.target, int(row), self.n_classes, self.ignore_index))

    def losses(self, sample=None):
        """(total, mean's denominator, row losses or None), over all rows or a sample."""
        target = self.target_rows if sample is None else self.target_rows[sample]
        row_loss = np.empty(target.shape[0], dtype=self.compute) if (
            self.reduction == "none" or sample is not None) else None
        options = (self.weight, self.ignore_index, self.smoothing, False, row_loss, self.threads)
        if sample is None and self.half is not None:
            total, weight_sum, bad = _kernels.index_loss_half(*self.half, target, *options)
        else:
            rows = self.rows if sample is None else self.rows[sample]
            if self.probabilities:
                total = _kernels.probability_loss(rows, target, self.weight, self.smoothing,
                                                  row_loss, self.threads)
                return total, rows.shape[0], row_loss
            total, weight_sum, bad = _kernels.index_loss(rows, target, *options)
        if bad >= 0:
            self.raise_bad_label(bad)
        return total, weight_sum, row_loss

    def check_loss(self, name, result):
        """Check mode for the loss (its rows must still hold the logits)."""
        _loss_check(
            name, result, self.reduction, self.rows.shape[0],
            lambda s: self.losses(s)[2],
            lambda s: _reference.cross_entropy(self.rows[s], self.target_rows[s],
                                               reduction="none", **self.options),
            lambda: _reference.cross_entropy(self.rows, self.target_rows,
                                             reduction=self.reduction, **self.options),
            self.x.dtype)


@shares_cpus
def cross_entropy(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, num_threads=None, check=None):
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
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` (rows sampled when many) and raise
        :class:`xent.CheckError` on disagreement.

    Returns
    -------
    scalar or numpy.ndarray
        In the dtype of ``logits``. Sums are accumulated in float64 in a fixed order, so
        the result has the same bits on any number of threads.

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
    """
    problem = _CrossEntropyInputs(logits, target, weight, ignore_index, reduction,
                                  label_smoothing, num_threads)
    total, denominator, row_loss = problem.losses()
    result = _reduce(total, denominator, row_loss, problem.reduction, problem.batch,
                     problem.x.dtype)
    if _check_flag(check):
        problem.check_loss("cross_entropy", result)
    return result


def _grad_output(grad_output, reduction, batch_shape):
    """(scalar factor, per-row float64 factors or None) of a loss's incoming gradient."""
    if grad_output is None:
        return 1.0, None
    g = np.asarray(grad_output)
    if g.dtype.kind not in "fiu":
        raise TypeError(f"grad_output must be real, got dtype {g.dtype}")
    if reduction == "none":
        if g.shape != batch_shape:
            raise ValueError(f"grad_output has shape {g.shape}, expected {batch_shape}: one "
                             f"value per row of the 'none' reduction")
        return 1.0, _aligned(np.ascontiguousarray(g.reshape(-1), dtype=np.float64))
    if g.size != 1:
        raise ValueError(f"grad_output of a reduced loss must be a scalar, got shape {g.shape}")
    return float(g.reshape(())), None


def _gradient_array(out, x, **read):
    """The array a gradient of x goes into: ``out`` (checked; may be x itself) or a new one.

    ``read`` names the other inputs the kernels read while they write (target, weights,
    incoming gradient): ``out`` must not overlap any of them.
    """
    if out is None:
        return np.empty(x.shape, dtype=x.dtype)
    _out_array(out, x.shape, x.dtype)
    for name, value in read.items():
        if isinstance(value, np.ndarray) and np.may_share_memory(out, value):
            raise ValueError(f"out must not overlap {name}: the gradient would overwrite it "
                             f"while it is read")
    return out


def _safe_divide(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


@shares_cpus
def cross_entropy_with_grad(logits, target, *, weight=None, ignore_index=-100,
                            reduction="mean", label_smoothing=0.0, grad_output=None, out=None,
                            num_threads=None, check=None):
    """Cross-entropy and its gradient with respect to the logits, in one pass.

    Parameters
    ----------
    logits, target, weight, ignore_index, reduction, label_smoothing, num_threads
        As for :func:`cross_entropy`.
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
    """
    problem = _CrossEntropyInputs(logits, target, weight, ignore_index, reduction,
                                  label_smoothing, num_threads)
    factor, row_factors = _grad_output(grad_output, problem.reduction, problem.batch)
    checking = _check_flag(check)
    x, rows, n_rows = problem.x, problem.rows, problem.rows.shape[0]
    grad = _gradient_array(out, x, target=problem.target, weight=weight,
                           grad_output=grad_output)
    if checking:  # copied now: the gradient may overwrite the logits
        sample = _check.sample_rows(n_rows)
        saved = rows[sample].copy(), problem.target_rows[sample].copy()
    row_loss = np.empty(n_rows, dtype=problem.compute) if (
        problem.reduction == "none" or checking) else None
    dest = _writable_rows(grad, rows)
    buffer = dest if dest is not None else np.empty(rows.shape, dtype=problem.compute)
    if problem.probabilities:
        scale = _safe_divide(factor, n_rows) if problem.reduction == "mean" else factor
        total = _kernels.probability_loss_grad(
            rows, problem.target_rows, problem.weight, problem.smoothing, scale, row_factors,
            row_loss, buffer, problem.threads)
        denominator = n_rows
    else:
        weight_total, bad = _kernels.index_weight_total(
            problem.target_rows, problem.weight, problem.ignore_index, problem.n_classes)
        if bad >= 0:
            problem.raise_bad_label(bad)
        scale = _safe_divide(factor, weight_total) if problem.reduction == "mean" else factor
        total, denominator = _kernels.index_loss_grad(
            rows, problem.target_rows, problem.weight, problem.ignore_index, problem.smoothing,
            scale, row_factors, row_loss, buffer, problem.threads)
    if dest is None and rows.size:
        _store(grad, buffer, problem.threads)
    loss = _reduce(total, denominator, row_loss, problem.reduction, problem.batch, x.dtype)
    if checking:
        row_scale = scale * (row_factors[sample] if row_factors is not None else 1.0)
        row_scale = np.broadcast_to(np.asarray(row_scale, dtype=np.float64), sample.shape)
        _check.compare("cross_entropy_with_grad (loss)", row_loss[sample],
                       _reference.cross_entropy(*saved, reduction="none", **problem.options),
                       x.dtype, rows=sample)
        # Compared per unit of each row's incoming gradient, so the tolerance means the same
        # whatever the scale (1 / N for a mean).
        unit = np.where(row_scale != 0, np.abs(row_scale), 1.0)[:, None]
        expected = _reference.cross_entropy_grad(*saved, reduction="none",
                                                 grad_output=row_scale, **problem.options)
        _check.compare("cross_entropy_with_grad (gradient)",
                       grad.reshape(rows.shape)[sample] / unit, expected / unit, x.dtype,
                       rows=sample)
    return loss, grad


@shares_cpus
def nll_loss(log_probs, target, *, weight=None, ignore_index=-100, reduction="mean",
             num_threads=None, check=None):
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
    """
    x = _float_array(log_probs, "log_probs")
    n_classes = x.shape[-1]
    if n_classes == 0:
        raise ValueError(f"log_probs has shape {x.shape}: the class axis (last) is empty")
    batch = x.shape[:-1]
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"nll_loss takes integer class indices as target, got dtype {t.dtype}")
    labels = _class_targets(t, batch, x.shape)
    w = _class_weights(weight, n_classes)
    ignore = _ignore_index(ignore_index)
    reduction = _reduction(reduction)
    threads = get_num_threads(num_threads)
    checking = _check_flag(check)
    compute = _COMPUTE_DTYPE[x.dtype]
    rows = _rows(x, compute)

    def compute_rows(sample=None):
        r = rows if sample is None else rows[sample]
        labels_used = labels if sample is None else labels[sample]
        row_loss = np.empty(r.shape[0], dtype=compute) if (
            reduction == "none" or sample is not None) else None
        total, weight_sum, bad = _kernels.index_loss(r, labels_used, w, ignore, 0.0, True,
                                                     row_loss, threads)
        if bad >= 0:
            raise IndexError(_bad_label(t, int(bad), n_classes, ignore))
        return total, weight_sum, row_loss

    total, denominator, row_loss = compute_rows()
    result = _reduce(total, denominator, row_loss, reduction, batch, x.dtype)
    if checking:
        options = dict(weight=w, ignore_index=ignore)
        _loss_check(
            "nll_loss", result, reduction, rows.shape[0],
            lambda s: compute_rows(s)[2],
            lambda s: _reference.nll_loss(rows[s], labels[s], reduction="none", **options),
            lambda: _reference.nll_loss(rows, labels, reduction=reduction, **options),
            x.dtype)
    return result
