"""Helpers shared by the reference modules: reductions, labels, weights, gradient scale."""

import numpy as np

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_losses(losses, denominator, reduction):
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


def class_weights(weight, n_classes):
    if weight is None:
        return np.ones(n_classes, dtype=np.float64)
    return np.asarray(weight, dtype=np.float64)


def class_index_rows(target, ignore_index, w):
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


def gather(values, index):
    """``values[..., index[...]]``: one entry per row along the last axis."""
    return np.take_along_axis(values, index[..., None], axis=-1)[..., 0]


# ---------------------------------------------------------------------------
# Information quantities
# ---------------------------------------------------------------------------


def result(out):
    """A float64 array, or a NumPy float64 scalar when 0-d."""
    out = np.asarray(out, dtype=np.float64)
    return out[()] if out.ndim == 0 else out


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------


def grad_scale(reduction, denominator, grad_output, shape):
    """The factor ``g`` multiplying each row's (or element's) gradient.

    ``"none"``: `grad_output` broadcast to `shape` (default ones).
    ``"sum"``: `grad_output` (a scalar, default 1).  ``"mean"``:
    ``grad_output / denominator`` (inf or NaN for a zero denominator).
    """
    if reduction == "none":
        if grad_output is None:
            return np.ones(shape, dtype=np.float64)
        return np.broadcast_to(np.asarray(grad_output, dtype=np.float64), shape)
    g = np.float64(1.0) if grad_output is None else np.asarray(grad_output, dtype=np.float64)
    if g.ndim != 0:
        g = g.reshape(())  # a one-element array; anything else raises
    if reduction == "sum":
        return g
    with np.errstate(divide="ignore", invalid="ignore"):
        return g / np.float64(denominator)
