"""Binary cross-entropy of probabilities and of logits, and their gradients (PyTorch's rules).

Elementwise losses: input and target have one shape; ``weight`` (and ``pos_weight``)
broadcast to it. The kernels read every operand in place where its last axis is contiguous
(a weight of shape (C,) is never expanded), and sum in double in a fixed order.
"""

import numpy as np

from . import _check, _kernels
from . import _sample_weight as _sw
from . import reference as _reference
from ._threads import get_num_threads, shares_cpus
from ._validation import (
    aligned,
    check_enabled,
    check_reduction,
    compute_dtype,
    first_outside_unit,
    fit_dtype,
    float_array,
    grad_output_factors,
    gradient_array,
    input_array,
    safe_divide,
    store,
    writable_rows,
)

_Element = _kernels.Element


def _rows_of(a):
    """(N, C) view of an array whose last axis holds C entries (a 0-d array is one entry)."""
    if a.ndim == 0:
        return a.reshape(1, 1)
    # not reshape(-1, C): with C = 0 (an empty input) -1 is ambiguous and numpy refuses
    return a.reshape(int(np.prod(a.shape[:-1], dtype=np.int64)), a.shape[-1])


def _real_dtype(dtype):
    """Integers and the floats xent computes with, bfloat16 included (numpy kind "V")."""
    return dtype.kind in "fiu" or compute_dtype(dtype) is not None


def _operand(value, name, shape, dtype):
    """``value`` broadcast to ``shape`` as (N, C) rows of ``dtype`` with a contiguous last axis.

    None gives a row of ones repeated (no N x C array). A broadcast that leaves the last axis
    with stride 0 (a weight of shape (N, 1)) is expanded.
    """
    n_cols = shape[-1] if shape else 1
    if value is None:
        ones = np.ones(n_cols, dtype=dtype)
        return np.broadcast_to(ones, (int(np.prod(shape[:-1], dtype=np.int64)), n_cols))
    a = input_array(value, name)
    if not _real_dtype(a.dtype):
        raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
    a = fit_dtype(a, dtype, name)
    try:
        b = np.broadcast_to(aligned(a), shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {a.shape} does not broadcast to the input's shape {shape}"
        ) from None
    rows = _rows_of(b)
    if rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        rows = np.ascontiguousarray(rows)
    return rows


def _require_unit(name, a, block=1 << 20):
    """Raise ValueError naming the first entry of ``a`` outside [0, 1], scanning in blocks."""
    flat = a.reshape(-1)
    for start in range(0, flat.size, block):
        part = flat[start : start + block]
        if not np.all((part >= 0) & (part <= 1)):
            raise ValueError(first_outside_unit(name, a))


def _binary(
    kind,
    input,
    target,
    weight,
    pos_weight,
    reduction,
    num_threads,
    check,
    with_grad=False,
    grad_output=None,
    out=None,
    sample_weight=None,
):
    if sample_weight is not None:  # the elementwise losses, then scikit-learn's weighted mean
        reduction = check_reduction(reduction)
        sw = _sw.sample_weights(sample_weight, np.shape(input))
        if with_grad:
            rows, grad = _binary(
                kind,
                input,
                target,
                weight,
                pos_weight,
                "none",
                num_threads,
                check,
                True,
                _sw.row_grad_output(reduction, grad_output, sw, sw),
                out,
            )
            return _sw.reduce_weighted(rows, sw, sw, reduction, np.asarray(rows).dtype), grad
        rows = _binary(kind, input, target, weight, pos_weight, "none", num_threads, check)
        return _sw.reduce_weighted(rows, sw, sw, reduction, np.asarray(rows).dtype)
    logits = kind == _Element.ELEMENT_BCE_LOGITS
    input_name = "logits" if logits else "probs"
    name = (
        "binary_cross_entropy"
        + ("_with_logits" if logits else "")
        + ("_with_grad" if with_grad else "")
    )
    x = float_array(input, input_name, min_ndim=0)
    y = input_array(target, "target")
    if not _real_dtype(y.dtype):
        raise TypeError(f"target must be real (probabilities in [0, 1]), got dtype {y.dtype}")
    if y.shape != x.shape:
        raise ValueError(f"target has shape {y.shape}, expected the {input_name}' shape {x.shape}")
    reduction = check_reduction(reduction)
    threads = get_num_threads(num_threads)
    checking = check_enabled(check)
    compute = compute_dtype(x.dtype)
    shape = x.shape
    if pos_weight is not None and not logits:
        raise TypeError("pos_weight applies to binary_cross_entropy_with_logits only")
    x_rows = _operand(x, input_name, shape, compute)
    y_rows = _operand(y, "target", shape, compute)
    w_rows = _operand(weight, "weight", shape, compute)
    pw_rows = _operand(pos_weight, "pos_weight", shape, compute)
    n_elements = x.size

    losses = np.empty(x_rows.shape, dtype=compute) if (reduction == "none" or checking) else None
    grad = dest = None
    scale, g_rows = 1.0, _operand(None, "grad_output", shape, compute)
    if with_grad:
        factor, _ = grad_output_factors(grad_output if reduction != "none" else None, reduction, ())
        if reduction == "none" and grad_output is not None:
            g = input_array(grad_output, "grad_output")
            if g.shape != shape:
                raise ValueError(
                    f"grad_output has shape {g.shape}, expected {shape}: one "
                    f"value per element of the 'none' reduction"
                )
            g_rows = _operand(g, "grad_output", shape, compute)
        scale = safe_divide(factor, n_elements) if reduction == "mean" else factor
        grad = gradient_array(
            out, x, target=y, weight=weight, pos_weight=pos_weight, grad_output=grad_output
        )
        # not _rows_of(grad): reshaping a Fortran-ordered out copies it, and the gradient
        # went into that copy
        dest = writable_rows(grad, x_rows)
        if dest is not None and np.may_share_memory(dest, x_rows):
            # In place: an invalid input must be found (and named) before the gradient
            # overwrites anything.
            _require_unit("target", y)
            if not logits:
                _require_unit(input_name, x)
    if checking:  # copied now: the gradient may overwrite the input
        sample = _check.sample_rows(x_rows.shape[0])
        saved = [np.array(a[sample]) for a in (x_rows, y_rows, w_rows, pw_rows, g_rows)]
    buffer = None
    if with_grad:
        buffer = dest if dest is not None else np.empty(x_rows.shape, dtype=compute)
    total, bad = _kernels.elementwise(
        kind, x_rows, y_rows, w_rows, pw_rows, losses, buffer, scale, g_rows, threads
    )
    if bad:
        if not logits:
            _require_unit(input_name, x)
        _require_unit("target", y)
    if with_grad and dest is None:
        store(grad, buffer.reshape(shape), threads)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if reduction == "none":
            loss = losses.reshape(shape).astype(x.dtype, copy=False)
        elif reduction == "sum":
            loss = x.dtype.type(total)
        else:
            loss = x.dtype.type(np.float64(total) / np.float64(n_elements))

    if checking:
        _check_binary(name, logits, losses, grad, sample, saved, scale, x_rows.shape, x.dtype)
    return (loss, grad) if with_grad else loss


def _check_binary(name, logits, losses, grad, sample, saved, scale, rows_shape, dtype):
    """Check mode: the sampled rows' losses (and gradients) against xent.reference."""
    xs, ys, ws, pws, gs = saved
    if logits:
        ref_loss = _reference.binary_cross_entropy_with_logits(
            xs, ys, weight=ws, pos_weight=pws, reduction="none"
        )
    else:
        ref_loss = _reference.binary_cross_entropy(xs, ys, weight=ws, reduction="none")
    _check.compare(f"{name} (loss)", losses[sample], ref_loss, dtype, rows=sample)
    if grad is None:
        return
    # per unit of incoming gradient, so that the tolerance means the same at any scale
    g = scale * gs.astype(np.float64)
    unit = np.where(g != 0, np.abs(g), 1.0)
    if logits:
        expected = _reference.binary_cross_entropy_with_logits_grad(
            xs, ys, weight=ws, pos_weight=pws, reduction="none", grad_output=g
        )
    else:
        expected = _reference.binary_cross_entropy_grad(
            xs, ys, weight=ws, reduction="none", grad_output=g
        )
    got = np.asarray(grad).reshape(rows_shape)[sample]
    _check.compare(f"{name} (gradient)", got / unit, expected / unit, dtype, rows=sample, unit=unit)


@shares_cpus
def binary_cross_entropy(
    probs,
    target,
    *,
    weight=None,
    reduction="mean",
    sample_weight=None,
    num_threads=None,
    check=None,
):
    """Binary cross-entropy between probabilities and targets, as PyTorch's.

    Parameters
    ----------
    probs : array_like
        Probabilities in [0, 1], float16/float32/float64, any shape.
    target : array_like
        Targets in [0, 1] (soft targets allowed), the shape of ``probs``; computed in the
        dtype of ``probs`` (like every operand).
    weight : array_like, optional
        Rescaling weights, broadcast to the shape of ``probs``.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the number of elements (NaN for none).
    sample_weight : array_like, optional
        One weight per sample (its shape the leading axes of the input's), scikit-learn's
        rule: ``"none"`` gives ``s l``, ``"sum"`` their sum, ``"mean"`` that sum divided by
        ``sum s`` over every element (exact sums). Combines with ``weight``, which scales
        the losses without entering the mean's denominator (PyTorch's).
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute (a sample of) the elements with :mod:`xent.reference`.

    Returns
    -------
    scalar or numpy.ndarray
        ``-w (y log x + (1 - y) log(1 - x))`` per element with each log clamped at -100, as
        PyTorch does, or its reduction; in the dtype of ``probs``.

    Raises
    ------
    ValueError
        An entry of ``probs`` or ``target`` outside [0, 1] (or NaN), named by its index.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> probs = np.array([0.9, 0.2, 0.6])
    >>> target = np.array([1.0, 0.0, 1.0])
    >>> round(float(xent.binary_cross_entropy(probs, target)), 4)
    0.2798
    >>> np.round(xent.binary_cross_entropy(probs, target, reduction="none"), 4)
    array([0.1054, 0.2231, 0.5108])

    Each log is clamped at -100 as in PyTorch, so a confident wrong answer costs 100, not inf:

    >>> print(xent.binary_cross_entropy(np.array([0.0]), np.array([1.0]), reduction="sum"))
    100.0
    """
    return _binary(
        _Element.ELEMENT_BCE,
        probs,
        target,
        weight,
        None,
        reduction,
        num_threads,
        check,
        sample_weight=sample_weight,
    )


@shares_cpus
def binary_cross_entropy_with_grad(
    probs,
    target,
    *,
    weight=None,
    reduction="mean",
    grad_output=None,
    out=None,
    sample_weight=None,
    num_threads=None,
    check=None,
):
    """:func:`binary_cross_entropy` and its gradient with respect to ``probs``, in one pass.

    The gradient is PyTorch's: ``g w (x - y) / max(x (1 - x), 1e-12)``. ``grad_output`` is
    a scalar, or for ``reduction="none"`` an array of the input's shape; ``out`` (the input's
    shape and dtype) may be ``probs`` itself. Returns ``(loss, grad)``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> probs = np.array([0.9, 0.2, 0.6])
    >>> target = np.array([1.0, 0.0, 1.0])
    >>> loss, grad = xent.binary_cross_entropy_with_grad(probs, target)
    >>> round(float(loss), 4)
    0.2798
    >>> np.round(grad, 4)  # (x - y) / (x (1 - x)) / 3 elements
    array([-0.3704,  0.4167, -0.5556])

    With ``reduction="none"``, ``grad_output`` holds one incoming gradient per element:

    >>> loss, grad = xent.binary_cross_entropy_with_grad(
    ...     probs, target, reduction="none", grad_output=np.array([1.0, 0.0, 2.0])
    ... )
    >>> np.round(grad, 4)
    array([-1.1111,  0.    , -3.3333])
    """
    return _binary(
        _Element.ELEMENT_BCE,
        probs,
        target,
        weight,
        None,
        reduction,
        num_threads,
        check,
        with_grad=True,
        grad_output=grad_output,
        out=out,
        sample_weight=sample_weight,
    )


@shares_cpus
def binary_cross_entropy_with_logits(
    logits,
    target,
    *,
    weight=None,
    pos_weight=None,
    reduction="mean",
    sample_weight=None,
    num_threads=None,
    check=None,
):
    """Binary cross-entropy of logits, as PyTorch's: stable for logits of any magnitude.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores, float16/float32/float64, any shape.
    target : array_like
        Targets in [0, 1], the shape of ``logits``; computed in the dtype of ``logits``
        (like every operand).
    weight : array_like, optional
        Rescaling weights, broadcast to the shape of ``logits``.
    pos_weight : array_like, optional
        Weight of the positive term, broadcast to the shape of ``logits`` (typically one per
        class, on the last axis).
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the number of elements.
    sample_weight : array_like, optional
        One weight per sample (its shape the leading axes of the input's), scikit-learn's
        rule: ``"none"`` gives ``s l``, ``"sum"`` their sum, ``"mean"`` that sum divided by
        ``sum s`` over every element (exact sums). Combines with ``weight``, which scales
        the losses without entering the mean's denominator (PyTorch's).
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute (a sample of) the elements with :mod:`xent.reference`.

    Returns
    -------
    scalar or numpy.ndarray
        ``w ((1 - y) x + L log(1 + exp(-x)))`` with ``L = 1 + (pos_weight - 1) y``, computed
        as ``log1p(exp(-|x|)) + max(-x, 0)`` so that no ``|x|`` overflows, or its reduction.

    Raises
    ------
    ValueError
        A target outside [0, 1] (or NaN), named by its index.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, -1.0], [0.5, 40.0]])
    >>> target = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(xent.binary_cross_entropy_with_logits(logits, target)), 4)
    0.3536

    ``pos_weight`` (one per class, on the last axis) weighs the positive term, as for an
    imbalanced label:

    >>> pos_weight = np.array([3.0, 1.0])
    >>> np.round(
    ...     xent.binary_cross_entropy_with_logits(
    ...         logits, target, pos_weight=pos_weight, reduction="none"
    ...     ),
    ...     4,
    ... )
    array([[0.3808, 0.3133],
           [0.9741, 0.    ]])
    """
    return _binary(
        _Element.ELEMENT_BCE_LOGITS,
        logits,
        target,
        weight,
        pos_weight,
        reduction,
        num_threads,
        check,
        sample_weight=sample_weight,
    )


@shares_cpus
def binary_cross_entropy_with_logits_with_grad(
    logits,
    target,
    *,
    weight=None,
    pos_weight=None,
    reduction="mean",
    grad_output=None,
    out=None,
    sample_weight=None,
    num_threads=None,
    check=None,
):
    """:func:`binary_cross_entropy_with_logits` and its gradient, in one pass.

    The gradient is ``g w (L sigmoid(x) - pos_weight y)``; ``grad_output`` and ``out`` as for
    :func:`binary_cross_entropy_with_grad` (``out`` may be ``logits`` itself). Returns
    ``(loss, grad)``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([2.0, -1.0, 0.5])
    >>> target = np.array([1.0, 0.0, 0.0])
    >>> loss, grad = xent.binary_cross_entropy_with_logits_with_grad(
    ...     logits, target, reduction="sum"
    ... )
    >>> round(float(loss), 4)
    1.4143
    >>> np.round(grad, 4)  # sigmoid(logits) - target
    array([-0.1192,  0.2689,  0.6225])

    ``out=logits`` writes the gradient over the logits:

    >>> _, grad = xent.binary_cross_entropy_with_logits_with_grad(logits, target, out=logits)
    >>> grad is logits
    True
    >>> np.round(logits, 4)
    array([-0.0397,  0.0896,  0.2075])
    """
    return _binary(
        _Element.ELEMENT_BCE_LOGITS,
        logits,
        target,
        weight,
        pos_weight,
        reduction,
        num_threads,
        check,
        with_grad=True,
        grad_output=grad_output,
        out=out,
        sample_weight=sample_weight,
    )


@shares_cpus
def binary_cross_entropy_with_logits_grad_hess(
    logits,
    target,
    *,
    weight=None,
    pos_weight=None,
    sample_weight=None,
    num_threads=None,
    check=None,
):
    """Gradient and second derivative of each element's BCE with logits, in one pass.

    Parameters
    ----------
    logits, target, weight, pos_weight, sample_weight, num_threads, check
        As for :func:`binary_cross_entropy_with_logits` (``sample_weight`` scales each
        sample's elements).

    Returns
    -------
    grad, hess : numpy.ndarray
        Of the logits' shape and dtype, not reduced: ``c (L sigmoid(x) - pw y)`` and
        ``c L sigmoid(x) sigmoid(-x)`` with ``L = 1 + (pw - 1) y`` and ``c = weight *
        sample_weight``. The gradient is the kernel's (``(1 - y) sigmoid(x) - pw y
        sigmoid(-x)``, accurate where sigmoid(x) is near 1); sigmoid(x) and sigmoid(-x) both
        come from ``exp(-|x|)``, so the Hessian keeps its relative accuracy at any ``|x|``.

    Notes
    -----
    The loss is scikit-learn's ``HalfBinomialLoss`` (``log(1 + e^x) - y x``: half the
    binomial deviance, the same function as PyTorch's BCE with logits), so with no
    ``weight`` and ``pos_weight`` the result equals its ``gradient_hessian``. For XGBoost
    (``obj=``) or LightGBM (``objective=``) a binary custom objective is::

        def objective(predt, dtrain):
            w = dtrain.get_weight()
            return xent.binary_cross_entropy_with_logits_grad_hess(
                predt, dtrain.get_label().astype(predt.dtype), sample_weight=w if w.size else None
            )

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits, target = np.array([-1.0, 0.0, 2.0]), np.array([0.0, 1.0, 1.0])
    >>> grad, hess = xent.binary_cross_entropy_with_logits_grad_hess(logits, target)
    >>> np.round(grad, 4), np.round(hess, 4)
    (array([ 0.2689, -0.5   , -0.1192]), array([0.1966, 0.25  , 0.105 ]))

    ``pos_weight`` multiplies the positive targets' terms (here doubles them):

    >>> grad, hess = xent.binary_cross_entropy_with_logits_grad_hess(logits, target, pos_weight=2.0)
    >>> np.round(grad, 4), np.round(hess, 4)
    (array([ 0.2689, -1.    , -0.2384]), array([0.1966, 0.5   , 0.21  ]))
    """
    _, grad = _binary(
        _Element.ELEMENT_BCE_LOGITS,
        logits,
        target,
        weight,
        pos_weight,
        "none",
        num_threads,
        check,
        with_grad=True,
        sample_weight=sample_weight,
    )
    x = np.asarray(grad.dtype.type(0) + np.asarray(logits, dtype=grad.dtype), dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # huge weights: inf, unwarned
        c = (
            np.ones(x.shape)
            if weight is None
            else np.broadcast_to(np.asarray(weight, dtype=np.float64), x.shape)
        )
        if sample_weight is not None:
            c = c * _sw.sample_weights(sample_weight, x.shape)
        pw = (
            1.0
            if pos_weight is None
            else np.broadcast_to(np.asarray(pos_weight, dtype=np.float64), x.shape)
        )
        e = np.exp(-np.abs(x))
        sig_big, sig_small = 1.0 / (1.0 + e), e / (1.0 + e)
        hess = c * (1.0 + (pw - 1.0) * y) * sig_big * sig_small
        hess = np.asarray(hess).astype(grad.dtype)
    if check_enabled(check):
        want = _reference.binary_cross_entropy_with_logits_grad_hess(
            x, y, weight=weight, pos_weight=pos_weight, sample_weight=sample_weight
        )
        _check.compare(
            "binary_cross_entropy_with_logits_grad_hess (hess)", hess, want[1], grad.dtype
        )
    return grad, hess
