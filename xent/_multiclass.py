"""Functions of class scores along one axis: logsumexp, log_softmax, softmax, cross_entropy
(and its gradient) and nll_loss.

Conventions shared by every function of xent:

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

Arguments are checked by :mod:`xent._validation`; the kernels are xent/_kernels.pyx.
"""

import functools

import numpy as np

from . import _check, _kernels
from . import reference as _reference
from ._threads import get_num_threads, shares_cpus
from ._validation import (as_rows, bad_label_message, bool_option, check_axis, check_enabled,
                          check_ignore_index, check_label_smoothing, check_loss,
                          check_reduction, class_targets, class_weights, compute_dtype,
                          float_array, grad_output_factors, gradient_array, half_rows,
                          out_array, probability_rows, reduce_loss, safe_divide, store,
                          writable_rows)

__all__ = ["CrossEntropyInputs", "check_z_loss", "cross_entropy", "cross_entropy_with_grad",
           "log_softmax", "logsumexp", "nll_loss", "softmax"]


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
    a = float_array(x, "x")
    ax = check_axis(axis, a.ndim)
    keepdims = bool_option(keepdims, "keepdims")
    threads = get_num_threads(num_threads)
    checking = check_enabled(check)
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
    if checking:
        rows = as_rows(moved, compute)
        sample = _check.sample_rows(rows.shape[0])
        _check.compare("logsumexp", result[sample], _reference.logsumexp(rows[sample]),
                       a.dtype, rows=sample)
    with np.errstate(over="ignore"):
        result = result.astype(a.dtype, copy=False).reshape(batch)
    if keepdims:
        result = np.expand_dims(result, ax)
    return result[()] if result.ndim == 0 else result


def _rowwise_transform(name, kernel, reference_fn, x, axis, out, num_threads, check):
    """Shared body of log_softmax and softmax: one kernel call per row, written to ``out``."""
    a = float_array(x, "x")
    ax = check_axis(axis, a.ndim)
    threads = get_num_threads(num_threads)
    checking = check_enabled(check)
    if out is None:
        out = np.empty(a.shape, dtype=a.dtype)
    else:
        out_array(out, a.shape, a.dtype)
    compute = compute_dtype(a.dtype)
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

class CrossEntropyInputs:
    """The checked arguments of a cross-entropy call, shared by the loss and its gradient."""

    def __init__(self, logits, target, weight, ignore_index, reduction, label_smoothing,
                 num_threads):
        x = float_array(logits, "logits")
        n_classes = x.shape[-1]
        if n_classes == 0:
            raise ValueError(f"logits has shape {x.shape}: the class axis (last) is empty")
        self.x, self.batch, self.n_classes = x, x.shape[:-1], n_classes
        self.target = t = np.asarray(target)
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
                    f"{x.shape} (for class indices use an integer dtype)")
            if self.ignore_index >= 0:
                raise ValueError(f"ignore_index={self.ignore_index} is not supported with "
                                 f"probability targets (as in PyTorch); leave it negative")
            self.probabilities = True
            self.target_rows = probability_rows(t, self.compute)
        elif t.dtype.kind in "iu":
            self.probabilities = False
            self.target_rows = class_targets(t, self.batch, x.shape)
        else:
            raise TypeError(f"target must hold integer class indices or floating "
                            f"probabilities, got dtype {t.dtype}")

    @functools.cached_property
    def rows(self):
        """The logits as (N, C) rows in the compute dtype (a view unless converted)."""
        return as_rows(self.x, self.compute)

    @property
    def options(self):
        """The options, as xent.reference takes them."""
        return dict(weight=self.weight, ignore_index=self.ignore_index,
                    label_smoothing=self.smoothing)

    def raise_bad_label(self, row):
        raise IndexError(bad_label_message(self.target, int(row), self.n_classes,
                                           self.ignore_index))

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
        check_loss(
            name, result, self.reduction, self.rows.shape[0],
            lambda s: self.losses(s)[2],
            lambda s: _reference.cross_entropy(self.rows[s], self.target_rows[s],
                                               reduction="none", **self.options),
            lambda: _reference.cross_entropy(self.rows, self.target_rows,
                                             reduction=self.reduction, **self.options),
            self.x.dtype)


@shares_cpus
def cross_entropy(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, z_loss=0.0, return_lse=False, num_threads=None,
                  check=None):
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
        In the dtype of ``logits``. Sums are accumulated in float64 in a fixed order, so
        the result has the same bits on any number of threads. With ``return_lse``, the
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
    """
    z_loss, return_lse = check_z_loss(z_loss), bool_option(return_lse, "return_lse")
    problem = CrossEntropyInputs(logits, target, weight, ignore_index, reduction,
                                  label_smoothing, num_threads)
    total, denominator, row_loss = problem.losses()
    result = reduce_loss(total, denominator, row_loss, problem.reduction, problem.batch,
                     problem.x.dtype)
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
def cross_entropy_with_grad(logits, target, *, weight=None, ignore_index=-100,
                            reduction="mean", label_smoothing=0.0, z_loss=0.0,
                            return_lse=False, grad_output=None, out=None, num_threads=None,
                            check=None):
    """Cross-entropy and its gradient with respect to the logits, in one pass.

    Parameters
    ----------
    logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, num_threads
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
    """
    z_loss, return_lse = check_z_loss(z_loss), bool_option(return_lse, "return_lse")
    problem = CrossEntropyInputs(logits, target, weight, ignore_index, reduction,
                                  label_smoothing, num_threads)
    factor, row_factors = grad_output_factors(grad_output, problem.reduction, problem.batch)
    # the z-loss and log-sum-exp options read the logits before the gradient may overwrite them
    lse = _row_logsumexp(problem) if z_loss or return_lse else None
    checking = check_enabled(check)
    x, rows, n_rows = problem.x, problem.rows, problem.rows.shape[0]
    grad = gradient_array(out, x, target=problem.target, weight=weight,
                           grad_output=grad_output)
    if checking:  # copied now: the gradient may overwrite the logits
        sample = _check.sample_rows(n_rows)
        saved = rows[sample].copy(), problem.target_rows[sample].copy()
    row_loss = np.empty(n_rows, dtype=problem.compute) if (
        problem.reduction == "none" or checking) else None
    dest = writable_rows(grad, rows)
    buffer = dest if dest is not None else np.empty(rows.shape, dtype=problem.compute)
    z_rows = (rows.copy() if z_loss and np.may_share_memory(buffer, rows) else rows) \
        if z_loss else None
    if problem.probabilities:
        scale = safe_divide(factor, n_rows) if problem.reduction == "mean" else factor
        total = _kernels.probability_loss_grad(
            rows, problem.target_rows, problem.weight, problem.smoothing, scale, row_factors,
            row_loss, buffer, problem.threads)
        denominator = n_rows
    else:
        weight_total, bad = _kernels.index_weight_total(
            problem.target_rows, problem.weight, problem.ignore_index, problem.n_classes)
        if bad >= 0:
            problem.raise_bad_label(bad)
        scale = safe_divide(factor, weight_total) if problem.reduction == "mean" else factor
        total, denominator = _kernels.index_loss_grad(
            rows, problem.target_rows, problem.weight, problem.ignore_index, problem.smoothing,
            scale, row_factors, row_loss, buffer, problem.threads)
    if z_loss:
        _add_z_loss_grad(problem, z_rows, lse, z_loss, factor, row_factors, buffer)
    if dest is None and rows.size:
        store(grad, buffer, problem.threads)
    loss = reduce_loss(total, denominator, row_loss, problem.reduction, problem.batch, x.dtype)
    if checking and not z_loss:  # the reference check covers the loss without a z-loss
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
    if z_loss:
        loss = _add_z_loss(problem, total, denominator, row_loss, lse, z_loss)
    if return_lse:
        return loss, grad, _lse_result(problem, lse)
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
    x = float_array(log_probs, "log_probs")
    n_classes = x.shape[-1]
    if n_classes == 0:
        raise ValueError(f"log_probs has shape {x.shape}: the class axis (last) is empty")
    batch = x.shape[:-1]
    t = np.asarray(target)
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
        row_loss = np.empty(r.shape[0], dtype=compute) if (
            reduction == "none" or sample is not None) else None
        total, weight_sum, bad = _kernels.index_loss(r, labels_used, w, ignore, 0.0, True,
                                                     row_loss, threads)
        if bad >= 0:
            raise IndexError(bad_label_message(t, int(bad), n_classes, ignore))
        return total, weight_sum, row_loss

    total, denominator, row_loss = compute_rows()
    result = reduce_loss(total, denominator, row_loss, reduction, batch, x.dtype)
    if checking:
        options = dict(weight=w, ignore_index=ignore)
        check_loss(
            "nll_loss", result, reduction, rows.shape[0],
            lambda s: compute_rows(s)[2],
            lambda s: _reference.nll_loss(rows[s], labels[s], reduction="none", **options),
            lambda: _reference.nll_loss(rows, labels, reduction=reduction, **options),
            x.dtype)
    return result


# ---- z-loss and the per-row log-sum-exp (cross_entropy's z_loss= and return_lse=) -----------

def check_z_loss(value):
    """The z-loss coefficient as a float, or a ValueError naming the argument."""
    z = float(value)
    if not (np.isfinite(z) and z >= 0):
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
    return lse.astype(np.float64)


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
            return dtype.type(np.float64(total) / np.float64(denominator)
                              + z_total / np.float64(count))


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
