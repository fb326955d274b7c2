"""Rows long enough (C >= 262144) to be cut into stretches that threads share, then merged."""

import numpy as np
import pytest

import xent
from xent import reference as ref

from support import CE_LOSS_TOL

C_LONG = [262144, 300001]


def long_rows(c, dtype):
    rng = np.random.default_rng(c)
    x = (rng.standard_normal((4, c)) * 3).astype(dtype)
    x[1, 70000:] = -np.inf  # whole stretches of -inf after a finite start
    x[2, :140000] = -np.inf  # ... and before a finite end
    x[2, -1] = 40  # the max in the last stretch: earlier sums are rescaled
    x[3, 200000] = np.nan  # NaN in a middle stretch
    t = np.array([0, 5, c - 1, 7])
    return x, t


@pytest.mark.parametrize("c", C_LONG)
def test_long_rows_against_reference(c, dtype):
    x, t = long_rows(c, dtype)
    tol = dict(rtol=CE_LOSS_TOL[dtype], atol=CE_LOSS_TOL[dtype])
    np.testing.assert_allclose(xent.logsumexp(x), ref.logsumexp(x), equal_nan=True, **tol)
    got = xent.cross_entropy(x, t, reduction="none", label_smoothing=0.1)
    np.testing.assert_allclose(
        got, ref.cross_entropy(x, t, reduction="none", label_smoothing=0.1), equal_nan=True, **tol
    )
    assert np.isnan(got[3])


@pytest.mark.parametrize("c", C_LONG)
def test_long_rows_same_bits_on_any_threads_and_with_grad(c):
    x, t = long_rows(c, np.float32)
    one = xent.cross_entropy(x, t, reduction="none", num_threads=1)
    two = xent.cross_entropy(x, t, reduction="none", num_threads=2)
    assert one.tobytes() == two.tobytes()
    assert xent.logsumexp(x, num_threads=1).tobytes() == xent.logsumexp(x, num_threads=2).tobytes()
    loss, _ = xent.cross_entropy_with_grad(x, t, reduction="none", num_threads=2)
    assert loss.tobytes() == one.tobytes()
