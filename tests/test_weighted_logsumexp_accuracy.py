"""logsumexp(a, b=b) against mpmath: within 4 ulp of the exact value in float64 (1e-6
relative in float32), whatever the weights' sizes and signs.

The rows are drawn to cover what rounding a + log(b) per entry gets wrong (xent's and
SciPy's earlier way, tens of ulp and every digit under cancellation): weights from 1e-3 to
1e3 of one sign or both, rows of 1 to 300 entries, values from -700 to 700, and rows whose
positive and negative terms cancel to 1e-1 ... 1e-12 of their size. The exact value is
mpmath's at 400 bits, from the very doubles (or float32 values) xent was given.

Where the row's largest value m and log(sum) cancel (|result| < |m| / 2), the bound also
allows 2**-70 |m|, the double-double log's share (see xent/src/xent_lse_exact.h); elsewhere that
term is below a thousandth of an ulp.
"""

import numpy as np
import pytest

import xent

mpmath = pytest.importorskip("mpmath")

ROWS = 120


def _exact(a, b):
    """log|sum b e^a| and its sign, at 400 bits from the given values."""
    with mpmath.workprec(400):
        total = mpmath.fsum(
            mpmath.mpf(float(w)) * mpmath.exp(mpmath.mpf(float(v))) for v, w in zip(a, b)
        )
        return float(mpmath.log(abs(total))), (1.0 if total > 0 else -1.0)


def _row(rng, kind):
    n = int(rng.choice([1, 2, 3, 5, 10, 30, 300]))
    centre = rng.uniform(-700, 700) if rng.random() < 0.5 else rng.uniform(-5, 5)
    a = centre + float(rng.choice([0.01, 1.0, 10.0, 100.0])) * rng.standard_normal(n)
    a = np.clip(a, -740.0, 705.0)
    b = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), n))
    if kind != "positive":
        b *= rng.choice([-1.0, 1.0], n)
    if kind == "cancelling" and n > 1:
        # the last weight balances the others' sum to a relative 10**-1 ... 10**-12
        with mpmath.workprec(400):
            rest = mpmath.fsum(
                mpmath.mpf(w) * mpmath.exp(mpmath.mpf(v)) for v, w in zip(a[:-1], b[:-1])
            )
            near = 1 + mpmath.mpf(10) ** -rng.uniform(1, 12)
            b[-1] = float(-rest * near / mpmath.exp(mpmath.mpf(a[-1])))
    return a, b


def _rows(seed, dtype):
    rng = np.random.default_rng(seed)
    for i in range(ROWS):
        a, b = _row(rng, ("positive", "mixed", "cancelling")[i % 3])
        with np.errstate(over="ignore"):  # a float32 weight out of range: skipped below
            yield a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_rows_against_mpmath(dtype):
    checked = 0
    for a, b in _rows(20250, dtype):
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            continue  # a float32 weight out of range
        exact, exact_sign = _exact(a, b)
        if not 1e-300 <= abs(exact) <= 1e4:
            continue
        got, sign = xent.logsumexp(a, b=b, return_sign=True)
        assert np.asarray(got).dtype == dtype
        assert sign == exact_sign, (a, b)
        m = float(a.max())
        if dtype == np.float64:
            bound = 4 * np.spacing(abs(exact)) + 2.0**-70 * abs(m)
        else:
            bound = 1e-6 * abs(exact) + 2.0**-70 * abs(m)
        err = abs(float(got) - exact)
        assert err <= bound, (a.tolist(), b.tolist(), float(got), exact)
        checked += 1
    assert checked >= ROWS // 2  # the rows were checked, not all skipped


def test_weights_summing_to_one_keep_a_small_result():
    """Weights of 1/4 and 3/4 on the largest value and e**-46 beside them: the result is
    log1p(e**-46), about 1e-20. log(D) near 0 comes from log1p of D - 1, exact as a pair,
    so it keeps its digits (log(1/4) and log(3/4) rounded per entry would leave none)."""
    a = np.array([0.0, 0.0, -46.0])
    b = np.array([0.25, 0.75, 1.0])
    exact, _ = _exact(a, b)
    assert 0 < exact < 1e-19
    got = xent.logsumexp(a, b=b)
    assert abs(got - exact) <= 4 * np.spacing(exact), (got, exact)


def test_huge_weights_do_not_overflow():
    """A sum of weights beyond the float64 range still has a finite log: the terms are
    scaled by the row's power of two before they are summed."""
    got = xent.logsumexp([0.0, 0.0], b=[1e308, 1e308])
    assert abs(got - (np.log(1e308) + np.log(2.0))) <= 4 * np.spacing(got)


def test_subnormal_and_far_apart_weights():
    """Weights from subnormal to huge in one row: each term's power of two is taken from its
    weight's bits (subnormal weights scaled first), the row scaled by the largest."""
    cases = [
        ([0.0, 1.0, -3.0], [5e-324, 1e-310, 2.5e-320]),
        ([0.0, -1500.0, 3.0], [1e-300, 1e300, -4e-301]),
        ([-700.0, 0.0], [1e308, -1e-308]),
    ]
    for a, b in cases:
        exact, exact_sign = _exact(np.array(a), np.array(b))
        got, sign = xent.logsumexp(np.array(a), b=np.array(b), return_sign=True)
        assert sign == exact_sign, (a, b)
        assert abs(got - exact) <= 4 * np.spacing(abs(exact)), (a, b, got, exact)
