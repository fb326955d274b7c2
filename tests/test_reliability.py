"""Reliability: inputs beyond 2**31 elements, flat memory over thousands of calls (half of
them raising), and regression tests for what tests/test_fuzz.py found."""

import gc
import math
import tracemalloc
import warnings

import numpy as np
import pytest

import xent
from xent import reference as ref

C = 2 ** 16
ROWS = 2 ** 15 + 2  # ROWS * C = 2**31 + 2**17 elements: the last two rows lie past 2**31


# ---- more than 2**31 elements -------------------------------------------------------------------

def _overlapping_rows(values):
    """(ROWS, C) read-only float32 view whose row r is buf[16 r : 16 r + C]: 2**31 + 2**17
    elements in 2.5 MiB. ``values`` maps buffer positions to nonzero values."""
    buf = np.zeros(16 * (ROWS - 1) + C, dtype=np.float32)
    for position, value in values.items():
        buf[position] = value
    x = np.lib.stride_tricks.as_strided(buf, shape=(ROWS, C), strides=(64, 4))
    x.flags.writeable = False
    return x


def _expected_lse(values):
    """logsumexp of each row of :func:`_overlapping_rows`: C - k zeros plus its k values."""
    start = 16 * np.arange(ROWS)
    total = np.full(ROWS, float(C))
    for position, value in values.items():
        inside = (start <= position) & (position < start + C)
        total[inside] += math.expm1(value)
    return np.log(total)


def test_more_than_2_31_elements_fast():
    """2**31 + 2**17 elements (overlapping rows of a small buffer): element counts and
    offsets past 2**31 must not wrap. The value at the very end is in the last row only."""
    last = 16 * (ROWS - 1) + C - 1
    values = {last: 20.0, 16 * (ROWS - 2): 5.0, 12345: -3.0}
    x = _overlapping_rows(values)
    want = _expected_lse(values)
    got = xent.logsumexp(x)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[-1] != got[-3]  # the last value changed the last row
    labels = np.zeros(ROWS, dtype=np.int64)
    labels[-1] = C - 1  # the logit 20.0
    row_loss = want - np.where(np.arange(ROWS) == ROWS - 1, 20.0, 0.0)
    row_loss[-2] = want[-2] - 5.0  # row ROWS - 2 starts at the 5.0
    labels[-2] = 0
    loss = xent.cross_entropy(x, labels, reduction="sum")
    np.testing.assert_allclose(loss, row_loss.sum(), rtol=1e-6)
    np.testing.assert_allclose(xent.cross_entropy(x, labels, reduction="none")[-2:],
                               row_loss[-2:], rtol=1e-6, atol=2e-6)  # log(sum)'s error


@pytest.mark.slow
def test_more_than_2_31_elements_memmap(tmp_path):
    """A real (2**15 + 2, 2**16) float32 memory map, 8 GiB of a sparse file (free on disk),
    with nonzero rows only past element 2**31."""
    path = tmp_path / "big.f32"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(ROWS, C))
    x[-1, 7] = 30.0
    x[-2, :] = np.linspace(-1, 1, C, dtype=np.float32)
    x.flush()
    del x
    x = np.load(path, mmap_mode="r")
    got = xent.logsumexp(x)
    want = np.full(ROWS, math.log(C))
    want[-1] = math.log(C - 1 + math.exp(30.0))
    want[-2] = ref.logsumexp(np.linspace(-1, 1, C, dtype=np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    labels = np.full(ROWS, 7)
    loss = xent.cross_entropy(x, labels, reduction="none")
    np.testing.assert_allclose(loss[-1], want[-1] - 30.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss[:-2], math.log(C), rtol=1e-6)
