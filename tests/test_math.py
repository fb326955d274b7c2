"""The kernels' own vectorised exp, log and log1p: ulp errors, measured, and special values.

Every kernel variant (AVX-512, AVX2, baseline) is measured; exp on the arguments the kernels
give it (x - max <= 0, and a little above 0 for softmax rounding), log over the whole
positive range, subnormals included. The bounds asserted here are the ones quoted in
xent/src/xent_body.h.
"""

import numpy as np
import pytest

from xent import _kernels


def ulp_error(got, exact, dtype):
    """|got - exact| in units of the spacing of `dtype` at the exact value."""
    spacing = np.spacing(exact.astype(dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / np.abs(spacing)


def kernel_exp(x):
    out = np.empty_like(x)
    _kernels.exp_array(x, out)
    return out


def test_float32_exp_ulp_error(isa):
    rng = np.random.default_rng(0)
    # every float32 in [-1, 1] near 0 is dense; the rest sampled over the whole normal range
    x = np.concatenate(
        [
            rng.uniform(-87.33, 88.3, 2_000_000),
            rng.uniform(-1, 1, 500_000),
            np.linspace(-87.33, 0, 200_001),
        ]
    ).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    err = ulp_error(kernel_exp(x), exact, np.float32)
    assert err.max() <= 1.15, f"{isa}: max ulp error {err.max():.3f}"
    assert err.mean() <= 0.3


def test_float64_exp_ulp_error(isa):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-708.3, 709.0, 1_000_000), rng.uniform(-1, 1, 200_000)])
    exact = np.exp(x)  # glibc's exp: correctly rounded to within 0.5x ulp; a fair yardstick
    err = ulp_error(kernel_exp(x), exact, np.float64)
    assert err.max() <= 2.0, f"{isa}: max ulp error {err.max():.3f}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(isa, dtype):
    x = np.array([0.0, -0.0, -np.inf, np.inf, np.nan, -1e4, 1e4, -200.0, 1.0], dtype=dtype)
    got = kernel_exp(x)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] == 0.0
    assert got[3] == np.inf and got[6] == np.inf
    assert np.isnan(got[4])
    assert got[5] == 0.0
    # below the normal range the result is flushed to 0 (float32) or exact (float64)
    assert got[7] == (0.0 if dtype == np.float32 else np.exp(-200.0))
    assert abs(got[8] - np.e) <= 2 * np.spacing(dtype(np.e))


def kernel(fn, x):
    out = np.empty_like(x)
    fn(x, out)
    return out


@pytest.mark.parametrize(
    "dtype, low, high, bound",
    [
        (np.float32, -45, 38.5, 2.0),
        (np.float64, -323, 308, 2.0),
    ],
)
def test_log_ulp_error(isa, dtype, low, high, bound):
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [10.0 ** rng.uniform(low, high, 1_000_000), rng.uniform(0.5, 2.0, 300_000)]
    ).astype(dtype)
    x = x[x > 0]
    err = ulp_error(kernel(_kernels.log_array, x), np.log(x.astype(np.float64)), dtype)
    assert err.max() <= bound, f"{isa}: max ulp error {err.max():.3f}"


@pytest.mark.parametrize("dtype, bound", [(np.float32, 2.5), (np.float64, 2.0)])
def test_log1p_ulp_error(isa, dtype, bound):
    rng = np.random.default_rng(3)
    y = np.concatenate(
        [
            rng.uniform(-0.99, 1.0, 500_000),
            10.0 ** rng.uniform(-30, 0, 300_000),
            -(10.0 ** rng.uniform(-30, -1, 100_000)),
        ]
    ).astype(dtype)
    err = ulp_error(kernel(_kernels.log1p_array, y), np.log1p(y.astype(np.float64)), dtype)
    assert err.max() <= bound, f"{isa}: max ulp error {err.max():.3f}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_special_values(isa, dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([1.0, 0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, tiny, 2.0], dtype=dtype)
    got = kernel(_kernels.log_array, x)
    assert got[0] == 0.0
    assert got[1] == -np.inf and got[2] == -np.inf
    assert np.isnan(got[3]) and np.isnan(got[5]) and np.isnan(got[6])
    assert got[4] == np.inf
    tol = 4 * float(np.finfo(dtype).eps)
    assert got[7] == pytest.approx(np.log(np.float64(tiny)), rel=tol)
    y = np.array([0.0, -1.0, np.inf, np.nan, 1e-30, -2.0], dtype=dtype)
    got = kernel(_kernels.log1p_array, y)
    assert got[0] == 0.0 and got[1] == -np.inf and got[2] == np.inf
    assert np.isnan(got[3]) and np.isnan(got[5])
    assert got[4] == dtype(1e-30)


def lanes_ulp_error(x, plus_one):
    """ulp errors of the short rows' double log (log1p) against mpmath at 80 bits."""
    mpmath = pytest.importorskip("mpmath")
    got = kernel(lambda a, out: _kernels.log_lanes_array(a, plus_one, out), x)
    fn = mpmath.log1p if plus_one else mpmath.log
    with mpmath.workprec(80):
        exact = np.array([fn(mpmath.mpf(float(v))) for v in x], dtype=object)
        return np.array(
            [
                float(abs(mpmath.mpf(float(g)) - e) / np.spacing(abs(float(e))))
                for g, e in zip(got, exact)
            ]
        )


def test_log_lanes_against_mpmath(isa):
    """xent_log_lanes (the log of a short row's sum of exps): within 1 ulp over the whole
    double range, subnormals included; special values as IEEE's log."""
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            10.0 ** rng.uniform(-323, 308, 20_000),
            rng.uniform(0.5, 2.0, 10_000),  # both sides of sqrt(2) and of 1
            1.0 + rng.uniform(-1e-6, 1e-6, 2_000),  # tiny results near 1
            np.arange(1.0, 65.0),  # the tie counts of a row of up to 64 entries
            [np.finfo(np.float64).smallest_subnormal, np.finfo(np.float64).max],
        ]
    )
    x = x[(x > 0) & (x != 1.0)]
    err = lanes_ulp_error(x, plus_one=False)
    assert err.max() <= 0.8, f"{isa}: max ulp error {err.max():.3f} at {x[err.argmax()]!r}"
    special = np.array([1.0, 0.0, -0.0, -1.0, np.inf, -np.inf, np.nan])
    got = kernel(lambda a, out: _kernels.log_lanes_array(a, False, out), special)
    assert got[0] == 0.0 and got[1] == -np.inf and got[2] == -np.inf and got[4] == np.inf
    assert np.isnan(got[3]) and np.isnan(got[5]) and np.isnan(got[6])


def test_log1p_lanes_against_mpmath(isa):
    """xent_log1p_lanes (of a row's other terms over its ties, >= 0): within 1 ulp from the
    subnormals to the largest double; log1p(0) = 0, log1p(inf) = inf, NaN stays NaN."""
    rng = np.random.default_rng(6)
    y = np.concatenate(
        [
            10.0 ** rng.uniform(-320, 308, 20_000),
            rng.uniform(0.0, 2.0, 10_000),  # where u = 1 + y rounds, and the sqrt(2) edge
            10.0 ** rng.uniform(-17, -15, 2_000),  # u rounds to 1 or next to it
        ]
    )
    y = y[y > 0]
    err = lanes_ulp_error(y, plus_one=True)
    assert err.max() <= 1.05, f"{isa}: max ulp error {err.max():.3f} at {y[err.argmax()]!r}"
    special = np.array([0.0, np.inf, np.nan, 5e-324])
    got = kernel(lambda a, out: _kernels.log_lanes_array(a, True, out), special)
    assert got[0] == 0.0 and got[1] == np.inf and np.isnan(got[2]) and got[3] == 5e-324
