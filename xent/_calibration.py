"""Calibration of the top-1 prediction and standard errors, kept in one pass over any data.

:func:`xent.evaluate`'s kernel bins each row's top-1 probability (confidence) and top-1
correctness into a :class:`CalibrationHistogram` (per-thread tables, added up once), and its
sums of squares go into the standard errors computed here. Everything kept is integer, so it merges exactly and in any order: the
same bits for any chunking, batching, thread count or Dask block split.

Two kinds of bins:

- equal width (``"width"``): bin b holds confidences in ``[b/B, (b+1)/B)`` (the last one
  includes 1). Kept exactly, in B bins.
- equal mass (``"mass"``, the default, as HELM): B bins of (nearly) equal row counts, the
  split of the confidences sorted in increasing order into B runs whose sizes differ by at
  most one (``numpy.array_split``). Their edges depend on the whole distribution, so a pass
  over data larger than memory cannot know them in advance: it keeps a fine histogram of
  :data:`FINE_BINS` equal-width bins and merges runs of fine bins into B bins afterwards,
  cutting at the fine edge whose cumulative count is nearest to each exact cut. The rows on
  the wrong side of a cut are exactly those between the two positions in sorted order
  (``m_k`` rows at cut k), and moving one row from a bin to its neighbour changes the ECE by
  at most ``2 / N`` (each row's ``|correct - confidence| <= 1`` enters one bin's sum), so

      |ECE(fine histogram) - ECE(exact equal-mass bins)| <= 2 sum_k m_k / N,

  which :attr:`xent.EvaluationReport.ece_error_bound` reports (0 when every cut falls on a
  fine edge). With 65536 fine bins the bound is typically below 1e-4 of the ECE's scale.

Confidence sums are kept in fixed point as two int64 per bin: the sum of
``round(c * 2**32)`` and the sum of the remainders in units of 2**-64 (rounding 5e-20 per row,
below float64's own), exact and free of order until a bin holds 2**31 rows.
"""

import numpy as np

from . import _kernels

#: Equal-width fine bins of the confidence kept for equal-mass binning.
FINE_BINS = 2**16

#: Confidence sums are integers in units of 1 / CONFIDENCE_UNIT.
CONFIDENCE_UNIT = 2.0**32

#: Rows per bincount: its float64 sums of fixed-point values stay below 2**53 (exact).
_BINCOUNT_ROWS = 2**20

#: The normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054

CALIBRATION_KINDS = ("mass", "width")


def check_calibration(calibration, calibration_bins):
    """The checked (kind, bins) of evaluate's calibration options."""
    if calibration not in CALIBRATION_KINDS:
        raise ValueError(
            f"calibration must be 'mass' (equal-mass bins) or 'width' "
            f"(equal-width bins), got {calibration!r}"
        )
    if isinstance(calibration_bins, bool) or not isinstance(calibration_bins, (int, np.integer)):
        raise TypeError(f"calibration_bins must be a positive int, got {calibration_bins!r}")
    if not 1 <= calibration_bins <= FINE_BINS:
        raise ValueError(f"calibration_bins must lie in [1, {FINE_BINS}], got {calibration_bins}")
    return calibration, int(calibration_bins)


def _fixed_point(confidence):
    """(high, low): confidence = high / 2**32 + low / 2**64 (to 2**-65), integer floats."""
    scaled = confidence * CONFIDENCE_UNIT  # exact: a power of two
    high = np.rint(scaled)
    low = np.rint((scaled - high) * CONFIDENCE_UNIT)  # |low| <= 2**31, exact products
    return high, low


def _bin_sums(index, correct, high, low, nbins):
    """Per-bin (count, correct count, confidence sums high and low) as int64, exactly."""
    count = np.bincount(index, minlength=nbins).astype(np.int64)
    hits = np.bincount(index[correct], minlength=nbins).astype(np.int64)
    conf_high = np.zeros(nbins, dtype=np.int64)
    conf_low = np.zeros(nbins, dtype=np.int64)
    for start in range(0, len(index), _BINCOUNT_ROWS):
        part = slice(start, start + _BINCOUNT_ROWS)
        conf_high += np.bincount(index[part], weights=high[part], minlength=nbins).astype(np.int64)
        conf_low += np.bincount(index[part], weights=low[part], minlength=nbins).astype(np.int64)
    return count, hits, conf_high, conf_low


def _confidence_sum(high, low):
    """The float64 value of fixed-point sums (high / 2**32 + low / 2**64)."""
    return high / CONFIDENCE_UNIT + low / CONFIDENCE_UNIT / CONFIDENCE_UNIT


class CalibrationHistogram:
    """Integer histograms of the top-1 confidence: fine (for equal mass) and width bins."""

    def __init__(self, width_bins):
        self.width_bins = width_bins
        # per bin: count, correct, confidence sum high and low parts (a bin's four counters
        # in one cache line: the fine table is 2 MiB, hit at random)
        self.fine = np.zeros((FINE_BINS, 4), dtype=np.int64)
        self.width = np.zeros((width_bins, 4), dtype=np.int64)
        self.nan = 0  # counted rows whose confidence is NaN (a row holding NaN or +inf)
        # per-thread tables that evaluate's kernel fills (thread_tables), folded in on demand
        self._thread_fine = self._thread_width = None

    def thread_tables(self, nthreads):
        """(fine, width): zeroed per-thread tables, shapes (nthreads, FINE_BINS, 4) and
        (nthreads, width_bins, 4), that :func:`xent._kernels.evaluate_summary` adds rows to.
        They are kept across calls (a chunk's rows never leave the kernel's threads) and
        folded into :attr:`fine` and :attr:`width` when those are read (integers: exact)."""
        if self._thread_fine is None or len(self._thread_fine) < nthreads:
            self.fold_threads()
            self._thread_fine = np.zeros((nthreads, FINE_BINS, 4), dtype=np.int64)
            self._thread_width = np.zeros((nthreads, self.width_bins, 4), dtype=np.int64)
        return self._thread_fine, self._thread_width

    def fold_threads(self):
        """Add the per-thread tables into the totals, and drop them."""
        if self._thread_fine is not None:
            for fine, width in zip(self._thread_fine, self._thread_width):  # no 2 MiB temporary
                self.fine += fine
                self.width += width
            self._thread_fine = self._thread_width = None

    def add_rows(self, values, column, rank):
        """Fold in one chunk's per-row values (confidence in ``column``) and ranks (-1:
        ignored; 0: top-1 right), in one compiled loop (:meth:`add` does the same in numpy)."""
        self.nan += _kernels.calibration_histograms(values, column, rank, self.fine, self.width)

    def add(self, confidence, correct):
        """Fold in counted rows: their top-1 probability and whether top-1 is right."""
        confidence = np.asarray(confidence, dtype=np.float64)
        correct = np.asarray(correct, dtype=bool)
        ok = confidence == confidence
        self.nan += int(len(confidence) - np.count_nonzero(ok))
        if not ok.all():
            confidence, correct = confidence[ok], correct[ok]
        confidence = np.clip(confidence, 0.0, 1.0)  # rounding may put it a hair above 1
        high, low = _fixed_point(confidence)
        for table, nbins in ((self.fine, FINE_BINS), (self.width, self.width_bins)):
            index = np.minimum((confidence * nbins).astype(np.int64), nbins - 1)
            table += np.stack(_bin_sums(index, correct, high, low, nbins), axis=1)

    def merge(self, other):
        self.fold_threads()
        other.fold_threads()
        self.fine += other.fine
        self.width += other.width
        self.nan += other.nan

    def bins(self, kind, nbins):
        """(table, error bound): table rows (low, high, count, confidence, accuracy)."""
        self.fold_threads()
        if kind == "width":
            edges = np.arange(nbins + 1) / nbins
            sums = self.width.T
            bound = 0.0
        else:
            cum = np.zeros(FINE_BINS + 1, dtype=np.int64)  # cum[j]: rows below fine edge j
            np.cumsum(self.fine[:, 0], out=cum[1:])
            total = int(cum[-1])
            sizes = np.full(nbins, total // nbins, dtype=np.int64)
            sizes[: total % nbins] += 1  # as numpy.array_split
            exact = np.cumsum(sizes)[:-1]  # sorted positions of the cuts
            # the fine edge nearest each exact cut (the first of equals)
            right = np.searchsorted(cum, exact, side="left")
            left = np.maximum(right - 1, 0)
            pick = np.where(np.abs(cum[left] - exact) <= np.abs(cum[right] - exact), left, right)
            cuts = np.concatenate([[0], pick, [FINE_BINS]])
            bound = 2.0 * float(np.abs(cum[pick] - exact).sum()) / total if total else 0.0
            # each bin's four sums in one reduceat over the table's rows (a copy of each
            # column with a 0 appended took twice the time); a bin starting at the last edge
            # is empty, as is one between two cuts on one edge
            starts = cuts[:-1]
            sums = np.zeros((nbins, 4), dtype=np.int64)
            inside = starts < FINE_BINS
            sums[inside] = np.add.reduceat(self.fine, starts[inside], axis=0)
            sums[cuts[:-1] == cuts[1:]] = 0
            sums = sums.T
            edges = cuts / FINE_BINS
        count, hits, conf_high, conf_low = sums
        with np.errstate(invalid="ignore", divide="ignore"):
            table = np.column_stack(
                [
                    edges[:-1],
                    edges[1:],
                    count,
                    _confidence_sum(conf_high, conf_low) / count,
                    hits / count,
                ]
            )
        return table, bound

    def errors(self, kind, nbins):
        """(ECE, MCE, table, error bound) for these bins; NaN with a NaN confidence."""
        table, bound = self.bins(kind, nbins)
        count = table[:, 2]
        total = count.sum()
        if self.nan or total == 0:
            return float("nan"), float("nan"), table, bound
        kept = count > 0
        gap = np.abs(table[kept, 4] - table[kept, 3])
        return float(np.sum(count[kept] * gap) / total), float(gap.max()), table, bound


def ratio_stderr(sum_y, sum_w, sum_yy, sum_wy, sum_ww, n):
    """Standard error of the ratio mean sum(y) / sum(w) (a weighted mean, y = w * value).

    By linearisation: var = sum (y_i - R w_i)^2 / sum(w)^2 * n / (n - 1), which for w = 1 is
    the sample variance over n. NaN with fewer than 2 rows. The sums of squares are exact
    order-fixed float64 sums; the subtraction loses digits only when the spread is below
    1e-8 of the mean, far below what a standard error is read for.
    """
    if n < 2 or not sum_w:
        return float("nan")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        r = sum_y / sum_w
        spread = max(sum_yy - 2 * r * sum_wy + r * r * sum_ww, 0.0)
        return float(np.sqrt(spread / (sum_w * sum_w) * n / (n - 1)))


def mean_stderr(total, total_sq, n):
    """Standard error of a plain mean from its sum and sum of squares over n rows."""
    return ratio_stderr(total, n, total_sq, total, n, n)


def proportion_stderr(hits, n):
    """Standard error of a proportion (the sample standard deviation of 0/1 over sqrt n)."""
    if n < 2:
        return float("nan")
    p = hits / n
    return float(np.sqrt(max(p * (1 - p), 0.0) / (n - 1)))


def interval(mean, stderr):
    """The normal-approximation 95% interval mean +- 1.96 stderr."""
    return (mean - Z95 * stderr, mean + Z95 * stderr)
