"""Short rows (C <= 64) go through one kernel call per group of 16 rows (8 for float64):
rows_index_loss_small. Groups that mix kept, ignored and out-of-range rows, weights (zero
among them), label smoothing and partial last groups, against the reference, and the loss
of cross_entropy_with_grad bit for bit the same as cross_entropy's."""

import numpy as np
import pytest

import xent
from xent import reference as ref

TOL = {np.float32: 1e-6, np.float64: 1e-13}


def problem(dtype, n, c, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    t = rng.integers(0, c, n)
    t[::7] = -100  # ignored rows inside groups
    if n > 5:
        x[3, :] = x[3, 0]  # a row of ties only: log(ties) is needed for its group
        x[5, -1] = np.inf  # +inf: its loss is inf or NaN, as the reference's
    return x, t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, c", [(1, 1), (9, 2), (16, 10), (37, 10), (100, 64), (17, 3)])
@pytest.mark.parametrize(
    "options",
    [{}, {"label_smoothing": 0.25}, {"weight": True}, {"weight": True, "label_smoothing": 1.0}],
    ids=["plain", "smoothing", "weight", "weight-smoothing-1"],
)
def test_short_rows_against_reference(isa, dtype, n, c, options):
    x, t = problem(dtype, n, c, seed=n * 100 + c)
    kw = dict(options)
    if kw.pop("weight", False):
        w = np.random.default_rng(1).uniform(0.5, 2, c)
        w[0] = 0.0  # a kept row may weigh 0
        kw["weight"] = w
    for reduction in ("none", "sum", "mean"):
        got = xent.cross_entropy(x, t, reduction=reduction, **kw)
        want = ref.cross_entropy(x.astype(np.float64), t, reduction=reduction, **kw)
        np.testing.assert_allclose(
            np.asarray(got, np.float64), want, rtol=TOL[dtype], atol=0, equal_nan=True
        )
        loss, _ = xent.cross_entropy_with_grad(x, t, reduction=reduction, **kw)
        assert np.asarray(loss).tobytes() == np.asarray(got).tobytes(), reduction


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_bad_label_in_a_group_is_named(dtype):
    x, t = problem(dtype, 40, 10, seed=3)
    t[21] = 10  # in the second group of 16, and in the third group of 8 for float64
    t[30] = -5
    with pytest.raises(IndexError, match="21"):
        xent.cross_entropy(x, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "column-slice", "every-other-row"])
def test_every_short_width_in_every_layout(isa, dtype, layout):
    """Groups are transposed in blocks of a vector's width (16 floats, 8 doubles) with masked
    tails: every width up to 64, rows taken from wider or skipped rows, a partial last group;
    per-row losses, log-sum-exps and log-softmax entries against the reference. The absolute
    allowance is a few ulps of the row's largest magnitude: where a result is far smaller than
    its entries (a confident row's loss, a log-sum-exp near 0), the reference's own float64
    arithmetic is that far off (the digits of such results are tests/test_accuracy_mpmath.py's
    business)."""
    rng = np.random.default_rng(7)
    for c in list(range(1, 18)) + [23, 31, 32, 33, 40, 47, 48, 49, 63, 64]:
        n = 37
        base = (rng.standard_normal((2 * n, c + 5)) * 3).astype(dtype)
        if layout == "contiguous":
            x = np.ascontiguousarray(base[:n, :c])
        elif layout == "column-slice":
            x = base[:n, 2 : 2 + c]
        else:
            x = base[::2, :c]
        t = rng.integers(0, c, n)
        x64 = x.astype(np.float64)
        close = dict(rtol=TOL[dtype], atol=8 * np.finfo(dtype).eps * np.abs(x64).max())
        np.testing.assert_allclose(
            xent.cross_entropy(x, t, reduction="none"),
            ref.cross_entropy(x64, t, reduction="none"),
            **close,
            err_msg=f"C={c}",
        )
        np.testing.assert_allclose(
            xent.logsumexp(x, axis=-1), ref.logsumexp(x64), **close, err_msg=f"C={c}"
        )
        np.testing.assert_allclose(
            xent.log_softmax(x), ref.log_softmax(x64), **close, err_msg=f"C={c}"
        )
