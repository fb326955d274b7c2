"""Check mode recomputes with xent.reference and names what disagrees."""

import numpy as np
import pytest

import xent
from xent import _check, _kernels

RNG = np.random.default_rng(3)
X = RNG.standard_normal((40, 9))
T = RNG.integers(0, 9, 40)


def test_check_passes_on_correct_results(monkeypatch):
    monkeypatch.setenv("XENT_CHECK", "1")
    for reduction in ("none", "mean", "sum"):
        xent.cross_entropy(X, T, reduction=reduction, label_smoothing=0.1)
        xent.nll_loss(X, T, reduction=reduction)
    xent.logsumexp(X)
    xent.log_softmax(X)
    xent.softmax(X.astype(np.float32))


def _wrong_logsumexp(x, out, threads):
    _kernels_logsumexp(x, out, threads)
    out[17] += 1e-3  # one row off


_kernels_logsumexp = _kernels.logsumexp_rows


def test_check_catches_a_wrong_row(monkeypatch):
    monkeypatch.setattr(_kernels, "logsumexp_rows", _wrong_logsumexp)
    xent.logsumexp(X)  # unchecked: the wrong answer goes through
    with pytest.raises(xent.CheckError, match=r"xent.logsumexp: row 17 differs .*tolerance"):
        xent.logsumexp(X, check=True)
    monkeypatch.setenv("XENT_CHECK", "1")
    with pytest.raises(AssertionError):
        xent.logsumexp(X)
    xent.logsumexp(X, check=False)  # an explicit False wins over the environment


def test_check_catches_a_wrong_reduced_loss(monkeypatch):
    original = _kernels.index_loss

    def wrong(*args, **kwargs):
        total, weight, bad = original(*args, **kwargs)
        return total * (1 + 1e-4), weight, bad

    monkeypatch.setattr(_kernels, "index_loss", wrong)
    with pytest.raises(xent.CheckError, match=r"cross_entropy \(reduction='mean'\): value"):
        xent.cross_entropy(X, T, check=True)


def test_check_samples_rows_of_large_inputs(monkeypatch):
    n = _check.MAX_CHECK_ROWS * 3
    x = RNG.standard_normal((n, 5)).astype(np.float32)
    t = RNG.integers(0, 5, n)
    original = _kernels.index_loss

    def wrong(x, target, weight, ignore_index, smoothing, log_probs, row_loss, threads, **kwargs):
        result = original(
            x, target, weight, ignore_index, smoothing, log_probs, row_loss, threads, **kwargs
        )
        if row_loss is not None:
            row_loss[:] += 1  # every row wrong
        return result

    xent.cross_entropy(x, t, check=True)
    monkeypatch.setattr(_kernels, "index_loss", wrong)
    with pytest.raises(xent.CheckError, match=r"xent.cross_entropy: row \d+ differs"):
        xent.cross_entropy(x, t, check=True, reduction="none")
    with pytest.raises(xent.CheckError):
        xent.cross_entropy(x, t, check=True)


def test_check_nan_must_meet_nan(monkeypatch):
    original = _kernels.softmax_rows

    def nan_row(x, out, threads):
        original(x, out, threads)
        out[2, 0] = np.nan

    monkeypatch.setattr(_kernels, "softmax_rows", nan_row)
    with pytest.raises(xent.CheckError, match="row 2"):
        xent.softmax(X, check=True)
    x = X.copy()
    x[4, 1] = np.nan  # a genuine NaN row matches the reference's NaN
    monkeypatch.setattr(_kernels, "softmax_rows", original)
    xent.softmax(x, check=True)


def test_check_works_in_place(monkeypatch):
    x = X.copy()
    xent.log_softmax(x, out=x, check=True)
    np.testing.assert_array_equal(x, xent.log_softmax(X))
    original = _kernels.log_softmax_rows

    def off_by_one(x, out, threads):
        original(x, out, threads)
        out[5] += 1

    monkeypatch.setattr(_kernels, "log_softmax_rows", off_by_one)
    x = X.copy()
    with pytest.raises(xent.CheckError, match="row 5"):
        xent.log_softmax(x, out=x, check=True)
