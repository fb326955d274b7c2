"""Evaluation over whole datasets: loss, perplexity, top-k accuracy and entropy in one pass.

:func:`evaluate` reads logits a chunk of rows at a time (arrays, memory maps, ``.npy`` files,
or iterables of batches), so memory stays bounded by the chunk whatever the dataset's size.
One kernel call per row finds the max, the sum of exps, the target's rank and the entropy's
sum in a single read of the row.

Exactness: every row yields float64 values (weighted loss, weight, entropy) that depend on
that row only. They are added in an order fixed by the global row index: rows are summed one
by one within groups of :data:`GROUP_ROWS` consecutive rows (counted from row 0 of the
dataset), and the group sums one by one in group order. A group split between chunks, batches
or Dask blocks carries its running sum across, so any chunking, batching or thread count (and
:mod:`xent.dask` on any cluster) gives the same bits. Counts are integers.
"""

import dataclasses
from collections.abc import Iterable

import numpy as np

from . import _kernels
from ._io import FileArray, is_path, open_array, row_chunks
from ._threads import get_num_threads, shares_cpus
from ._validation import aligned, check_ignore_index, class_weights, compute_dtype

#: Rows per summation group (see the module docstring). Fixed: results depend on it.
GROUP_ROWS = 4096

#: Logits per chunk, in bytes of the compute dtype, when ``chunk_rows`` is None. A chunk's
#: kernel takes tens of milliseconds (Ctrl-C is prompt), and each chunk is one parallel region:
#: on a busy machine every region's end waits for a descheduled thread (measured: 12 ms per
#: region at load 4 on 2 cores), so chunks of 8 MiB cost 3x; 128 MiB cost nothing.
CHUNK_BYTES = 128 * 2**20

#: At most this many rows per chunk (short rows): the per-row buffers stay at 32 MiB.
MAX_CHUNK_ROWS = 2**20

FIELDS = _kernels.evaluate_fields()   # float64 columns per row: loss, weight, entropy
_LOSS, _WEIGHT, _ENTROPY = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    loss : float
        Mean cross-entropy in nats; with class weights, the weighted mean (sum of
        ``w[t] * loss`` over the sum of ``w[t]``), as :func:`xent.cross_entropy`.
    perplexity : float
        ``exp(loss)``.
    accuracy : float
        Fraction of counted rows whose target has rank 0 (top-1). Unweighted.
    topk_accuracy : tuple of (int, float)
        ``(k, fraction of counted rows with rank < k)`` for each requested k. Unweighted.
    entropy : float
        Mean entropy of ``softmax(logits)`` over the counted rows, nats. Unweighted.
    count : int
        Rows counted (label not ``ignore_index``).
    ignored : int
        Rows whose label is ``ignore_index``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0], [0.0, 0.0, 0.0]])
    >>> report = xent.evaluate(logits, np.array([0, 2, 0, -100]), topk=(1, 2))
    >>> round(report.loss, 4), round(report.perplexity, 4), round(report.entropy, 4)
    (0.485, 1.6242, 0.6599)
    >>> round(report.accuracy, 4), report.topk_accuracy[1], report.count, report.ignored
    (0.6667, (2, 1.0), 3, 1)
    """

    loss: float
    perplexity: float
    accuracy: float
    topk_accuracy: tuple
    entropy: float
    count: int
    ignored: int

    def top(self, k):
        """Top-k accuracy for a k that was requested.

        Examples
        --------
        >>> import numpy as np
        >>> import xent
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0]])
        >>> report = xent.evaluate(logits, np.array([0, 2, 0]), topk=(1, 2))
        >>> round(report.top(1), 4), report.top(2)
        (0.6667, 1.0)
        >>> report.top(5)
        Traceback (most recent call last):
            ...
        KeyError: 'top-5 accuracy was not requested (topk=(1, 2))'
        """
        for kk, acc in self.topk_accuracy:
            if kk == k:
                return acc
        raise KeyError(f"top-{k} accuracy was not requested (topk={self.topks})")

    @property
    def topks(self):
        return tuple(k for k, _ in self.topk_accuracy)

    def as_dict(self):
        """Flat dict: loss, perplexity, accuracy, top{k}_accuracy..., entropy, count, ignored.

        Examples
        --------
        >>> import numpy as np
        >>> import xent
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0]])
        >>> report = xent.evaluate(logits, np.array([0, 2, 0]), topk=(1, 2))
        >>> for name, value in report.as_dict().items():
        ...     print(f"{name:>14}: {value:.4g}")
                  loss: 0.485
            perplexity: 1.624
              accuracy: 0.6667
         top1_accuracy: 0.6667
         top2_accuracy: 1
               entropy: 0.6599
                 count: 3
               ignored: 0
        """
        out = {"loss": self.loss, "perplexity": self.perplexity, "accuracy": self.accuracy}
        for k, acc in self.topk_accuracy:
            out[f"top{k}_accuracy"] = acc
        out.update(entropy=self.entropy, count=self.count, ignored=self.ignored)
        return out


# ---- exact, order-fixed accumulation ----------------------------------------------------------

@dataclasses.dataclass
class BlockSummary:
    """Partial sums of a run of consecutive rows starting at global row ``row0``, in a form
    that merges into a :class:`Accumulator` with the same bits as feeding the rows one by one.

    ``head`` holds the raw per-row values up to the first group boundary (they continue the
    previous run's open group); ``groups`` the sums of the whole groups after it; ``carry``
    the running sum of the open group at the end (``tail_rows`` rows).
    """

    row0: int
    nrows: int
    head: np.ndarray
    groups: np.ndarray
    carry: np.ndarray
    tail_rows: int
    count: int
    ignored: int
    hits: np.ndarray


class Accumulator:
    """Running totals of an evaluation, added in the order fixed by the global row index."""

    def __init__(self, topk, requested, group=GROUP_ROWS):
        self.topk = topk              # every k counted (1 included: the accuracy)
        self.requested = requested    # the k reported in topk_accuracy
        self.group = group
        self.row = 0                       # global index of the next row
        self.carry = np.zeros(FIELDS)     # running sum of the open group
        self.total = np.zeros(FIELDS)     # sum of the finished groups, in order
        self.count = 0
        self.ignored = 0
        self.hits = np.zeros(len(topk), dtype=np.int64)

    def add_values(self, values):
        """Feed per-row values of the next rows (global rows self.row, ...)."""
        out = np.empty((len(values) // self.group + 1, FIELDS))
        k = _kernels.group_sums(values, self.row, self.group, self.carry, out)
        _kernels.add_in_order(out[:k], self.total)
        self.row += len(values)

    def add_ranks(self, rank):
        """Count the rows of one chunk (rank -1: ignored)."""
        counted = rank[rank >= 0]
        self.ignored += len(rank) - len(counted)
        self.count += len(counted)
        for j, k in enumerate(self.topk):
            self.hits[j] += np.count_nonzero(counted < k)

    def merge(self, s):
        """Fold in a :class:`BlockSummary` of the rows that come next."""
        if s.row0 != self.row:
            raise ValueError(f"block starts at row {s.row0}, expected row {self.row}")
        self.add_values(s.head)
        if s.nrows > len(s.head):   # the head closed the open group: self.row is a boundary
            _kernels.add_in_order(s.groups, self.total)
            self.carry[:] = s.carry
            self.row += s.nrows - len(s.head)
        self.count += s.count
        self.ignored += s.ignored
        self.hits += s.hits

    def report(self):
        total = self.total.copy()
        if self.row % self.group:   # the last, unfinished group
            _kernels.add_in_order(self.carry[None, :], total)
        nan = float("nan")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            loss = float(np.float64(total[_LOSS]) / np.float64(total[_WEIGHT]))
            perplexity = float(np.exp(np.float64(loss)))
        count = self.count
        topk = tuple((k, int(h) / count if count else nan) for k, h in zip(self.topk, self.hits))
        accuracy = next(a for k, a in topk if k == 1)
        return EvaluationReport(
            loss=loss, perplexity=perplexity, accuracy=accuracy,
            topk_accuracy=tuple(p for p in topk if p[0] in self.requested),
            entropy=float(total[_ENTROPY] / count) if count else nan,
            count=count, ignored=self.ignored)


def block_summary(values, rank, row0, topk, group=GROUP_ROWS):
    """The :class:`BlockSummary` of one block's per-row values (for :mod:`xent.dask`)."""
    n = len(values)
    head_len = min(n, (group - row0 % group) % group)
    rest = values[head_len:]
    carry = np.zeros(FIELDS)
    out = np.empty((len(rest) // group + 1, FIELDS))
    k = _kernels.group_sums(np.ascontiguousarray(rest), row0 + head_len, group, carry, out)
    counted = rank[rank >= 0]
    return BlockSummary(
        row0=int(row0), nrows=n, head=np.ascontiguousarray(values[:head_len]),
        groups=out[:k].copy(), carry=carry, tail_rows=len(rest) - k * group,
        count=len(counted), ignored=n - len(counted),
        hits=np.array([np.count_nonzero(counted < kk) for kk in topk], dtype=np.int64))


# ---- argument checking ------------------------------------------------------------------------

def _topk(topk):
    """The requested k, as a sorted tuple of distinct positive ints."""
    if isinstance(topk, (int, np.integer)) and not isinstance(topk, bool):
        topk = (topk,)
    try:
        ks = tuple(topk)
    except TypeError:
        raise TypeError(f"topk must be an int or a sequence of ints, got {topk!r}") from None
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"topk must hold ints, got {k!r}")
        if k < 1:
            raise ValueError(f"topk must hold positive ints, got {k}")
    if not ks:   # as `xent eval --topk ""`: an empty request is a mistake, not "none"
        raise ValueError("topk must hold at least one k (1 for top-1 accuracy alone)")
    return tuple(sorted({int(k) for k in ks}))


def check_chunk_rows(chunk_rows):
    if chunk_rows is None:
        return None
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)):
        raise TypeError(f"chunk_rows must be a positive int or None, got {chunk_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    return int(chunk_rows)


def _check_logits(x, name):
    if compute_dtype(x.dtype) is None:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got dtype "
                        f"{x.dtype}")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"{name} has shape {x.shape}: it needs a non-empty class axis (last)")
    return x


def _check_labels(y, batch_shape, name, logits_name):
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.shape != batch_shape:
        raise ValueError(f"{name} has shape {y.shape}, expected {batch_shape} (the shape of "
                         f"{logits_name} without its class axis)")
    return y


def _flat_rows(x):
    """Iterate ``x`` (..., C) as 2-D views (n, C), never copying the whole array."""
    if x.ndim == 1:
        yield x.reshape(1, -1)
    elif x.ndim == 2:
        yield x
    else:
        try:
            yield np.reshape(x, (-1, x.shape[-1]), copy=False)
        except ValueError:   # a layout no view can flatten: one leading index at a time
            for sub in x:
                yield from _flat_rows(sub)


def _batches(logits, labels):
    """(total rows or None, iterator of (logits, labels, name) batches as ndarrays)."""
    # one array: a path, an ndarray, or anything numpy reads as one (a tensor is iterable, but
    # it is one array of logits, not a sequence of batches)
    if (is_path(logits) or isinstance(logits, (np.ndarray, FileArray))
            or hasattr(logits, "__array__") or not isinstance(logits, Iterable)):
        if labels is None:
            raise TypeError("labels is required unless logits is an iterable of "
                            "(logits, labels) batches")
        if not (is_path(labels) or isinstance(labels, (np.ndarray, FileArray))
                or hasattr(labels, "__array__")) and isinstance(
                labels, Iterable) and not isinstance(labels, (list, tuple)):
            raise TypeError("labels is an iterable of batches but logits is one array: "
                            "give both as arrays, or an iterable of (logits, labels) pairs")
        x = _check_logits(open_array(logits, "logits"), "logits")
        y = _check_labels(open_array(labels, "labels"), x.shape[:-1], "labels", "logits")
        return int(np.prod(x.shape[:-1], dtype=np.int64)), iter([(x, y, "")])
    if labels is None:
        pairs = logits
    else:
        if is_path(labels) or isinstance(labels, np.ndarray):
            raise TypeError("logits is an iterable of batches but labels is one array: give "
                            "labels as an iterable of batches too, or pass (logits, labels) "
                            "pairs")
        pairs = zip(logits, labels, strict=True)
    return None, _open_pairs(pairs)


def _open_pairs(pairs):
    for i, pair in enumerate(pairs):
        try:
            bx, by = pair
        except (TypeError, ValueError):
            raise TypeError(f"batch {i} must be a (logits, labels) pair, got "
                            f"{type(pair).__name__}") from None
        x = _check_logits(open_array(bx, f"batch {i} logits"), f"batch {i} logits")
        y = _check_labels(open_array(by, f"batch {i} labels"), x.shape[:-1],
                          f"batch {i} labels", f"batch {i} logits")
        yield x, y, f"batch {i}, "


def _progress_bar(progress, total):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; a broken install should still say so clearly
        raise ImportError("progress=True needs tqdm: pip install tqdm") from None
    return tqdm(total=total, unit="rows", unit_scale=True, desc="xent evaluate",
                dynamic_ncols=True, leave=False, smoothing=0.1)


# ---- the pass ---------------------------------------------------------------------------------

class EvaluationOptions:
    def __init__(self, topk, weight, ignore_index, num_threads):
        self.requested = _topk(topk)
        self.topk = tuple(sorted(set(self.requested) | {1}))
        self.weight_arg = weight
        self.weights = {}   # class count -> checked float64 weights
        self.ignore_index = check_ignore_index(ignore_index)
        self.threads = get_num_threads(num_threads)
        self.n_classes = None

    def class_weights(self, n_classes):
        if n_classes not in self.weights:
            self.weights[n_classes] = class_weights(self.weight_arg, n_classes)
        return self.weights[n_classes]


def default_chunk_rows(n_classes, dtype):
    itemsize = compute_dtype(np.dtype(dtype).newbyteorder("=")).itemsize
    return max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (n_classes * itemsize)))


def evaluate_chunk(rows, labels, row0, opts, name="", local0=0):
    """Per-row values (n, fields) and ranks (n,) of one chunk of rows (global rows row0...;
    rows local0... of the batch called name, for error messages).

    ``rows`` is (n, C) in any float dtype and layout: converted here, one chunk at a time.
    """
    n, c = rows.shape
    compute = compute_dtype(rows.dtype.newbyteorder("="))
    if rows.dtype != compute or (c > 1 and rows.strides[1] != rows.itemsize):
        with np.errstate(over="ignore"):
            rows = np.ascontiguousarray(rows, dtype=compute)
    rows = aligned(rows)
    t = np.asarray(labels)
    bad = (t != opts.ignore_index) & ((t < 0) | (t >= c))
    if bad.any():
        i = int(np.argmax(bad))
        where = f" ({name}row {local0 + i})" if name else ""
        raise IndexError(f"labels[{row0 + i}] = {t[i]} is out of range{where}: class indices "
                         f"must lie in [0, {c}) or equal ignore_index={opts.ignore_index}")
    t = aligned(np.ascontiguousarray(t, dtype=np.intp))
    values = np.empty((n, FIELDS))
    rank = np.empty(n, dtype=np.intp)
    _kernels.evaluate_rows(rows, t, opts.class_weights(c), opts.ignore_index, values, rank,
                           opts.threads)
    return values, rank


@shares_cpus
def evaluate(logits, labels=None, *, topk=(1, 5), weight=None, ignore_index=-100,
             chunk_rows=None, num_threads=None, progress=False):
    """Loss, perplexity, accuracy, top-k accuracy and predictive entropy, in one pass.

    Parameters
    ----------
    logits : array_like, numpy.memmap, path, or iterable
        Shape (..., C), float16/float32/float64, classes last. A path to a ``.npy`` file is
        read a chunk of rows at a time (not memory-mapped: a file truncated meanwhile raises
        an error naming it, see docs/robustness.md). An iterable yields ``(logits, labels)`` batches (arrays or ``.npy``
        paths; shards, or a model's outputs), then ``labels`` is None (or an iterable of
        label batches, taken in step).
    labels : array_like, numpy.memmap or path
        Integer class indices, shape (...) (the logits' shape without the class axis).
    topk : int or sequence of int, optional
        The k of each top-k accuracy reported (default (1, 5)); at least one.
    weight : array_like, shape (C,), optional
        Class weights: the loss is the weighted mean, as :func:`xent.cross_entropy`.
        Accuracies and entropy stay unweighted means over the counted rows.
    ignore_index : int, optional
        Rows with this label are left out of every metric, and counted in ``ignored``.
    chunk_rows : int, optional
        Rows per chunk (default: about 128 MiB of logits, at most 2**20 rows). Results do
        not depend on it.
    num_threads : int or None, optional
        Threads, see :func:`xent.get_num_threads`. Results do not depend on it.
    progress : bool, optional
        Show a tqdm progress bar with rows per second.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    IndexError
        A label outside ``[0, C)`` that is not ``ignore_index`` (its global row is named).
    TypeError, ValueError
        Wrong dtypes, shapes, or batches whose class counts differ.

    Notes
    -----
    Rank of a row's target: the number of logits that are not ``<=`` the target's (strictly
    greater, or NaN). Top-k counts rank < k, so a target tied with the largest logit counts
    as correct; a NaN target logit has rank C (never correct for k <= C); a NaN elsewhere in
    the row counts as beating the target. A row holding NaN has NaN loss and entropy; +inf
    gives +inf loss (NaN if the target is +inf) and NaN entropy; an all -inf row NaN.

    Memory stays bounded by one chunk: logits are read in place (float16 is converted one
    chunk at a time), never copied whole. Sums are float64 in an order fixed by the global
    row index, so any ``chunk_rows``, batching or thread count gives the same bits.
    Ctrl-C stops between chunks (within well under a second) with ``KeyboardInterrupt``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0], [0.0, 0.0, 0.0]])
    >>> labels = np.array([0, 2, 0, -100])  # the last row is padding
    >>> report = xent.evaluate(logits, labels, topk=(1, 2))
    >>> print(f"loss {report.loss:.4f}, perplexity {report.perplexity:.4f}, "
    ...       f"top-1 {report.accuracy:.4f}, top-2 {report.top(2):.4f}")
    loss 0.4850, perplexity 1.6242, top-1 0.6667, top-2 1.0000
    >>> report.count, report.ignored
    (3, 1)

    Batches from an iterable (shards on disk, or a model's outputs) give the same report, bit
    for bit, as the rows in one array:

    >>> batches = [(logits[:3], labels[:3]), (logits[3:], labels[3:])]
    >>> xent.evaluate(batches, topk=(1, 2)) == report
    True
    """
    opts = EvaluationOptions(topk, weight, ignore_index, num_threads)
    chunk = check_chunk_rows(chunk_rows)
    total_rows, batches = _batches(logits, labels)
    acc = Accumulator(opts.topk, opts.requested)
    bar = _progress_bar(progress, total_rows)
    try:
        for x, y, name in batches:
            c = x.shape[-1]
            if opts.n_classes is None:
                opts.n_classes = c
                opts.class_weights(c)   # checked even if no row follows (an empty batch)
            elif c != opts.n_classes:
                raise ValueError(f"{name}logits have {c} classes, earlier batches "
                                 f"{opts.n_classes}")
            step = chunk or default_chunk_rows(c, x.dtype)
            y_flat = y.reshape(-1)
            done = 0
            for rows in _flat_rows(x):
                for start, part in row_chunks(rows, step):
                    values, rank = evaluate_chunk(
                        part, y_flat[done + start:done + start + len(part)], acc.row, opts,
                        name, done + start)
                    acc.add_values(values)
                    acc.add_ranks(rank)
                    if bar is not None:
                        bar.update(len(part))
                done += rows.shape[0]
    finally:
        if bar is not None:
            bar.close()
    return acc.report()
