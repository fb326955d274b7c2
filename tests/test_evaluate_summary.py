"""evaluate's one kernel pass (xent._kernels.evaluate_summary) against the per-row path it
replaces (evaluate_rows, then group_sums, calibration_histograms and the rank counts in
numpy): the same sums, bit for bit, the same counts and histograms, on every layout of the
work among threads; labels checked in the kernel."""

import numpy as np
import pytest

import xent
from xent import _calibration as cal
from xent import _evaluation as ev
from xent import _kernels

from support import classifier_outputs

TOPK = np.array([1, 2, 5], dtype=np.intp)


def per_row_path(x, t, w, row0, group, carry, width_bins):
    """What evaluate did before the one pass: per-row columns, then numpy and group_sums."""
    n = len(x)
    values, rank = np.empty((n, ev.FIELDS)), np.empty(n, dtype=np.intp)
    _kernels.evaluate_rows(x, t, w, -100, values, rank, 1)
    carry = carry.copy()
    closed = np.empty((n // group + 1, ev.FIELDS))
    k = _kernels.group_sums(values, row0, group, carry, closed)
    hist = cal.CalibrationHistogram(width_bins)
    hist.add_rows(values, ev._CONFIDENCE, rank)
    counted = rank[rank >= 0]
    counts = [len(counted), n - len(counted), hist.nan] + [
        int(np.count_nonzero(counted < k)) for k in TOPK
    ]
    return values, rank, closed[:k], carry, counts, hist


def one_pass(x, t, w, row0, group, carry, width_bins, threads, per_row):
    n = len(x)
    carry = carry.copy()
    closed = np.empty((n // group + 2, ev.FIELDS))
    counts = np.zeros((threads, 16), dtype=np.int64)
    fine = np.zeros((threads, cal.FINE_BINS, 4), dtype=np.int64)
    width = np.zeros((threads, width_bins, 4), dtype=np.int64)
    values = np.full((n, ev.FIELDS), np.nan) if per_row else None
    rank = np.full(n, -7, dtype=np.intp) if per_row else None
    k, bad = _kernels.evaluate_summary(
        x, t, w, -100, row0, group, carry, closed, TOPK, counts, fine, width, values, rank, threads
    )
    tables = counts.sum(axis=0), fine.sum(axis=0), width.sum(axis=0)
    return (values, rank, closed[:k], carry, *tables, bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# 7 and 40 classes: whole runs per thread; 300: blocks of rows, then the runs summed
@pytest.mark.parametrize("c", [7, 40, 300])
@pytest.mark.parametrize("row0", [0, 5, 4093])
@pytest.mark.parametrize("threads", [1, 2])
def test_one_pass_equals_the_per_row_path(dtype, c, row0, threads):
    n = 3000 if c < 300 else 700
    x, t = classifier_outputs(n, c, dtype=dtype, seed=c + row0, ignore_every=13)
    x[17, 3] = np.nan  # a NaN confidence: counted apart, not binned
    x[40, :] = -np.inf  # no finite entry
    x[41, 2] = np.inf
    w = np.random.default_rng(c).random(c) + 0.5
    carry = np.random.default_rng(row0).standard_normal(ev.FIELDS)  # an open group's sum
    for group in (64, 4096):
        want = per_row_path(x, t, w, row0, group, carry, 9)
        for per_row in (False, True):
            got = one_pass(x, t, w, row0, group, carry, 9, threads, per_row)
            values, rank, closed, new_carry, counts, fine, width, bad = got
            assert bad == -1
            np.testing.assert_array_equal(closed, want[2])  # bit for bit (NaN where NaN)
            np.testing.assert_array_equal(new_carry, want[3])
            assert list(counts[: 3 + len(TOPK)]) == want[4]
            assert not counts[3 + len(TOPK) :].any()  # the padding is left alone
            np.testing.assert_array_equal(fine, want[5].fine)
            np.testing.assert_array_equal(width, want[5].width)
            if per_row:
                np.testing.assert_array_equal(values, want[0])
                np.testing.assert_array_equal(rank, want[1])


@pytest.mark.parametrize("c", [10, 600])
@pytest.mark.parametrize("threads", [1, 2])
def test_first_bad_label_found_by_the_kernel(c, threads):
    x, t = classifier_outputs(9000 if c < 300 else 400, c, seed=3)
    t[[377, 378, 390]] = [c, -1, c + 5]
    _, _, _, _, _, _, _, bad = one_pass(x, t, None, 11, 64, np.zeros(ev.FIELDS), 3, threads, False)
    assert bad == 377
    with pytest.raises(IndexError, match=rf"labels\[377\] = {c} is out of range"):
        xent.evaluate(x, t, num_threads=threads)
    t[377] = 0
    with pytest.raises(IndexError, match=r"labels\[378\] = -1 is out of range"):
        xent.evaluate(x, t, num_threads=threads)


def test_labels_of_any_integer_dtype():
    x, t = classifier_outputs(2000, 12, seed=5, ignore_every=7)
    base = xent.evaluate(x, t)
    kept = t[t >= 0]
    assert xent.evaluate(x[t >= 0], kept.astype(np.uint8)) == xent.evaluate(x[t >= 0], kept)
    assert xent.evaluate(x, t.astype(np.int32)) == base
    assert xent.evaluate(x, t.astype(np.int16)[::1]) == base
    # an unsigned 64-bit label that a cast to intp would turn into ignore_index (-100)
    huge = kept.astype(np.uint64)
    huge[5] = np.uint64(2**64 - 100)
    with pytest.raises(IndexError, match=r"labels\[5\] = 18446744073709551516 is out of range"):
        xent.evaluate(x[t >= 0], huge)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_rows_widened_in_parallel_give_float32_bits(half):
    if half == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype = ml_dtypes.bfloat16
    else:
        dtype = np.float16
    x, t = classifier_outputs(5000, 33, dtype=np.float32, seed=9, ignore_every=5)
    h = x.astype(dtype)
    want = xent.evaluate(h.astype(np.float32), t)
    for threads in (1, 2):
        assert xent.evaluate(h, t, num_threads=threads, chunk_rows=1234) == want
    # every third row: widened row by row from the strided rows
    assert xent.evaluate(h[::3], t[::3]) == xent.evaluate(h[::3].astype(np.float32), t[::3])
    # a strided view (every other class) is converted by numpy instead: the same bits
    assert xent.evaluate(h[:, ::2], t % 17) == xent.evaluate(h[:, ::2].astype(np.float32), t % 17)


def test_per_row_outputs_only_for_the_units_that_need_them():
    x, t = classifier_outputs(6000, 20, seed=2, ignore_every=9)
    docs = np.repeat(np.arange(60), 100)
    nbytes = np.random.default_rng(1).integers(1, 6, 6000)
    plain = xent.evaluate(x, t)
    both = xent.evaluate(x, t, num_bytes=nbytes, documents=docs, chunk_rows=1000)
    assert both.loss == plain.loss and both.ece == plain.ece
    # the documents' sums, from the per-row losses the kernel wrote
    loss = xent.cross_entropy(x, t, reduction="none").astype(np.float64)
    kept = t >= 0
    expected = np.zeros(60)
    np.add.at(expected, docs[kept], -loss[kept])
    np.testing.assert_allclose(both.document_loglikelihood, expected, rtol=1e-6)
    assert both.bits_per_byte == pytest.approx(
        plain.loss * plain.count / (np.log(2) * nbytes[kept].sum()), rel=1e-12
    )


def test_threads_own_tables_fold_to_the_same_report(monkeypatch):
    # chunks this small normally go straight into the totals on one thread: lowered, every
    # chunk fills the threads' own counters and histograms, added up once by the report
    x, t = classifier_outputs(30000, 9, seed=8, ignore_every=6)
    x[123, 4] = np.nan
    base = xent.evaluate(x, t, topk=(1, 3), calibration="width", num_threads=1)
    for limit in (1, 50_000):  # every chunk on the threads' tables; the small ones not
        monkeypatch.setattr(ev, "PARALLEL_ELEMENTS", limit)
        for chunk in (None, 4096, 5000, 777):
            got = xent.evaluate(
                x, t, topk=(1, 3), calibration="width", num_threads=2, chunk_rows=chunk
            )
            assert got == base
    mass = xent.evaluate(x, t, num_threads=2, chunk_rows=6000)
    monkeypatch.setattr(ev, "PARALLEL_ELEMENTS", 2**22)
    assert mass == xent.evaluate(x, t, num_threads=1)
    assert mass.count == int(np.count_nonzero(t >= 0)) and np.isnan(mass.ece)
