"""Per-row sample weights (scikit-learn's ``sample_weight``) for the losses.

scikit-learn's rule for a weighted mean is ``sum_i s_i l_i / sum_i s_i``; with PyTorch's
per-class weights ``w`` as well, a row of class ``t`` weighs ``s_i w[t]`` in the denominator
(its loss already holds ``w[t]``), so each rule is the other's special case. The per-row
losses come from the kernels (``reduction="none"``); the sums are exact and rounded once
(:func:`xent._kernels.exact_sum`), like every reduction of xent.
"""

import numpy as np

from . import _kernels
from ._validation import check_reduction


def sample_weights(sample_weight, shape):
    """``sample_weight`` as float64 of ``shape``: one weight per row (its shape the leading
    axes of ``shape``), broadcast over the trailing axes. Weights must be finite."""
    sw = np.asarray(sample_weight)
    if sw.dtype.kind not in "iuf":
        raise TypeError(f"sample_weight must be real numbers, got dtype {sw.dtype}")
    sw = sw.astype(np.float64)
    if sw.shape != tuple(shape[: sw.ndim]):
        raise ValueError(
            f"sample_weight has shape {sw.shape}: expected one weight per row, "
            f"shape {tuple(shape[:1])} (or the leading axes of {tuple(shape)})"
        )
    if not np.all(np.isfinite(sw)):
        raise ValueError("sample_weight must be finite")
    return np.broadcast_to(sw.reshape(sw.shape + (1,) * (len(shape) - sw.ndim)), shape)


def class_row_weights(target, weight, ignore_index):
    """w[t_i] per row of class-index targets (1 without class weights), 0 for ignored rows."""
    t = np.asarray(target)
    ignored = t == ignore_index
    safe = np.where(ignored, 0, t)
    w = np.ones(1) if weight is None else np.asarray(weight, dtype=np.float64)
    row_w = w[safe] if weight is not None else np.ones(t.shape)
    return np.where(ignored, 0.0, row_w)


def exact_total(values):
    """The exact sum of a float64 array, rounded once."""
    return _kernels.exact_sum(np.ascontiguousarray(values, dtype=np.float64).reshape(-1))


def mean_scale(reduction, denominators):
    """The factor of each row's gradient: 1 / (the weighted mean's denominator) for "mean"."""
    if reduction != "mean":
        return 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return float(np.float64(1.0) / np.float64(exact_total(denominators)))


def reduce_weighted(row_loss, sw, denominators, reduction, dtype):
    """Per-row losses times their sample weights, or their exact sum or weighted mean."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        weighted = np.asarray(row_loss, dtype=np.float64) * sw
        if reduction == "none":
            return weighted.astype(dtype)
        total = exact_total(weighted)
        if reduction == "sum":
            return dtype.type(total)
        return dtype.type(np.float64(total) / np.float64(exact_total(denominators)))


def row_grad_output(reduction, grad_output, sw, denominators):
    """The per-row (per-element) grad_output that makes a reduction="none" gradient the
    gradient of the sample-weighted reduction."""
    reduction = check_reduction(reduction)
    with np.errstate(over="ignore", invalid="ignore"):  # huge weights: inf, as the losses
        if reduction == "none":
            g = 1.0 if grad_output is None else np.asarray(grad_output, dtype=np.float64)
            return np.broadcast_to(g, sw.shape) * sw
        g = 1.0 if grad_output is None else float(np.asarray(grad_output, dtype=np.float64))
        return g * mean_scale(reduction, denominators) * sw
