"""xent over ``dask.array``: evaluation and cross-entropy of datasets spread over a cluster.

Needs the ``dask`` extra (``pip install "xent[dask]"``); ``import xent`` never imports dask.

Logits are a ``dask.array.Array`` of shape (N, C) (leading batch axes are flattened), chunked
along rows; a chunked class axis is merged into one chunk per row block. Every block is
evaluated where it lives by xent's kernels, and only partial sums travel: sums and counts,
never an average of averages. :func:`evaluate` returns the same bits as
:func:`xent.evaluate` on the whole array in one machine's memory, for any chunking (each
block ships the raw per-row values of the summation group it shares with its neighbour; see
:mod:`xent.evaluate`). The computation runs on dask's current scheduler: the
``distributed.Client`` made last, if any, else the local threads.
"""

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('xent.dask needs dask: pip install "xent[dask]"') from exc

import numpy as np

from . import _evaluation as _ev
from . import _sample_weight as _sw
from ._validation import compute_dtype, input_array

__all__ = ["evaluate", "cross_entropy"]


def _logits_rows(logits):
    if not isinstance(logits, da.Array):
        raise TypeError(
            f"logits must be a dask.array.Array, got {type(logits).__name__} "
            f"(use xent.evaluate for numpy arrays and files)"
        )
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits has shape {logits.shape}: it needs a non-empty class axis")
    if compute_dtype(logits.dtype) is None:
        raise TypeError(
            f"logits must be float16, bfloat16, float32 or float64, got dtype {logits.dtype}"
        )
    if any(np.isnan(s) for s in logits.shape):
        raise ValueError("logits has unknown chunk sizes: call logits.compute_chunk_sizes()")
    x = logits.reshape(-1, logits.shape[-1]) if logits.ndim != 2 else logits
    if x.numblocks[1] != 1:
        x = x.rechunk({1: -1})
    return x


def _aligned(target, x, name, per_class):
    """target as a dask array with x's row chunks (x's chunks too, if per_class)."""
    t = target if isinstance(target, da.Array) else da.from_array(input_array(target, name))
    if per_class:
        if t.shape != x.shape:
            raise ValueError(f"{name} has shape {t.shape}, expected {x.shape}")
        return t.rechunk(x.chunks)
    t = t.reshape(-1) if t.ndim != 1 else t
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has {t.shape[0]} rows, logits {x.shape[0]}")
    return t.rechunk((x.chunks[0],))


def _row_starts(x):
    return np.concatenate([[0], np.cumsum(x.chunks[0])[:-1]]).astype(np.int64)


def _evaluate_block(
    x, y, row0, requested, weight, ignore_index, chunk_rows, num_threads, group, calibration_bins=15
):
    """A worker's part: the BlockSummary of one row block."""
    opts = _ev.EvaluationOptions(requested, weight, ignore_index, num_threads)
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    step = chunk_rows or _ev.default_chunk_rows(x.shape[1], x.dtype)
    values, ranks = [], []
    for start in range(0, x.shape[0], step):
        v, r = _ev.evaluate_chunk(
            x[start : start + step], y[start : start + step], row0 + start, opts
        )
        values.append(v)
        ranks.append(r)
    values = np.concatenate(values) if values else np.empty((0, _ev.FIELDS))
    ranks = np.concatenate(ranks) if ranks else np.empty(0, dtype=np.intp)
    return _ev.block_summary(values, ranks, row0, opts.topk, group, calibration_bins)


def evaluate(
    logits,
    labels,
    *,
    topk=(1, 5),
    weight=None,
    ignore_index=-100,
    chunk_rows=None,
    num_threads=1,
    calibration="mass",
    calibration_bins=15,
):
    """:func:`xent.evaluate` of dask arrays: the same report, bit for bit.

    Parameters
    ----------
    logits : dask.array.Array, shape (..., C)
        float16/float32/float64, chunked along the rows (the class axis is merged if split).
    labels : dask.array.Array or array_like, shape (...)
        Integer class indices; rechunked to the logits' row blocks.
    topk, weight, ignore_index, chunk_rows, calibration, calibration_bins
        As for :func:`xent.evaluate` (calibration from integer histograms merged exactly).
    num_threads : int or None, optional
        Kernel threads per dask task (default 1: dask runs one task per worker thread).

    Returns
    -------
    xent.EvaluationReport

    Notes
    -----
    Computes at once on dask's current scheduler (a ``distributed.Client`` if one exists).
    Only small summaries come back: per block, the whole-group sums and at most one group's
    raw per-row values.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import xent
    >>> import xent.dask
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0], [0.0, 0.0, 0.0]])
    >>> labels = np.array([0, 2, 0, -100])
    >>> blocks = da.from_array(logits, chunks=(2, 3))  # two blocks of two rows
    >>> report = xent.dask.evaluate(blocks, da.from_array(labels, chunks=2), topk=(1, 2))
    >>> round(report.loss, 4), round(report.accuracy, 4), report.count
    (0.485, 0.6667, 3)
    >>> report == xent.evaluate(logits, labels, topk=(1, 2))  # bit for bit
    True
    """
    x = _logits_rows(logits)
    y = _aligned(labels, x, "labels", per_class=False)
    if np.dtype(y.dtype).kind not in "iu":
        raise TypeError(f"labels must hold integer class indices, got dtype {y.dtype}")
    opts = _ev.EvaluationOptions(topk, weight, ignore_index, num_threads)  # checked first
    opts.class_weights(x.shape[1])
    kind, bins = _ev._cal.check_calibration(calibration, calibration_bins)
    chunk = _ev.check_chunk_rows(chunk_rows)
    weight = opts.weights[x.shape[1]]
    task = dask.delayed(_evaluate_block, pure=True)
    parts = [
        task(
            xb,
            yb,
            int(row0),
            opts.requested,
            weight,
            opts.ignore_index,
            chunk,
            num_threads,
            _ev.GROUP_ROWS,
            bins,
        )
        for xb, yb, row0 in zip(x.to_delayed().ravel(), y.to_delayed().ravel(), _row_starts(x))
    ]
    summaries = dask.compute(*parts)
    acc = _ev.Accumulator(opts.topk, opts.requested, calibration=kind, calibration_bins=bins)
    for s in summaries:
        acc.merge(s)
    return acc.report()


def _loss_block(x, t, row0, weight, ignore_index, label_smoothing, num_threads):
    """A worker's part of cross_entropy: the block's sum of row losses and its rows' weights
    (the mean's denominator) as the kernel's exact sums, unrounded, in a few doubles each
    (``xent_exact_parts``), so the sums over all blocks are exact whatever the chunking."""
    from ._multiclass import CrossEntropyInputs

    try:
        problem = CrossEntropyInputs(
            np.asarray(x), np.asarray(t), weight, ignore_index, "sum", label_smoothing, num_threads
        )
        loss_parts, weight_parts, _ = problem.losses(parts=True)
    except IndexError as exc:
        raise IndexError(f"in the row block starting at row {row0}: {exc}") from None
    if problem.probabilities:
        weight_parts = float(problem.rows.shape[0])  # a count of rows: exact
    # an empty block's kernel returns plain zeros
    return np.atleast_1d(np.asarray(loss_parts, float)), np.atleast_1d(
        np.asarray(weight_parts, float)
    )


def _none_block(x, t, weight, ignore_index, label_smoothing, num_threads):
    from ._multiclass import cross_entropy as ce

    return ce(
        x,
        t,
        weight=weight,
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=label_smoothing,
        num_threads=num_threads,
    )


def cross_entropy(
    logits,
    target,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    num_threads=1,
):
    """:func:`xent.cross_entropy` of dask arrays.

    Parameters
    ----------
    logits : dask.array.Array, shape (..., C)
    target : dask.array.Array or array_like
        Class indices of shape (...), or probabilities of the logits' shape.
    weight, ignore_index, reduction, label_smoothing
        As for :func:`xent.cross_entropy`.
    num_threads : int or None, optional
        Kernel threads per dask task (default 1).

    Returns
    -------
    numpy scalar, or dask.array.Array for ``reduction="none"`` (lazy)
        ``"mean"`` and ``"sum"`` compute at once: each block's exact sum of row losses and
        of its denominator (summed weights, or row count for probabilities) comes back as a
        few doubles that lose nothing (the kernel's exact accumulator, unrounded); the totals
        are summed exactly and rounded once, the mean is their ratio. The result has the same
        bits for any chunking, any order of the blocks and any thread count, and the same
        bits as :func:`xent.cross_entropy` on the whole array in one machine's memory, for
        every dtype (float32 and half-precision rows are summed as the kernel's float64 row
        values, before their rounding to the logits' dtype, in both).

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import xent.dask
    >>> logits = da.from_array(
    ...     np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]]), chunks=(2, 3)
    ... )
    >>> target = np.array([0, 2, 1])
    >>> round(float(xent.dask.cross_entropy(logits, target)), 4)
    0.4832

    The sum, with label smoothing, as :func:`xent.cross_entropy` gives it on the whole array:

    >>> round(
    ...     float(xent.dask.cross_entropy(logits, target, reduction="sum", label_smoothing=0.1)), 4
    ... )
    1.7895
    >>> round(
    ...     float(
    ...         xent.cross_entropy(logits.compute(), target, reduction="sum", label_smoothing=0.1)
    ...     ),
    ...     4,
    ... )
    1.7895
    """
    x = _logits_rows(logits)
    batch_shape = logits.shape[:-1]
    t_raw = target if isinstance(target, da.Array) else input_array(target, "target")
    per_class = np.dtype(t_raw.dtype).kind == "f"
    if per_class:
        t_raw = t_raw.reshape(x.shape) if t_raw.ndim != 2 and t_raw.shape == logits.shape else t_raw
    t = _aligned(t_raw, x, "target", per_class)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of ('none', 'mean', 'sum'), got {reduction!r}")
    dtype = np.dtype(logits.dtype)
    if reduction == "none":
        # blockwise with explicit indices: rows ("i") line up with the target's rows whether
        # it holds a class per row ("i") or a probability per class ("ij"); map_blocks would
        # line a 1-d target up with the logits' last axis instead
        losses = da.blockwise(
            _none_block,
            "i",
            x,
            "ij",
            t,
            "ij" if per_class else "i",
            weight,
            None,
            ignore_index,
            None,
            label_smoothing,
            None,
            num_threads,
            None,
            dtype=dtype,
            concatenate=True,
        )
        return losses.reshape(batch_shape) if len(batch_shape) != 1 else losses
    task = dask.delayed(_loss_block, pure=True)
    parts = [
        task(xb, tb, int(row0), weight, ignore_index, label_smoothing, num_threads)
        for xb, tb, row0 in zip(x.to_delayed().ravel(), t.to_delayed().ravel(), _row_starts(x))
    ]
    results = dask.compute(*parts)
    total = _sw.exact_total(np.concatenate([loss for loss, _ in results]))
    denominator = _sw.exact_total(np.concatenate([w for _, w in results]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        value = total if reduction == "sum" else np.float64(total) / np.float64(denominator)
        return dtype.type(value)  # in the logits' dtype, as xent.cross_entropy
