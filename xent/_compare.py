"""Comparing two models on the same tokens: :func:`compare` (``xent compare REF CAND``).

Someone quantising or pruning a model runs both models over the same text and keeps the
logits; :func:`compare` streams the two logit sets (arrays, memory maps, ``.npy`` files, or
iterables of batches) a chunk of rows at a time, with one kernel call per pair of rows
(``row_compare``: both rows read side by side once, for their log-sum-exps and argmaxes; KL
and JSD from a second look at the rows while they are in cache).

Memory: one chunk of each model's logits (about 64 MiB each by default), and per counted row
one float32 KL (and, with labels, one float32 change of the target's probability), kept for
the percentiles, which are exact (``numpy.percentile``) over those float32 values: 4 or 8
bytes per row, against the ``2 C`` logits per row read.

Sums are float64, added in an order fixed by the global row index (as :func:`xent.evaluate`),
so any chunking, batching or thread count gives the same bits.
"""

import dataclasses
from collections.abc import Iterable

import numpy as np

from . import _calibration as _cal
from . import _kernels
from ._evaluation import CHUNK_BYTES, GROUP_ROWS, MAX_CHUNK_ROWS, check_chunk_rows
from ._io import FileArray, is_path, open_array
from ._threads import get_num_threads, shares_cpus
from ._validation import aligned, check_ignore_index, compute_dtype

COLUMNS = _kernels.compare_columns()
_C = {name: i for i, name in enumerate(COLUMNS)}

#: KL percentiles reported (100: the max).
KL_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)

#: Percentiles of the target-probability change reported.
SHIFT_PERCENTILES = (1.0, 10.0, 50.0, 90.0, 99.0)


@dataclasses.dataclass(frozen=True)
class ComparisonReport:
    """What :func:`compare` measured (divergences in nats).

    Attributes
    ----------
    count, ignored : int
        Rows compared, and rows whose label is ``ignore_index`` (left out of everything).
    kl, kl_stderr : float
        Mean ``KL(ref || cand)`` per row and its standard error.
    kl_percentiles : dict
        Percentile (50, 90, 99, 99.9, 100 = max) -> KL, over rows.
    js : float
        Mean Jensen-Shannon divergence per row (nats, at most ln 2).
    top1_agreement, top1_agreement_stderr : float
        Share of rows whose two models' first largest logits are at the same index.
    ref_loss, cand_loss, ref_perplexity, cand_perplexity : float or None
        With labels: each model's mean cross-entropy and perplexity; ``*_stderr`` in
        ``stderr``.
    perplexity_ratio : float or None
        ``cand_perplexity / ref_perplexity = exp(mean(nll_cand - nll_ref))``, its standard
        error by the delta method from the paired per-row differences (so the models'
        correlation is accounted for), and ``perplexity_ratio_interval`` ``exp`` of the 95%
        interval of the mean difference.
    target_prob_shift : dict or None
        With labels: ``softmax(cand)[t] - softmax(ref)[t]`` per row: ``mean``, ``rms``,
        ``stderr`` (of the mean) and percentiles (1, 10, 50, 90, 99).
    kl_values, target_prob_shifts : numpy.ndarray of float32
        The per-row values the percentiles and ``--plot`` use (counted rows, in order).

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> ref = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 0.0]])
    >>> cand = np.array([[1.5, 1.0, -1.0], [0.0, 0.5, 2.5], [0.5, 1.5, 0.0]])
    >>> report = xent.compare(ref, cand, np.array([0, 2, 1]))
    >>> report.count, round(report.kl, 4), round(report.kl_percentiles[100.0], 4)
    (3, 0.0713, 0.1024)

    The fields about the labels are None when :func:`compare` was given none:

    >>> xent.compare(ref, cand).perplexity_ratio is None
    True
    """

    count: int
    ignored: int
    kl: float
    kl_stderr: float
    kl_percentiles: dict
    js: float
    top1_agreement: float
    top1_agreement_stderr: float
    ref_loss: float = None
    cand_loss: float = None
    ref_perplexity: float = None
    cand_perplexity: float = None
    perplexity_ratio: float = None
    perplexity_ratio_interval: tuple = None
    target_prob_shift: dict = None
    stderr: dict = dataclasses.field(default_factory=dict)
    kl_values: np.ndarray = dataclasses.field(default=None, repr=False)
    target_prob_shifts: np.ndarray = dataclasses.field(default=None, repr=False)

    def as_dict(self):
        """Flat dict of the numbers (no per-row arrays).

        Examples
        --------
        >>> import numpy as np
        >>> import xent
        >>> ref = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 0.0]])
        >>> cand = np.array([[1.5, 1.0, -1.0], [0.0, 0.5, 2.5], [0.5, 1.5, 0.0]])
        >>> numbers = xent.compare(ref, cand).as_dict()
        >>> {name: round(numbers[name], 4) for name in ("count", "kl", "kl_max", "js")}
        {'count': 3, 'kl': 0.0713, 'kl_max': 0.1024, 'js': 0.0181}

        With labels it adds the losses, the perplexities and their ratio's interval:

        >>> numbers = xent.compare(ref, cand, np.array([0, 2, 1])).as_dict()
        >>> [
        ...     round(numbers[name], 4)
        ...     for name in ("perplexity_ratio", "perplexity_ratio_low", "perplexity_ratio_high")
        ... ]
        [0.9907, 0.6666, 1.4726]
        """
        out = {
            "count": self.count,
            "ignored": self.ignored,
            "kl": self.kl,
            "kl_stderr": self.kl_stderr,
        }
        for q, v in self.kl_percentiles.items():
            out["kl_max" if q == 100 else f"kl_p{q:g}"] = v
        out.update(
            js=self.js,
            top1_agreement=self.top1_agreement,
            top1_agreement_stderr=self.top1_agreement_stderr,
        )
        if self.ref_loss is not None:
            out.update(
                ref_loss=self.ref_loss,
                cand_loss=self.cand_loss,
                ref_perplexity=self.ref_perplexity,
                cand_perplexity=self.cand_perplexity,
                perplexity_ratio=self.perplexity_ratio,
                perplexity_ratio_low=self.perplexity_ratio_interval[0],
                perplexity_ratio_high=self.perplexity_ratio_interval[1],
            )
            for name, se in self.stderr.items():
                out[f"{name}_stderr"] = se
            for name, v in self.target_prob_shift.items():
                out[f"target_prob_shift_{name}"] = v
        return out


def _pct_key(q):
    return f"p{q:g}"


# ---- inputs -----------------------------------------------------------------------------------


def _is_one_array(x):
    # a file opened for reading by chunks (FileArray) is one array, not an iterable of batches
    return is_path(x) or isinstance(x, (np.ndarray, FileArray)) or not isinstance(x, Iterable)


def _check_pair(xr, xc, y, where):
    if xr.shape != xc.shape:
        raise ValueError(
            f"{where}ref has shape {xr.shape} but cand {xc.shape}: the two "
            f"models' logits must have the same shape"
        )
    if y is not None:
        if y.dtype.kind not in "iu":
            raise TypeError(f"{where}labels must hold integer class indices, got dtype {y.dtype}")
        if y.shape != xr.shape[:-1]:
            raise ValueError(
                f"{where}labels has shape {y.shape}, expected {xr.shape[:-1]} "
                f"(the logits' shape without the class axis)"
            )


def _sources(ref, cand, labels):
    """(total rows or None, iterator of (ref, cand, labels or None, name) ndarrays)."""
    if _is_one_array(ref) or _is_one_array(cand):
        if not (_is_one_array(ref) and _is_one_array(cand)):
            raise TypeError(
                "give ref and cand both as arrays (or files), or both as iterables of batches"
            )
        xr = _check_logits(open_array(ref, "ref"), "ref")
        xc = _check_logits(open_array(cand, "cand"), "cand")
        y = None if labels is None else open_array(labels, "labels")
        _check_pair(xr, xc, y, "")
        return int(np.prod(xr.shape[:-1], dtype=np.int64)), iter([(xr, xc, y, "")])

    total = None
    if isinstance(ref, (list, tuple)):  # shards: open them now, so the bar has a total
        ref = [open_array(b, f"batch {i} ref") for i, b in enumerate(ref)]
        total = sum(int(np.prod(b.shape[:-1], dtype=np.int64)) for b in ref)

    def batches():
        label_batches = labels if labels is not None else iter(lambda: None, 0)
        for i, (br, bc, by) in enumerate(zip(ref, cand, label_batches, strict=labels is not None)):
            where = f"batch {i} "
            xr = _check_logits(open_array(br, f"{where}ref"), f"{where}ref")
            xc = _check_logits(open_array(bc, f"{where}cand"), f"{where}cand")
            y = None if by is None else open_array(by, f"{where}labels")
            _check_pair(xr, xc, y, where)
            yield xr, xc, y, f"batch {i}, "

    return total, batches()


def _check_logits(x, name):
    if compute_dtype(x.dtype) is None:
        raise TypeError(
            f"{name} must be float16, bfloat16, float32 or float64, got dtype {x.dtype}"
        )
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"{name} has shape {x.shape}: it needs a non-empty class axis (last)")
    return x


def _rows_of(x):
    """(rows, C): a view where the layout allows one (always for .npy files and C-ordered
    arrays), else a copy."""
    return np.reshape(x, (-1, x.shape[-1]))


def _prepared(rows, compute):
    if rows.dtype != compute or (rows.shape[1] > 1 and rows.strides[1] != rows.itemsize):
        with np.errstate(over="ignore"):
            rows = np.ascontiguousarray(rows, dtype=compute)
    return aligned(rows)


# ---- the pass ---------------------------------------------------------------------------------


class _OrderedSums:
    """Float64 column sums added in an order fixed by the global row index (as evaluate's)."""

    def __init__(self, fields, group=GROUP_ROWS):
        self.group, self.row = group, 0
        self.carry, self.total = np.zeros(fields), np.zeros(fields)

    def add(self, values):
        out = np.empty((len(values) // self.group + 1, values.shape[1]))
        k = _kernels.group_sums(values, self.row, self.group, self.carry, out)
        _kernels.add_in_order(out[:k], self.total)
        self.row += len(values)

    def result(self):
        total = self.total.copy()
        if self.row % self.group:
            _kernels.add_in_order(self.carry[None, :], total)
        return total


def _percentiles(values, qs):
    if len(values) == 0:
        return {q: float("nan") for q in qs}
    with np.errstate(invalid="ignore"):  # inf - inf between two infinite KLs
        v = np.percentile(values.astype(np.float64), qs)
    return {q: float(x) for q, x in zip(qs, v)}


@shares_cpus
def compare(
    ref, cand, labels=None, *, ignore_index=-100, chunk_rows=None, num_threads=None, progress=False
):
    """Compare two models' logits on the same rows: KL, JSD, top-1 agreement, perplexities.

    Parameters
    ----------
    ref, cand : array_like, numpy.memmap, path, or iterable
        The reference model's and the candidate's logits, shape (..., C) each (the same),
        float16/bfloat16/float32/float64; ``.npy`` paths are memory-mapped. Or iterables of
        batches (arrays or paths, shard by shard), taken in step.
    labels : array_like, path or iterable, optional
        Integer targets, shape (...): adds each model's loss and perplexity, their ratio and
        the change of the target's probability. Rows equal to ``ignore_index`` are left out
        of every metric.
    ignore_index : int, optional
    chunk_rows : int, optional
        Rows per chunk (default: about 64 MiB of each model's logits). Results do not
        depend on it.
    num_threads : int or None, optional
    progress : bool, optional
        A tqdm progress bar (rows, rate, and the time left when the total is known).

    Returns
    -------
    ComparisonReport

    Notes
    -----
    ``KL(ref || cand) = sum_i p_i (log p_i - log q_i)`` with ``p = softmax(ref)`` and
    ``q = softmax(cand)``, per row, nats; the mean is over rows (PyTorch's ``batchmean``).
    ``JSD = (KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``. A row holding NaN or
    +inf (or all -inf) in either model has NaN KL and JSD. Top-1 agreement compares the first
    index of each row's largest logit. Standard errors are the sample standard deviation
    over sqrt(count); intervals are normal-approximation 95% intervals.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> ref = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 0.0]])
    >>> cand = np.array([[1.5, 1.0, -1.0], [0.0, 0.5, 2.5], [0.5, 1.5, 0.0]])
    >>> report = xent.compare(ref, cand)
    >>> round(report.kl, 4), round(report.js, 4), round(report.top1_agreement, 4)
    (0.0713, 0.0181, 0.6667)

    With labels, each model's perplexity and their ratio (below 1: the candidate is better):

    >>> report = xent.compare(ref, cand, np.array([0, 2, 1]))
    >>> round(report.ref_perplexity, 4), round(report.cand_perplexity, 4)
    (1.4983, 1.4844)
    >>> round(report.perplexity_ratio, 4)
    0.9907
    """
    chunk = check_chunk_rows(chunk_rows)
    ignore_index = check_ignore_index(ignore_index)
    threads = get_num_threads(num_threads)
    total_rows, sources = _sources(ref, cand, labels)
    sums = _OrderedSums(len(COLUMNS))
    kl_parts, shift_parts = [], []
    count = ignored = 0
    n_classes = None
    labelled = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total_rows,
            unit="rows",
            unit_scale=True,
            desc="xent compare",
            dynamic_ncols=True,
            leave=False,
            smoothing=0.1,
        )
    try:
        for xr, xc, y, name in sources:
            c = xr.shape[-1]
            if n_classes is None:
                n_classes, labelled = c, y is not None
            elif c != n_classes:
                raise ValueError(f"{name}logits have {c} classes, earlier batches {n_classes}")
            if (y is not None) != labelled:
                raise ValueError(f"{name}labels are given for some batches only")
            compute = np.result_type(
                compute_dtype(xr.dtype.newbyteorder("=")), compute_dtype(xc.dtype.newbyteorder("="))
            )
            step = chunk or max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // 2 // (c * compute.itemsize)))
            rr, rc = _rows_of(xr), _rows_of(xc)
            y_flat = None if y is None else y.reshape(-1)
            for start in range(0, rr.shape[0], step):
                pr = _prepared(rr[start : start + step], compute)
                pc = _prepared(rc[start : start + step], compute)
                n = len(pr)
                t = None
                if y_flat is not None:
                    # a private copy is checked and indexed with: a concurrent writer of
                    # the caller's labels cannot send the kernel outside a row
                    t = np.array(y_flat[start : start + n], copy=True)
                    bad = (t != ignore_index) & ((t < 0) | (t >= c))
                    if bad.any():
                        i = int(np.argmax(bad))
                        raise IndexError(
                            f"labels[{sums.row + i}] = {t[i]} is out of range ({name}row "
                            f"{start + i}): class indices must lie in [0, {c}) or equal "
                            f"ignore_index={ignore_index}"
                        )
                    t = aligned(t.astype(np.intp, copy=False))
                values = np.empty((n, len(COLUMNS)))
                _kernels.compare_rows(pr, pc, t, ignore_index, values, threads)
                kept = values[:, _C["counted"]] == 1
                count += int(np.count_nonzero(kept))
                ignored += n - int(np.count_nonzero(kept))
                with np.errstate(over="ignore"):  # a KL above 3.4e38 is kept as inf
                    kl_parts.append(values[kept, _C["kl"]].astype(np.float32))
                if labelled:
                    shift_parts.append(values[kept, _C["dp"]].astype(np.float32))
                sums.add(values)
                if bar is not None:
                    bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    return _report(sums.result(), count, ignored, bool(labelled), kl_parts, shift_parts)


def _report(total, n, ignored, labelled, kl_parts, shift_parts):
    s = {name: float(total[i]) for name, i in _C.items()}
    nan = float("nan")

    def mean(name):
        return s[name] / n if n else nan

    def se(name):
        return _cal.mean_stderr(s[name], s[name + "_sq"], n)

    kl_values = np.concatenate(kl_parts) if kl_parts else np.zeros(0, np.float32)
    fields = dict(
        count=n,
        ignored=ignored,
        kl=mean("kl"),
        kl_stderr=se("kl"),
        kl_percentiles=_percentiles(kl_values, KL_PERCENTILES),
        js=mean("js"),
        top1_agreement=mean("agree"),
        top1_agreement_stderr=_cal.proportion_stderr(s["agree"], n),
        kl_values=kl_values,
    )
    if labelled:
        shifts = np.concatenate(shift_parts) if shift_parts else np.zeros(0, np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            ref_loss, cand_loss, diff = mean("nll_ref"), mean("nll_cand"), mean("nll_diff")
            diff_se = se("nll_diff")
            ratio = float(np.exp(diff))
            lo, hi = _cal.interval(diff, diff_se)
            # a huge loss difference overflows to an infinite ratio, as the ratio itself does
            interval = (float(np.exp(lo)), float(np.exp(hi)))
            ref_ppl, cand_ppl = float(np.exp(ref_loss)), float(np.exp(cand_loss))
            shift = {"mean": mean("dp"), "rms": float(np.sqrt(mean("dp_sq"))), "stderr": se("dp")}
        shift.update({_pct_key(q): v for q, v in _percentiles(shifts, SHIFT_PERCENTILES).items()})
        fields.update(
            ref_loss=ref_loss,
            cand_loss=cand_loss,
            ref_perplexity=ref_ppl,
            cand_perplexity=cand_ppl,
            perplexity_ratio=ratio,
            perplexity_ratio_interval=interval,
            target_prob_shift=shift,
            target_prob_shifts=shifts,
            stderr={
                "ref_loss": se("nll_ref"),
                "cand_loss": se("nll_cand"),
                "ref_perplexity": ref_ppl * se("nll_ref"),
                "cand_perplexity": cand_ppl * se("nll_cand"),
                "perplexity_ratio": ratio * diff_se,
            },
        )
    return ComparisonReport(**fields)
