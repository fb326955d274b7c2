"""Reductions summed exactly: the sum and the mean of the per-row losses are the exact sums
rounded once, so they do not depend on the order of the rows, the blocks or the threads."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xent
from xent import _kernels

from support import hypothesis_settings


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
@hypothesis_settings(300)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=40))
def test_exact_sum_is_fsum(batched, values):
    """The superaccumulator against the exact rational sum, rounded once by float(): values
    added one by one, and 16 at a time as the row kernels add them (values that do not split
    on the batch's grids, tiny or huge, go one by one)."""
    exact = sum(Fraction(v) for v in values)  # exact rationals: fsum overflows early
    try:
        want = float(exact)
    except OverflowError:  # beyond the largest double: rounds to an infinity
        want = math.inf if exact > 0 else -math.inf
    got = _kernels.exact_sum(np.array(values, dtype=np.float64), batched=batched)
    assert got == want or (math.isnan(got) and math.isnan(want)), (values, got, want)


@pytest.mark.parametrize(
    "values, want",
    [
        ([1e308, 1.0, -1e308], 1.0),
        ([1e308, 1e308], math.inf),
        ([-1e308, -1e308, 1e308], -1e308),
        ([5e-324, 5e-324, -5e-324], 5e-324),
        ([1.0, 2.0**-53, 2.0**-106], 1.0 + 2.0**-52),  # past the halfway point: rounds up
        ([1.0, 2.0**-53], 1.0),  # the tie: to even
        ([math.inf, 1.0], math.inf),
        ([math.inf, -math.inf], math.nan),
        ([math.nan, 1.0], math.nan),
        ([], 0.0),
    ],
)
def test_exact_sum_edges(values, want):
    got = _kernels.exact_sum(np.array(values, dtype=np.float64))
    assert got == want or (math.isnan(got) and math.isnan(want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
@pytest.mark.parametrize("classes", [3, 100, 5000])
def test_reductions_are_exact_and_order_free(isa, dtype, classes):
    rng = np.random.default_rng(classes)
    n = 70_000 if classes <= 100 else 300
    x = (rng.standard_normal((n, classes)) * 4).astype(dtype)
    t = rng.integers(0, classes, n)
    weight = rng.random(classes) + 0.1
    rows = xent.cross_entropy(x, t, weight=weight, reduction="none").astype(np.float64)
    total = xent.cross_entropy(x, t, weight=weight, reduction="sum")
    mean = xent.cross_entropy(x, t, weight=weight, reduction="mean")
    if dtype == np.float64:  # the rows are the kernel's own doubles: sums exactly known
        assert total == math.fsum(rows)
        assert mean == math.fsum(rows) / math.fsum(weight[t])
    order = rng.permutation(n)
    for threads in (1, 2):
        assert (
            xent.cross_entropy(
                x[order], t[order], weight=weight, reduction="sum", num_threads=threads
            )
            == total
        )
        assert (
            xent.cross_entropy(
                x[order], t[order], weight=weight, reduction="mean", num_threads=threads
            )
            == mean
        )
        loss, _ = xent.cross_entropy_with_grad(
            x[order], t[order], weight=weight, num_threads=threads
        )
        assert loss == mean
