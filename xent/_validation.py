"""Argument checking and array plumbing shared by xent's public functions.

Every decision about what a caller may pass (dtypes, shapes, options, ``out=``, labels) and
how an array reaches a kernel (native byte order, alignment, (N, C) rows with a contiguous
class axis, half precision widened and narrowed) is made here, once, for every module of
functions (:mod:`xent._multiclass`, :mod:`xent._binary`, :mod:`xent.info`, :mod:`xent.linear`,
:mod:`xent._evaluation`). The kernels trust what they are given; everything a caller can get
wrong is caught here and raised as TypeError, ValueError or IndexError naming the argument.

The names here have no leading underscore because sibling modules use them; they are not
part of xent's public API.
"""

import math
import numbers
import sys

import numpy as np

from . import _check, _kernels
from ._dtypes import compute_dtype, is_bfloat16
from ._threads import get_num_threads

__all__ = [
    "REDUCTIONS",
    "aligned",
    "as_rows",
    "fit_dtype",
    "input_array",
    "out_overlaps_itself",
    "bad_label_message",
    "bool_option",
    "check_axis",
    "check_enabled",
    "check_ignore_index",
    "check_label_smoothing",
    "check_loss",
    "check_reduction",
    "class_targets",
    "class_weights",
    "compute_dtype",
    "first_outside_unit",
    "float_array",
    "grad_output_factors",
    "gradient_array",
    "half_rows",
    "is_bfloat16",
    "out_array",
    "probability_rows",
    "reduce_loss",
    "safe_divide",
    "store",
    "writable_rows",
]

REDUCTIONS = ("none", "mean", "sum")


# ---- dtypes and layout ------------------------------------------------------------------------


def aligned(a):
    """``a``, or an aligned copy of it.

    A numpy array may start at any byte (``np.frombuffer`` at an offset, a buffer unpickled by
    Dask); the kernels read whole elements, and in C a load from an address that is not a
    multiple of the element's size is undefined behaviour (UBSan reports it; a vector load
    may fault).
    """
    return a if a.flags.aligned else a.copy()


def input_array(x, name):
    """``x`` as a plain ndarray, refusing objects whose meaning the conversion would drop.

    - A masked array: ``np.asarray`` keeps the data under the mask and drops the mask, so
      ``logsumexp([0, 0, masked 1e20])`` would be 1e20. Refused: the caller says what a masked
      entry means (``.filled(value)``) or drops them (``.compressed()``).
    - ``np.matrix``: it is always 2-d and ``*`` means a matrix product; a reduction over an
      axis keeps two dimensions. Refused: ``np.asarray(m)`` states the intent.
    - A tensor that requires grad (duck-typed: torch is never imported here): numpy cannot
      read it and its own error names no argument; the gradient would be lost anyway.

    Any other ndarray subclass is read as its base ndarray (its data, nothing else), as are
    memory maps.
    """
    if isinstance(x, np.ndarray) and type(x) is not np.ndarray:
        masked = sys.modules.get("numpy.ma")  # no masked array exists unless numpy.ma is loaded
        if masked is not None and isinstance(x, masked.MaskedArray):
            raise TypeError(
                f"{name} is a numpy masked array: xent does not apply masks. Pass "
                f"{name}.filled(value) to give masked entries a value, or "
                f"{name}.compressed() to drop them (1-d)"
            )
        if isinstance(x, np.matrix):
            raise TypeError(
                f"{name} is a numpy.matrix, whose axes and products follow matrix "
                f"rules: pass np.asarray({name})"
            )
    elif getattr(x, "requires_grad", False) is True and callable(getattr(x, "detach", None)):
        raise TypeError(
            f"{name} is a tensor that requires grad: pass {name}.detach() (and "
            f"call .cpu() for a tensor on another device), or use xent.torch for "
            f"gradients"
        )
    return np.asarray(x)


def fit_dtype(a, dtype, name):
    """``a`` converted to ``dtype``, refusing finite values the dtype cannot hold.

    A value beyond the dtype's range would become inf and turn the result into inf or NaN
    without a word (a float64 weight of 1e39 on float32 inputs).
    """
    a = np.asarray(a)
    if a.dtype == dtype:
        return a
    with np.errstate(over="ignore", invalid="ignore"):
        b = a.astype(dtype)
    if a.dtype.kind == "f" and b.size:
        lost = np.isinf(b) & np.isfinite(a)
        if lost.any():
            value = a.reshape(-1)[int(np.argmax(lost.reshape(-1)))]
            raise ValueError(
                f"{name} holds {value.item()!r}, beyond the largest "
                f"{np.dtype(dtype).name} ({np.finfo(dtype).max:.6g}) the inputs "
                f"are computed in"
            )
    return b


def float_array(x, name, min_ndim=1):
    """``x`` as an aligned ndarray of a supported floating dtype, in native byte order."""
    a = input_array(x, name)
    if compute_dtype(a.dtype) is None:
        kind = "floating" if a.dtype.kind == "f" else "non-floating"
        raise TypeError(
            f"{name} must be float16, bfloat16, float32 or float64, got {kind} dtype {a.dtype}"
        )
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least one dimension (the class axis), got a 0-d array"
        )
    return aligned(a)


def as_rows(a, dtype):
    """(N, C) array of the (..., C) array ``a`` in ``dtype``, last axis contiguous.

    A view where possible: only a non-contiguous class axis, an incompatible batch layout or
    a dtype conversion makes a copy.
    """
    n_rows = math.prod(a.shape[:-1])
    if a.dtype.itemsize == 2 and dtype == np.float32:  # float16, bfloat16: widened in parallel
        half = as_rows(a, a.dtype).view(np.uint16)
        rows = np.empty(half.shape, dtype=dtype)
        _kernels.widen_half_rows(half, is_bfloat16(a.dtype), rows, get_num_threads())
        return rows
    if a.dtype == dtype:  # no conversion (and no error state to set: it costs a call 3%)
        rows = a.reshape(n_rows, a.shape[-1])
    else:
        with np.errstate(over="ignore"):  # a value beyond the dtype's range rounds to inf
            rows = a.astype(dtype).reshape(n_rows, a.shape[-1])
    if rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        rows = np.ascontiguousarray(rows)
    return rows


def store(target, values, threads):
    """Write ``values`` (a contiguous compute-dtype array holding ``target``'s entries in C
    order) into ``target``, rounding to its dtype.

    Half-precision targets are rounded by xent's own kernel, to the same bits: numpy's
    conversion of subnormal float16 (small gradients are) is a hundred times slower.
    """
    if target.dtype.itemsize == 2 and values.dtype == np.float32 and values.size:
        bfloat = is_bfloat16(target.dtype)
        if target.flags.c_contiguous and target.dtype.isnative:
            _kernels.narrow_half(
                values.reshape(-1), bfloat, target.reshape(-1).view(np.uint16), threads
            )
            return
        bits = np.empty(values.size, dtype=np.uint16)
        _kernels.narrow_half(values.reshape(-1), bfloat, bits, threads)
        np.copyto(target, bits.view(target.dtype.newbyteorder("=")).reshape(target.shape))
        return
    with np.errstate(over="ignore"):  # float16 out: inf beyond 65504
        np.copyto(target, values.reshape(target.shape), casting="unsafe")


def half_rows(a):
    """(the float16 or bfloat16 bits of ``a`` as (N, C) uint16 rows, whether bfloat16), or None.

    None for other dtypes, and for rows so long that their kernels split them among threads:
    those are converted to float32 whole instead.
    """
    if a.dtype.itemsize != 2 or a.shape[-1] >= _kernels.split_row_length():
        return None
    rows = as_rows(a, a.dtype)
    return rows.view(np.uint16), is_bfloat16(a.dtype)


# ---- options ---------------------------------------------------------------------------------


def check_axis(axis, ndim):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int, got {type(axis).__name__} {axis!r}")
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(int(axis), ndim, "axis")
    return int(axis) % ndim


def check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_label_smoothing(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"label_smoothing must be a float in [0, 1], got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"label_smoothing must lie in [0, 1], got {value!r}")
    return value


_INTP = np.iinfo(np.intp)


def check_ignore_index(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {type(value).__name__} {value!r}")
    if not _INTP.min <= int(value) <= _INTP.max:
        raise ValueError(f"ignore_index={value} does not fit in a {_INTP.bits}-bit integer")
    return int(value)


def bool_option(value, name):
    """A yes/no option as a bool: True, False (numpy's too) or the ints 1 and 0.

    Anything else is refused rather than read by its truth value: ``normalize="no"`` would
    otherwise mean yes.
    """
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, numbers.Integral) and value in (0, 1)
    ):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def check_enabled(check):
    if check is not None and not isinstance(check, (bool, np.bool_)):
        raise TypeError(f"check must be True, False or None, got {check!r}")
    return _check.enabled(check)


# ---- labels and weights ------------------------------------------------------------------------


def class_weights(weight, n_classes):
    """Per-class weights as contiguous float64, or None."""
    if weight is None:
        return None
    w = input_array(weight, "weight")
    if w.dtype.kind not in "fiu":
        raise TypeError(f"weight must be a real (floating or integer) array, got dtype {w.dtype}")
    if w.shape != (n_classes,):
        raise ValueError(
            f"weight has shape {w.shape}, expected ({n_classes},): one weight per class"
        )
    return aligned(np.ascontiguousarray(fit_dtype(w, np.float64, "weight")))


def class_targets(target, batch_shape, logits_shape):
    """Integer class-index targets as contiguous intp of length N."""
    if target.dtype.kind not in "iu":
        raise TypeError(f"class-index target must have an integer dtype, got {target.dtype}")
    if target.shape != batch_shape:
        raise ValueError(
            f"target has shape {target.shape}, expected {batch_shape}: class indices have the "
            f"shape of logits {logits_shape} without its last (class) axis"
        )
    flat = target.reshape(-1)
    limit = _INTP.max
    if flat.dtype.kind == "u" and flat.size and flat.max() > limit:
        raise IndexError(bad_label_message(target, int(np.argmax(flat)), logits_shape[-1], None))
    return aligned(np.ascontiguousarray(flat, dtype=np.intp))


def bad_label_message(target, row, n_classes, ignore_index):
    where = np.unravel_index(row, target.shape) if target.ndim else ()
    index = ", ".join(str(int(i)) for i in where)
    allowed = f"[0, {n_classes})"
    if ignore_index is not None:
        allowed += f" or equal ignore_index={ignore_index}"
    return (
        f"target[{index}] = {target.reshape(-1)[row]} is out of range: class indices "
        f"must lie in {allowed}"
    )


def probability_rows(target, dtype):
    """Probability targets as (N, C) rows in the logits' compute dtype.

    A nonzero probability too small for that dtype becomes its smallest subnormal, not 0:
    a probability of exactly 0 is left out of the loss, a tiny one still meets a -inf logit.
    """
    p = float_array(target, "target")
    rows = as_rows(p, dtype)
    if p.dtype.itemsize > rows.dtype.itemsize:
        p_rows = p.reshape(rows.shape)
        lost = (rows == 0) & (p_rows != 0)
        if lost.any():  # rows is a fresh array here: the cast to a narrower dtype copied
            rows[lost] = np.copysign(np.finfo(dtype).smallest_subnormal, p_rows[lost])
    return rows


# ---- outputs and reductions ---------------------------------------------------------------------


def out_array(out, shape, dtype, name="out"):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if out.dtype.newbyteorder("=") != dtype:  # either byte order: out may be x itself
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if out_overlaps_itself(out):
        raise ValueError(
            f"{name} has elements that share memory with each other (a view such "
            f"as np.lib.stride_tricks.as_strided with overlapping rows, or a zero "
            f"stride): results would overwrite each other; pass an array whose "
            f"elements are distinct, such as a copy"
        )
    return out


def out_overlaps_itself(a):
    """Whether two elements of ``a`` may share bytes (numpy calls it internal overlap).

    The test numpy's ufuncs start with: sorted by |stride|, every axis of length > 1 must step
    past the whole extent of the axes with smaller strides. Layouts that fail it without
    actually overlapping (interleaved views) are counted as overlapping: ``out=`` is then
    refused, never written wrong.
    """
    if a.size <= 1:
        return False
    extent = a.itemsize  # bytes spanned by one element of the axes taken so far
    for length, stride in sorted(
        ((n, abs(s)) for n, s in zip(a.shape, a.strides) if n > 1), key=lambda axis: axis[1]
    ):
        if stride < extent:
            return True
        extent = stride * (length - 1) + extent
    return False


def writable_rows(out, rows):
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


def reduce_loss(total, denominator, row_loss, reduction, batch_shape, dtype):
    # Rounding to a narrower dtype may overflow to inf: that is the right answer, unwarned.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if reduction == "none":
            return row_loss.astype(dtype, copy=False).reshape(batch_shape)
        if reduction == "sum":
            return dtype.type(total)
        return dtype.type(np.float64(total) / np.float64(denominator))


def check_loss(name, result, reduction, n_rows, per_row_xent, per_row_ref, reduced_ref, dtype):
    """Check a loss: its rows (sampled when many), or its reduced value when rows are few."""
    if reduction != "none" and n_rows <= _check.MAX_CHECK_ROWS:
        _check.compare(f"{name} (reduction={reduction!r})", result, reduced_ref(), dtype)
        return
    sample = _check.sample_rows(n_rows)
    got = result.reshape(-1)[sample] if reduction == "none" else per_row_xent(sample)
    _check.compare(name, got, per_row_ref(sample), dtype, rows=sample)


def grad_output_factors(grad_output, reduction, batch_shape):
    """(scalar factor, per-row float64 factors or None) of a loss's incoming gradient."""
    if grad_output is None:
        return 1.0, None
    g = input_array(grad_output, "grad_output")
    if g.dtype.kind not in "fiu":
        raise TypeError(f"grad_output must be real, got dtype {g.dtype}")
    if reduction == "none":
        if g.shape != batch_shape:
            raise ValueError(
                f"grad_output has shape {g.shape}, expected {batch_shape}: one "
                f"value per row of the 'none' reduction"
            )
        return 1.0, aligned(
            np.ascontiguousarray(fit_dtype(g.reshape(-1), np.float64, "grad_output"))
        )
    if g.size != 1:
        raise ValueError(f"grad_output of a reduced loss must be a scalar, got shape {g.shape}")
    return float(fit_dtype(g.reshape(()), np.float64, "grad_output")), None


def gradient_array(out, x, **read):
    """The array a gradient of x goes into: ``out`` (checked; may be x itself) or a new one.

    ``read`` names the other inputs the kernels read while they write (target, weights,
    incoming gradient): ``out`` must not overlap any of them.
    """
    if out is None:
        return np.empty(x.shape, dtype=x.dtype)
    out_array(out, x.shape, x.dtype)
    for name, value in read.items():
        if isinstance(value, np.ndarray) and np.may_share_memory(out, value):
            raise ValueError(
                f"out must not overlap {name}: the gradient would overwrite it while it is read"
            )
    return out


def safe_divide(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def first_outside_unit(name, a):
    """The message naming the first entry of ``a`` outside [0, 1] (NaN included)."""
    flat = np.asarray(a).reshape(-1)
    index = int(np.argmax(~((flat >= 0) & (flat <= 1))))
    if np.ndim(a):
        name += "[" + ", ".join(str(int(i)) for i in np.unravel_index(index, np.shape(a))) + "]"
    return f"{name} = {flat[index].item()!r} is outside [0, 1]"
