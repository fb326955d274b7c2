"""Evaluation over whole datasets: loss, perplexity, top-k accuracy, entropy, calibration and
their standard errors in one pass.

:func:`evaluate` reads logits a chunk of rows at a time (arrays, memory maps, ``.npy`` files,
or iterables of batches), so memory stays bounded by the chunk whatever the dataset's size.
One kernel call per row finds the max, the sum of exps, the target's rank, the entropy's sum
and the sum of squared probabilities (Brier score) in a single read of the row, and one pass
per chunk (:meth:`Accumulator.add_chunk`) gathers the sums, the rank counts and the
calibration histograms inside the threads: no per-row array is built unless per-row byte
counts or document ids need one.

Exactness: every row yields float64 values (weighted loss, weight, entropy) that depend on
that row only. They are added in an order fixed by the global row index: rows are summed one
by one within groups of :data:`GROUP_ROWS` consecutive rows (counted from row 0 of the
dataset), and the group sums one by one in group order. A group split between chunks, batches
or Dask blocks carries its running sum across, so any chunking, batching or thread count (and
:mod:`xent.dask` on any cluster) gives the same bits. Counts are integers.
"""

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from . import _calibration as _cal
from . import _kernels
from ._dtypes import is_bfloat16
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

#: A chunk of fewer logits is evaluated on one thread, its histogram counts added straight
#: into the totals: the threads' own fine histograms (2 MiB each, added up once per call)
#: cost about a millisecond, more than a second thread saves on 16 MiB of float32.
PARALLEL_ELEMENTS = 2**22

#: ... unless it has this many rows: a short row's own work (its columns, rank, histogram
#: bins, and the run sums) outweighs its logits, and 1M rows of 2 (2M logits) took 25 ms on
#: one thread.
PARALLEL_ROWS = 2**17

FIELDS = _kernels.evaluate_fields()  # float64 columns per row: _kernels.evaluate_columns()
(
    _LOSS,
    _WEIGHT,
    _ENTROPY,
    _LOSS_SQ,
    _WEIGHT_LOSS,
    _WEIGHT_SQ,
    _ENTROPY_SQ,
    _BRIER,
    _BRIER_SQ,
    _CONFIDENCE,
) = range(10)
assert _kernels.evaluate_columns()[_CONFIDENCE] == "confidence" and FIELDS == 10


@dataclasses.dataclass(frozen=True, eq=False)
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
    brier : float
        Multi-class Brier score: mean over counted rows of ``sum_k (p_k - onehot(t)_k)^2``
        (0 to 2). Unweighted.
    confidence : float
        Mean top-1 probability ``max_k p_k`` over counted rows.
    ece, mce : float
        Expected and maximum calibration error of the top-1 prediction over the bins
        ``calibration_table`` shows: ``sum_b n_b |acc_b - conf_b| / N`` and the largest
        ``|acc_b - conf_b|`` over non-empty bins. NaN if a counted row has a NaN confidence.
    calibration : str
        ``"mass"`` (equal-mass bins) or ``"width"`` (equal-width bins).
    calibration_table : numpy.ndarray, shape (bins, 5)
        Per bin: low and high edge of confidence, row count, mean confidence, accuracy (the
        reliability diagram).
    ece_error_bound : float
        Bound on ``|ece - ECE of the exact equal-mass bins|`` from cutting at fine-histogram
        edges (see :mod:`xent._calibration`); 0 for equal-width bins.
    stderr : dict
        Standard error of each mean metric: ``loss``, ``accuracy``, ``top{k}_accuracy``,
        ``entropy``, ``brier``, ``perplexity`` (by the delta method: perplexity x the loss's).
    bits_per_byte, byte_perplexity : float or None
        With ``num_bytes``: summed loss / (ln 2 x bytes) and ``2 ** bits_per_byte``.
    document_loglikelihood : numpy.ndarray or None
        With ``documents``: per document id, the sum of the counted rows' log-likelihoods
        ``log softmax(x)[t]`` (as lm-evaluation-harness's ``loglikelihood_rolling``).

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
    brier: float = float("nan")
    confidence: float = float("nan")
    ece: float = float("nan")
    mce: float = float("nan")
    calibration: str = "mass"
    calibration_table: np.ndarray = None
    ece_error_bound: float = 0.0
    stderr: dict = dataclasses.field(default_factory=dict)
    bits_per_byte: float = None
    byte_perplexity: float = None
    document_loglikelihood: np.ndarray = None

    def __eq__(self, other):
        """Field by field, arrays (the calibration table, document sums) bit for bit."""
        if type(other) is not type(self):
            return NotImplemented
        for field in dataclasses.fields(self):
            a, b = getattr(self, field.name), getattr(other, field.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b and not (a is not None and b is not None and _both_nan(a, b)):
                return False
        return True

    __hash__ = None

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

    def interval(self, name):
        """The 95% interval (normal approximation) of a mean metric named as in ``stderr``;
        the perplexity's is ``exp`` of the loss's (asymmetric, as perplexity is).

        Examples
        --------
        >>> import numpy as np
        >>> import xent
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 0.0]])
        >>> report = xent.evaluate(logits, np.array([0, 2, 0]))
        >>> low, high = report.interval("loss")
        >>> round(low, 4), round(report.loss, 4), round(high, 4)
        (-0.0504, 0.4043, 0.859)
        >>> low, high = report.interval("perplexity")
        >>> round(low, 4), round(report.perplexity, 4), round(high, 4)
        (0.9509, 1.4983, 2.3608)
        """
        if name == "perplexity":
            lo, hi = _cal.interval(self.loss, self.stderr["loss"])
            with np.errstate(over="ignore"):
                return (float(np.exp(lo)), float(np.exp(hi)))
        mean = self.as_dict()[name]
        return _cal.interval(mean, self.stderr[name])

    def as_dict(self):
        """Flat dict: loss, perplexity, accuracy, top{k}_accuracy..., entropy, count, ignored,
        then brier, confidence, ece, mce, each ``<metric>_stderr``, and
        bits_per_byte and byte_perplexity when measured.

        Examples
        --------
        >>> import numpy as np
        >>> import xent
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0]])
        >>> report = xent.evaluate(logits, np.array([0, 2, 0]), topk=(1, 2)).as_dict()
        >>> for name in ("loss", "perplexity", "accuracy", "top2_accuracy", "count"):
        ...     print(f"{name:>14}: {report[name]:.4g}")
                  loss: 0.485
            perplexity: 1.624
              accuracy: 0.6667
         top2_accuracy: 1
                 count: 3
        """
        out = {"loss": self.loss, "perplexity": self.perplexity, "accuracy": self.accuracy}
        for k, acc in self.topk_accuracy:
            out[f"top{k}_accuracy"] = acc
        out.update(entropy=self.entropy, count=self.count, ignored=self.ignored)
        out.update(brier=self.brier, confidence=self.confidence, ece=self.ece, mce=self.mce)
        for name, se in self.stderr.items():
            out[f"{name}_stderr"] = se
        if self.bits_per_byte is not None:
            out.update(bits_per_byte=self.bits_per_byte, byte_perplexity=self.byte_perplexity)
        return out


def _both_nan(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(
            x == y or _both_nan(x, y) for x, y in zip(a.values(), b.values())
        )
    return isinstance(a, float) and isinstance(b, float) and a != a and b != b


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
    calibration: _cal.CalibrationHistogram = None


class Accumulator:
    """Running totals of an evaluation, added in the order fixed by the global row index."""

    def __init__(self, topk, requested, group=GROUP_ROWS, calibration="mass", calibration_bins=15):
        self.topk = topk  # every k counted (1 included: the accuracy)
        self.requested = requested  # the k reported in topk_accuracy
        self.group = group
        self.row = 0  # global index of the next row
        self.carry = np.zeros(FIELDS)  # running sum of the open group
        self.total = np.zeros(FIELDS)  # sum of the finished groups, in order
        self.count = 0
        self.ignored = 0
        self.hits = np.zeros(len(topk), dtype=np.int64)
        self.calibration, self.calibration_bins = calibration, calibration_bins
        self.histogram = _cal.CalibrationHistogram(calibration_bins)
        self.loss_total = None  # the summed loss, with num_bytes (set by report)
        # per-thread counters of add_chunk's kernel (count, ignored, NaN confidences, then the
        # hits of each k), folded into count, ignored, hits and the histogram's NaN count
        self._thread_counts = None
        self._ks = np.array(topk, dtype=np.intp)
        self._closed = np.empty((0, FIELDS))

    def add_chunk(self, rows, target, weights, ignore_index, threads, values=None, rank=None):
        """Evaluate the next rows (global rows self.row, ...) and fold them in, in one pass of
        the kernel (:func:`xent._kernels.evaluate_summary`): no per-row array is built unless
        ``values`` (n, FIELDS) and ``rank`` (n,) are given to receive the rows' columns and
        ranks (for the language-model units).

        ``rows``: (n, C) of the compute dtype with contiguous rows, or :class:`HalfRows`;
        ``target``: intp labels, checked by the kernel. Returns the first chunk row whose
        label is out of range, or -1; after a bad label the totals hold part of the chunk
        (the caller raises).
        """
        n = len(rows)
        elements = n * (rows.bits if isinstance(rows, HalfRows) else rows).shape[1]
        if elements < PARALLEL_ELEMENTS and n < PARALLEL_ROWS:
            threads = 1  # then straight into the totals: no per-thread tables to fold
        if self._thread_counts is None or len(self._thread_counts) < threads:
            self._fold_threads()
            # each thread's row rounded up to 64 bytes and 64 more: no cache line shared
            width = -(-(3 + len(self.topk)) // 8) * 8 + 8
            self._thread_counts = np.zeros((threads, width), dtype=np.int64)
        if threads == 1:
            fine, width = self.histogram.fine[None], self.histogram.width[None]
        else:
            fine, width = self.histogram.thread_tables(threads)
        if len(self._closed) < n // self.group + 2:
            self._closed = np.empty((n // self.group + 2, FIELDS))
        args = (
            target,
            weights,
            ignore_index,
            self.row,
            self.group,
            self.carry,
            self._closed,
            self._ks,
            self._thread_counts,
            fine,
            width,
            values,
            rank,
            threads,
        )
        if isinstance(rows, HalfRows):
            k, bad = _kernels.evaluate_summary_half(rows.bits, rows.bfloat, *args)
        else:
            k, bad = _kernels.evaluate_summary(rows, *args)
        _kernels.add_in_order(self._closed[:k], self.total)
        self.row += n
        return bad

    def _fold_threads(self):
        """Add the per-thread counters of add_chunk into the totals, and drop them."""
        if self._thread_counts is not None:
            counts = self._thread_counts.sum(axis=0)
            self.count += int(counts[0])
            self.ignored += int(counts[1])
            self.histogram.nan += int(counts[2])
            self.hits += counts[3 : 3 + len(self.topk)]
            self._thread_counts = None

    def add_values(self, values):
        """Feed per-row values of the next rows (global rows self.row, ...)."""
        out = np.empty((len(values) // self.group + 1, FIELDS))
        k = _kernels.group_sums(values, self.row, self.group, self.carry, out)
        _kernels.add_in_order(out[:k], self.total)
        self.row += len(values)

    def add_ranks(self, rank, values=None):
        """Count the rows of one chunk (rank -1: ignored); with its values, their calibration."""
        kept = rank >= 0
        counted = rank[kept]
        if values is not None:
            self.histogram.add_rows(values, _CONFIDENCE, rank)
        self.ignored += len(rank) - len(counted)
        self.count += len(counted)
        for j, k in enumerate(self.topk):
            self.hits[j] += np.count_nonzero(counted < k)

    def merge(self, s):
        """Fold in a :class:`BlockSummary` of the rows that come next."""
        if s.row0 != self.row:
            raise ValueError(f"block starts at row {s.row0}, expected row {self.row}")
        self.add_values(s.head)
        if s.nrows > len(s.head):  # the head closed the open group: self.row is a boundary
            _kernels.add_in_order(s.groups, self.total)
            self.carry[:] = s.carry
            self.row += s.nrows - len(s.head)
        self.count += s.count
        self.ignored += s.ignored
        self.hits += s.hits
        if s.calibration is not None:
            self.histogram.merge(s.calibration)

    def report(self):
        self._fold_threads()
        total = self.total.copy()
        if self.row % self.group:  # the last, unfinished group
            _kernels.add_in_order(self.carry[None, :], total)
        nan = float("nan")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            loss = float(np.float64(total[_LOSS]) / np.float64(total[_WEIGHT]))
            perplexity = float(np.exp(np.float64(loss)))
        count = self.count
        topk = tuple((k, int(h) / count if count else nan) for k, h in zip(self.topk, self.hits))
        accuracy = next(a for k, a in topk if k == 1)
        stderr = {
            "loss": _cal.ratio_stderr(
                total[_LOSS],
                total[_WEIGHT],
                total[_LOSS_SQ],
                total[_WEIGHT_LOSS],
                total[_WEIGHT_SQ],
                count,
            )
        }
        stderr["perplexity"] = perplexity * stderr["loss"]  # delta method
        for k, h in zip(self.topk, self.hits):
            if k in self.requested or k == 1:
                stderr["accuracy" if k == 1 else f"top{k}_accuracy"] = _cal.proportion_stderr(
                    int(h), count
                )
        if 1 in self.requested:
            stderr["top1_accuracy"] = stderr["accuracy"]
        stderr["entropy"] = _cal.mean_stderr(total[_ENTROPY], total[_ENTROPY_SQ], count)
        stderr["brier"] = _cal.mean_stderr(total[_BRIER], total[_BRIER_SQ], count)
        ece, mce, table, bound = self.histogram.errors(self.calibration, self.calibration_bins)
        self.loss_total = float(total[_LOSS])
        return EvaluationReport(
            loss=loss,
            perplexity=perplexity,
            accuracy=accuracy,
            topk_accuracy=tuple(p for p in topk if p[0] in self.requested),
            entropy=float(total[_ENTROPY] / count) if count else nan,
            count=count,
            ignored=self.ignored,
            brier=float(total[_BRIER] / count) if count else nan,
            confidence=float(total[_CONFIDENCE] / count) if count else nan,
            ece=ece,
            mce=mce,
            calibration=self.calibration,
            calibration_table=table,
            ece_error_bound=bound,
            stderr=stderr,
        )


def block_summary(values, rank, row0, topk, group=GROUP_ROWS, calibration_bins=15):
    """The :class:`BlockSummary` of one block's per-row values (for :mod:`xent.dask`)."""
    n = len(values)
    head_len = min(n, (group - row0 % group) % group)
    rest = values[head_len:]
    carry = np.zeros(FIELDS)
    out = np.empty((len(rest) // group + 1, FIELDS))
    k = _kernels.group_sums(np.ascontiguousarray(rest), row0 + head_len, group, carry, out)
    kept = rank >= 0
    counted = rank[kept]
    histogram = _cal.CalibrationHistogram(calibration_bins)
    histogram.add_rows(np.ascontiguousarray(values), _CONFIDENCE, np.ascontiguousarray(rank))
    return BlockSummary(
        row0=int(row0),
        nrows=n,
        head=np.ascontiguousarray(values[:head_len]),
        groups=out[:k].copy(),
        carry=carry,
        tail_rows=len(rest) - k * group,
        count=len(counted),
        ignored=n - len(counted),
        hits=np.array([np.count_nonzero(counted < kk) for kk in topk], dtype=np.int64),
        calibration=histogram,
    )


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
    if not ks:  # as `xent eval --topk ""`: an empty request is a mistake, not "none"
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
        raise TypeError(
            f"{name} must be float16, bfloat16, float32 or float64, got dtype {x.dtype}"
        )
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"{name} has shape {x.shape}: it needs a non-empty class axis (last)")
    return x


def _check_labels(y, batch_shape, name, logits_name):
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.shape != batch_shape:
        raise ValueError(
            f"{name} has shape {y.shape}, expected {batch_shape} (the shape of "
            f"{logits_name} without its class axis)"
        )
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
        except ValueError:  # a layout no view can flatten: one leading index at a time
            for sub in x:
                yield from _flat_rows(sub)


def _batches(logits, labels):
    """(total rows or None, iterator of (logits, labels, name) batches as ndarrays)."""
    # one array: a path, an ndarray, or anything numpy reads as one (a tensor is iterable, but
    # it is one array of logits, not a sequence of batches)
    if (
        is_path(logits)
        or isinstance(logits, (np.ndarray, FileArray))
        or hasattr(logits, "__array__")
        or not isinstance(logits, Iterable)
    ):
        if labels is None:
            raise TypeError(
                "labels is required unless logits is an iterable of (logits, labels) batches"
            )
        if (
            not (
                is_path(labels)
                or isinstance(labels, (np.ndarray, FileArray))
                or hasattr(labels, "__array__")
            )
            and isinstance(labels, Iterable)
            and not isinstance(labels, (list, tuple))
        ):
            raise TypeError(
                "labels is an iterable of batches but logits is one array: "
                "give both as arrays, or an iterable of (logits, labels) pairs"
            )
        x = _check_logits(open_array(logits, "logits"), "logits")
        y = _check_labels(open_array(labels, "labels"), x.shape[:-1], "labels", "logits")
        return int(np.prod(x.shape[:-1], dtype=np.int64)), iter([(x, y, "")])
    if labels is None:
        pairs = logits
    else:
        if is_path(labels) or isinstance(labels, np.ndarray):
            raise TypeError(
                "logits is an iterable of batches but labels is one array: give "
                "labels as an iterable of batches too, or pass (logits, labels) "
                "pairs"
            )
        pairs = zip(logits, labels, strict=True)
    return None, _open_pairs(pairs)


def _open_pairs(pairs):
    for i, pair in enumerate(pairs):
        try:
            bx, by = pair
        except (TypeError, ValueError):
            raise TypeError(
                f"batch {i} must be a (logits, labels) pair, got {type(pair).__name__}"
            ) from None
        x = _check_logits(open_array(bx, f"batch {i} logits"), f"batch {i} logits")
        y = _check_labels(
            open_array(by, f"batch {i} labels"),
            x.shape[:-1],
            f"batch {i} labels",
            f"batch {i} logits",
        )
        yield x, y, f"batch {i}, "


def _progress_bar(progress, total):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; a broken install should still say so clearly
        raise ImportError("progress=True needs tqdm: pip install tqdm") from None
    return tqdm(
        total=total,
        unit="rows",
        unit_scale=True,
        desc="xent evaluate",
        dynamic_ncols=True,
        leave=False,
        smoothing=0.1,
    )


# ---- the pass ---------------------------------------------------------------------------------


class EvaluationOptions:
    def __init__(self, topk, weight, ignore_index, num_threads):
        self.requested = _topk(topk)
        self.topk = tuple(sorted(set(self.requested) | {1}))
        self.weight_arg = weight
        self.weights = {}  # class count -> checked float64 weights
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


def evaluate_chunk(rows, labels, row0, opts, name="", local0=0, buffers=None):
    """Per-row values (n, fields) and ranks (n,) of one chunk of rows (global rows row0...;
    rows local0... of the batch called name, for error messages).

    ``buffers``, a dict, lends the output arrays from one chunk to the next (the caller uses
    them before the next call): no fresh pages to fault in per chunk.

    ``rows`` is (n, C) in any float dtype and layout: converted here, one chunk at a time.
    """
    n, c = rows.shape
    compute = compute_dtype(rows.dtype.newbyteorder("="))
    if rows.dtype != compute or (c > 1 and rows.strides[1] != rows.itemsize):
        with np.errstate(over="ignore"):
            rows = np.ascontiguousarray(rows, dtype=compute)
    rows = aligned(rows)
    # A private copy, checked, is what the kernel indexes with: another thread writing the
    # caller's labels during the call cannot make it read outside a row (N integers: cheap
    # beside the N x C logits).
    t = np.array(labels, copy=True)
    bad = (t != opts.ignore_index) & ((t < 0) | (t >= c))
    if bad.any():
        i = int(np.argmax(bad))
        where = f" ({name}row {local0 + i})" if name else ""
        raise IndexError(
            f"labels[{row0 + i}] = {t[i]} is out of range{where}: class indices "
            f"must lie in [0, {c}) or equal ignore_index={opts.ignore_index}"
        )
    t = aligned(t.astype(np.intp, copy=False))  # still private: a cast copies, intp does not
    if buffers is None:
        values, rank = np.empty((n, FIELDS)), np.empty(n, dtype=np.intp)
    else:
        if len(buffers.get("rank", ())) < n:
            buffers.update(values=np.empty((n, FIELDS)), rank=np.empty(n, dtype=np.intp))
        values, rank = buffers["values"][:n], buffers["rank"][:n]
    _kernels.evaluate_rows(
        rows, t, opts.class_weights(c), opts.ignore_index, values, rank, opts.threads
    )
    return values, rank


class HalfRows:
    """float16 or bfloat16 rows as the kernel reads them: their bits, (n, C) uint16 with a
    contiguous last axis, widened a few rows at a time inside the kernel's threads."""

    def __init__(self, bits, bfloat):
        self.bits, self.bfloat = bits, bfloat

    def __len__(self):
        return len(self.bits)


def _compute_rows(rows):
    """``rows`` (n, C) as the kernels read them: the compute dtype with contiguous rows and
    aligned, or :class:`HalfRows` for float16 and bfloat16 rows with a contiguous last axis
    (never widened whole); other conversions are numpy's, one chunk at a time."""
    c = rows.shape[1]
    compute = compute_dtype(rows.dtype.newbyteorder("="))
    contiguous = c == 1 or rows.strides[1] == rows.itemsize
    if rows.dtype == compute and contiguous:
        return aligned(rows)
    if (
        rows.dtype.itemsize == 2
        and rows.dtype.isnative
        and compute == np.float32
        and contiguous
        and rows.strides[0] % 2 == 0
    ):
        return HalfRows(aligned(rows.view(np.uint16)), is_bfloat16(rows.dtype))
    with np.errstate(over="ignore"):
        return aligned(np.ascontiguousarray(rows, dtype=compute))


def _kernel_labels(labels):
    """The labels as the kernel reads them (intp, contiguous), or None where a cast to intp
    could turn an out-of-range label into a valid one (unsigned 64-bit): then the caller
    checks them in numpy first. The kernel reads each label once and checks that value, so
    the caller's own array is used where it is already intp."""
    t = np.asarray(labels)
    if t.dtype == np.intp and t.flags.c_contiguous and t.flags.aligned:
        return t
    if not np.can_cast(t.dtype, np.intp):
        return None
    return np.ascontiguousarray(t, dtype=np.intp)


def _label_error(labels, i, c, row0, opts, name, local0):
    where = f" ({name}row {local0 + i})" if name else ""
    return IndexError(
        f"labels[{row0 + i}] = {labels[i]} is out of range{where}: class indices "
        f"must lie in [0, {c}) or equal ignore_index={opts.ignore_index}"
    )


def evaluate_chunk_into(acc, rows, labels, opts, name="", local0=0, buffers=None, units=None):
    """Evaluate one chunk of rows (global rows acc.row, ...; rows local0... of the batch called
    name, for error messages) and fold it into the :class:`Accumulator` ``acc`` in one kernel
    pass; per-row values are built only for ``units`` that need them (per-row byte counts or
    document ids)."""
    buffers = {} if buffers is None else buffers
    n, c = rows.shape
    row0 = acc.row
    rows = _compute_rows(rows)
    t = _kernel_labels(labels)
    if t is None:  # checked here, then cast: every value now fits
        t = np.array(labels, copy=True)
        bad = (t != opts.ignore_index) & ((t < 0) | (t >= c))
        if bad.any():
            raise _label_error(t, int(np.argmax(bad)), c, row0, opts, name, local0)
        t = t.astype(np.intp)
    values = rank = None
    per_row = units is not None and (units.row_bytes is not None or units.documents is not None)
    if per_row:
        if len(buffers.get("rank", ())) < n:
            buffers.update(values=np.empty((n, FIELDS)), rank=np.empty(n, dtype=np.intp))
        values, rank = buffers["values"][:n], buffers["rank"][:n]
    bad = acc.add_chunk(
        rows, t, opts.class_weights(c), opts.ignore_index, opts.threads, values, rank
    )
    if bad >= 0:
        raise _label_error(np.asarray(labels), bad, c, row0, opts, name, local0)
    if per_row:
        units.add(row0, values, rank)


# ---- long rows: a row evaluated a piece of columns at a time --------------------------------

#: A row longer than this many bytes of the compute dtype is read and evaluated in pieces of
#: this size (:func:`evaluate_long_row`): memory stays bounded by a piece, not by a row, and
#: Ctrl-C is seen between pieces (each takes milliseconds).
PIECE_BYTES = 32 * 2**20

#: Columns of each sub-row a piece is cut into: the kernel's rows, spread over the threads.
SUBROW_COLS = 2**16


def long_row_cols(dtype):
    """Rows with more columns than this are evaluated by :func:`evaluate_long_row`."""
    itemsize = compute_dtype(np.dtype(dtype).newbyteorder("=")).itemsize
    return max(SUBROW_COLS, PIECE_BYTES // itemsize)


class _LongRowScratch:
    """Buffers lent from one piece to the next (one piece's worth each)."""

    def __init__(self):
        self.arrays = {}

    def get(self, name, n, dtype):
        a = self.arrays.get(name)
        if a is None or a.dtype != dtype or len(a) < n:
            a = self.arrays[name] = np.empty(n, dtype=dtype)
        return a[:n]


def _pieces(rows, i, piece_cols, compute, scratch):
    """(first column, piece) of row ``i`` of ``rows`` (an ndarray or a FileArray), each
    piece C-contiguous, aligned and of the compute dtype, in buffers reused piece to piece."""
    c = rows.shape[1]
    for lo in range(0, c, piece_cols):
        hi = min(c, lo + piece_cols)
        if isinstance(rows, FileArray):
            part = rows.read_span(i, lo, hi, out=scratch.get("read", hi - lo, rows.dtype))
            rows.advise_span(i, hi, min(c, hi + piece_cols))  # the next piece, from disk
        else:
            part = rows[i, lo:hi]
        if part.dtype != compute or not part.flags.c_contiguous or not part.flags.aligned:
            out = scratch.get("piece", hi - lo, compute)
            with np.errstate(over="ignore"):
                np.copyto(out, part, casting="unsafe")
            part = out
        yield lo, part


def _subrow_states(piece, nthreads):
    """Per sub-row of ``piece``: its max m and first element (compute dtype), and the
    kernel's float64 values for the sub-row with its first element as the target.

    From those values (see :func:`evaluate_long_row`): the top-1 probability is 1 / S (S the
    sum of exp(x - m) as the kernel keeps it), the entropy is the sub-row's, and sum p^2 =
    brier + 2 p_0 - 1 with p_0 = exp(x_0 - m) / S.
    """
    n = len(piece)
    q = min(SUBROW_COLS, n)
    whole = n - n % q
    blocks = [piece[:whole].reshape(-1, q)]
    if whole < n:
        blocks.append(piece[whole:].reshape(1, -1))
    maxima, firsts, states = [], [], []
    for block in blocks:
        values = np.empty((len(block), FIELDS))
        rank = np.empty(len(block), dtype=np.intp)
        first = np.zeros(len(block), dtype=np.intp)
        _kernels.evaluate_rows(block, first, None, -1, values, rank, nthreads)
        maxima.append(block.max(axis=1))  # NaN if the sub-row holds one
        firsts.append(block[:, 0].copy())
        states.append(values)
    return np.concatenate(maxima), np.concatenate(firsts), np.concatenate(states)


def _not_le_count(piece, target_value, m, scratch):
    """How many elements of ``piece`` are not ``<=`` target_value (greater, or NaN).

    Only sub-rows whose max is not <= the target can hold such elements: the rest are
    skipped (for a good model, most of them).
    """
    if not np.any(~(m <= target_value)):
        return 0
    flags = scratch.get("flags", len(piece), np.bool_)
    np.less_equal(piece, target_value, out=flags)
    return len(piece) - int(np.count_nonzero(flags))


def evaluate_long_row(rows, i, label, row0, opts, name="", local0=0, scratch=None):
    """Values (1, fields) and rank (1,) of row ``i`` of ``rows`` (n, C), read and evaluated
    a piece of :data:`PIECE_BYTES` at a time, as :func:`evaluate_chunk` gives for that row
    (the rank capped at the largest k of ``opts.topk``: the metrics use only rank < k).

    The pieces' states are combined in float64 as the kernel combines its own blocks: with
    the row's max M, S = sum_j S_j exp(m_j - M) (S_j, m_j: a sub-row's sum and max), the loss
    (M - x_t) + log S, the entropy sum_j w_j (H_j + log S - log S_j + M - m_j) with w_j =
    S_j exp(m_j - M) / S (terms >= 0: nothing cancels), sum p^2 = sum_j w_j^2 sum_j p^2. A
    row holding NaN or +inf, or only -inf, gets the kernel's own answer for a row of the
    sub-rows' maxima and the target (the non-finite cases depend only on those).
    """
    scratch = scratch or _LongRowScratch()
    c = rows.shape[1]
    compute = compute_dtype(rows.dtype.newbyteorder("="))
    values = np.zeros((1, FIELDS))
    rank = np.full(1, -1, dtype=np.intp)
    t = int(label)
    if t == opts.ignore_index:
        return values, rank
    if not 0 <= t < c:
        where = f" ({name}row {local0})" if name else ""
        raise IndexError(
            f"labels[{row0}] = {t} is out of range{where}: class indices "
            f"must lie in [0, {c}) or equal ignore_index={opts.ignore_index}"
        )
    piece_cols = long_row_cols(rows.dtype)
    # Only rank < k (k of topk, 1 included) and rank == 0 are reported: a rank of at least
    # the largest k is as good as the exact one, and later pieces need no counting.
    enough = max(opts.topk)
    target_value = None
    maxima, firsts, states, not_le = [], [], [], 0
    for lo, piece in _pieces(rows, i, piece_cols, compute, scratch):
        if target_value is None:  # the target's value, read once (private from here on)
            if lo <= t < lo + len(piece):
                target_value = compute.type(piece[t - lo])
            else:
                target_value = compute.type(
                    np.asarray(
                        rows[i, t : t + 1]
                        if not isinstance(rows, FileArray)
                        else rows.read_span(i, t, t + 1)
                    )[0]
                )
        m, x0, v = _subrow_states(piece, opts.threads)
        if not_le < enough:  # past the largest k, the count changes no metric
            not_le += _not_le_count(piece, target_value, m, scratch)
        maxima.append(m)
        firsts.append(x0)
        states.append(v)
    m = np.concatenate(maxima)
    x0 = np.concatenate(firsts)
    v = np.concatenate(states)
    wt = float(opts.class_weights(c)[t]) if opts.class_weights(c) is not None else 1.0
    rank[0] = min(not_le, enough)
    finite = np.isfinite(m)
    if np.isnan(m).any() or np.isposinf(m).any() or not finite.any():
        # the kernel's own answer: these cases depend only on the maxima and the target
        small = np.append(m, target_value).astype(compute)[None, :]
        small_values = np.empty((1, FIELDS))
        _kernels.evaluate_rows(
            small,
            np.array([len(m)], dtype=np.intp),
            None,
            -1,
            small_values,
            np.empty(1, np.intp),
            1,
        )
        wl = wt * small_values[0, _LOSS]
        ent = small_values[0, _ENTROPY]
        brier = small_values[0, _BRIER]
        confidence = small_values[0, _CONFIDENCE]
    else:
        m, x0, v = m[finite].astype(np.float64), x0[finite].astype(np.float64), v[finite]
        big = m.max()
        s_j = 1.0 / v[:, _CONFIDENCE]  # exp(max - shift) / S_j, and shift = max: 1 / S_j
        log_s_j = np.log(s_j)
        scaled = s_j * np.exp(m - big)
        s = math.fsum(scaled)
        log_s = math.log(s)
        w = scaled / s
        wl = wt * ((big - float(target_value)) + log_s)
        ent = math.fsum(w * (v[:, _ENTROPY] + (log_s - log_s_j) + (big - m)))
        p_0 = np.exp(x0 - m) * v[:, _CONFIDENCE]  # the first element's probability
        sum_sq_j = v[:, _BRIER] + 2 * p_0 - 1  # sum p^2 within the sub-row
        p_t = math.exp(float(target_value) - big) / s
        brier = math.fsum(w * w * sum_sq_j) - 2 * p_t + 1
        confidence = 1.0 / s
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as the kernel's
        values[0] = (
            wl,
            wt,
            ent,
            wl * wl,
            wt * wl,
            wt * wt,
            ent * ent,
            brier,
            brier * brier,
            confidence,
        )
    return values, rank


# ---- language-model units: bytes and documents ------------------------------------------------


class LanguageModelUnits:
    """Bits per byte and per-document log-likelihoods alongside an evaluation.

    ``num_bytes``: a total (int) or per-row byte counts (array or path, the labels' shape);
    per-row counts add up over counted rows only. ``documents``: per-row non-negative int
    ids; each counted row's log-likelihood ``-loss`` is added to its document's sum with
    ``numpy.add.at``, one row after another in global row order, so the sums are the same
    bits for any chunking.
    """

    def __init__(self, num_bytes, documents, weight, labels_shape):
        self.total_bytes = None
        self.row_bytes = self.documents = None
        self.loglik = np.zeros(0)
        if num_bytes is None and documents is None:
            return
        if weight is not None:
            raise ValueError(
                "num_bytes and documents measure log-likelihoods: give weight=None with them"
            )
        if num_bytes is not None:
            if isinstance(num_bytes, (int, np.integer)) and not isinstance(num_bytes, bool):
                if num_bytes <= 0:
                    raise ValueError(f"num_bytes must be positive, got {num_bytes}")
                self.total_bytes = int(num_bytes)
            else:
                self.row_bytes = self._per_row(num_bytes, "num_bytes", labels_shape)
                self.total_bytes = 0
        if documents is not None:
            self.documents = self._per_row(documents, "documents", labels_shape)

    @staticmethod
    def _per_row(arg, name, labels_shape):
        if labels_shape is None:
            raise TypeError(
                f"{name} per row needs logits and labels given as arrays or "
                f"files, not as an iterable of batches (give num_bytes as a "
                f"total int)"
            )
        a = open_array(arg, name)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
        if a.shape != labels_shape:
            raise ValueError(
                f"{name} has shape {a.shape}, expected {labels_shape} (the labels' shape)"
            )
        return a.reshape(-1)

    def add(self, start, values, rank):
        """Fold in the chunk of global rows start... (values and ranks of evaluate_chunk)."""
        kept = rank >= 0
        stop = start + len(rank)
        if self.row_bytes is not None:
            b = np.asarray(self.row_bytes[start:stop])
            if (b < 0).any():
                raise ValueError(f"num_bytes[{start + int(np.argmax(b < 0))}] is negative")
            self.total_bytes += int(b[kept].sum(dtype=np.int64))
        if self.documents is not None:
            d = np.asarray(self.documents[start:stop]).astype(np.int64)
            if (d < 0).any():
                raise ValueError(
                    f"documents[{start + int(np.argmax(d < 0))}] is negative: "
                    f"document ids must be non-negative ints"
                )
            d = d[kept]
            if len(d) and d.max() >= len(self.loglik):
                grown = np.zeros(max(int(d.max()) + 1, 2 * len(self.loglik)))
                grown[: len(self.loglik)] = self.loglik
                self.loglik = grown
            np.add.at(self.loglik, d, -values[kept, _LOSS])
            self.n_documents = max(
                getattr(self, "n_documents", 0), int(d.max()) + 1 if len(d) else 0
            )

    def finish(self, report, loss_total):
        extra = {}
        if self.total_bytes is not None:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                bpb = float(np.float64(loss_total) / (np.log(2.0) * self.total_bytes))
                extra.update(bits_per_byte=bpb, byte_perplexity=float(np.exp2(bpb)))
        if self.documents is not None:
            extra["document_loglikelihood"] = self.loglik[: getattr(self, "n_documents", 0)]
        return dataclasses.replace(report, **extra) if extra else report


@shares_cpus
def evaluate(
    logits,
    labels=None,
    *,
    topk=(1, 5),
    weight=None,
    ignore_index=-100,
    chunk_rows=None,
    num_threads=None,
    progress=False,
    calibration="mass",
    calibration_bins=15,
    num_bytes=None,
    documents=None,
):
    """Loss, perplexity, accuracy, top-k accuracy, predictive entropy, calibration (ECE, MCE,
    Brier score) and their standard errors, in one pass.

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
    calibration : {"mass", "width"}, optional
        Bins of the top-1 confidence for ``ece``/``mce``: equal mass (default, as HELM) or
        equal width.
    calibration_bins : int, optional
        Number of calibration bins (default 15).
    num_bytes : int, array_like or path, optional
        Bytes of text: a total, or a count per row (the labels' shape, summed over counted
        rows). Gives ``bits_per_byte`` and ``byte_perplexity``. Needs ``weight=None``.
    documents : array_like or path of int, optional
        A document (segment) id per row, the labels' shape: gives
        ``document_loglikelihood``, the per-document sums of ``log softmax(x)[t]``.
        Needs ``weight=None``, and logits and labels as arrays or files.

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
    row index, so any ``chunk_rows``, batching or thread count gives the same bits. A row
    longer than 32 MiB of the compute dtype is read and evaluated a piece at a time, its
    pieces combined in float64 (see docs/robustness.md). Ctrl-C stops between chunks or
    pieces (within well under a second) with ``KeyboardInterrupt``.

    Calibration, standard errors and the language-model units come from the same read: the
    row kernel also returns the top-1 probability and ``sum_k p_k^2`` (so the Brier score is
    ``sum p^2 - 2 p_t + 1``), and sums of squares are accumulated alongside the sums. The
    equal-mass bins are cut from a fine histogram of the confidence (65536 bins) kept in one
    pass; ``ece_error_bound`` bounds the difference from exact equal-mass bins (see
    :mod:`xent._calibration`). Standard errors are the sample standard deviation over
    ``sqrt(count)`` (the weighted loss's by linearisation of the ratio); intervals are
    normal-approximation 95% intervals.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0], [0.0, 0.0, 0.0]])
    >>> labels = np.array([0, 2, 0, -100])  # the last row is padding
    >>> report = xent.evaluate(logits, labels, topk=(1, 2))
    >>> print(
    ...     f"loss {report.loss:.4f}, perplexity {report.perplexity:.4f}, "
    ...     f"top-1 {report.accuracy:.4f}, top-2 {report.top(2):.4f}"
    ... )
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
    kind, bins = _cal.check_calibration(calibration, calibration_bins)
    chunk = check_chunk_rows(chunk_rows)
    total_rows, batches = _batches(logits, labels)
    units = LanguageModelUnits(
        num_bytes, documents, weight, _labels_shape(labels) if total_rows is not None else None
    )
    acc = Accumulator(opts.topk, opts.requested, calibration=kind, calibration_bins=bins)
    buffers = {}
    scratch = _LongRowScratch()
    bar = _progress_bar(progress, total_rows)
    try:
        for x, y, name in batches:
            c = x.shape[-1]
            if opts.n_classes is None:
                opts.n_classes = c
                opts.class_weights(c)  # checked even if no row follows (an empty batch)
            elif c != opts.n_classes:
                raise ValueError(f"{name}logits have {c} classes, earlier batches {opts.n_classes}")
            step = chunk or default_chunk_rows(c, x.dtype)
            y_flat = y.reshape(-1)
            done = 0
            for rows in _flat_rows(x):
                if rows.shape[1] > long_row_cols(rows.dtype):
                    # a row too long for one chunk: read and evaluated in pieces
                    for i in range(rows.shape[0]):
                        values, rank = evaluate_long_row(
                            rows, i, y_flat[done + i], acc.row, opts, name, done + i, scratch
                        )
                        units.add(acc.row, values, rank)
                        acc.add_values(values)
                        acc.add_ranks(rank, values)
                        if bar is not None:
                            bar.update(1)
                    done += rows.shape[0]
                    continue
                for start, part in row_chunks(rows, step):
                    evaluate_chunk_into(
                        acc,
                        part,
                        y_flat[done + start : done + start + len(part)],
                        opts,
                        name,
                        done + start,
                        buffers,
                        units,
                    )
                    if bar is not None:
                        bar.update(len(part))
                done += rows.shape[0]
    finally:
        if bar is not None:
            bar.close()
    report = acc.report()
    return units.finish(report, acc.loss_total)


def _labels_shape(labels):
    """The labels' shape (opened again: a memory map, so nothing is read)."""
    return open_array(labels, "labels").shape
