"""cross_entropy's z_loss= and return_lse= (PaLM's z-loss and the per-row log-sum-exp):
against the reference on every kernel variant, PyTorch autograd and finite differences."""

import numpy as np
import pytest

import xent
from xent import reference

RTOL = {np.float32: 3e-5, np.float64: 1e-11}


def close(got, want, dtype, scale=1.0):
    tol = RTOL[np.dtype(dtype).type]
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=tol, atol=tol * scale)


def problem(rng, shape, dtype, probabilities=False):
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    if probabilities:
        p = rng.random(shape)
        return x, (p / p.sum(-1, keepdims=True)).astype(dtype)
    t = rng.integers(0, shape[-1], shape[:-1])
    t.reshape(-1)[::4] = -100
    return x, t


@pytest.mark.parametrize("shape", [(9, 7), (3, 4, 300), (5, 3000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("probabilities", [False, True])
def test_against_reference(isa, rng, dtype, shape, reduction, probabilities):
    x, t = problem(rng, shape, dtype, probabilities)
    weight = rng.random(shape[-1]) + 0.5
    options = dict(reduction=reduction, z_loss=1e-3, weight=weight, label_smoothing=0.1)
    loss, lse = xent.cross_entropy(x, t, return_lse=True, **options)
    want_loss, want_lse = reference.cross_entropy(x, t, return_lse=True, **options)
    close(loss, want_loss, dtype)
    assert lse.dtype == x.dtype and lse.shape == shape[:-1]
    close(lse, want_lse, dtype)
    loss, grad, lse = xent.cross_entropy_with_grad(x, t, return_lse=True, **options)
    want_loss, want_grad, want_lse = reference.cross_entropy_with_grad(
        x, t, return_lse=True, **options
    )
    close(loss, want_loss, dtype)
    close(lse, want_lse, dtype)
    close(grad, want_grad, dtype, scale=np.abs(want_grad).max())


def test_unchanged_without_the_options(rng):
    x, t = problem(rng, (20, 30), np.float32)
    assert xent.cross_entropy(x, t) == xent.cross_entropy(x, t, z_loss=0.0)
    a = xent.cross_entropy_with_grad(x, t)
    b = xent.cross_entropy_with_grad(x, t, z_loss=0.0)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_in_place_and_grad_output(rng, reduction):
    x, t = problem(rng, (6, 40), np.float64)
    go = rng.standard_normal(6) if reduction == "none" else 0.7
    want_loss, want_grad = reference.cross_entropy_with_grad(
        x, t, reduction=reduction, z_loss=0.01, grad_output=go
    )
    work = x.copy()
    loss, grad = xent.cross_entropy_with_grad(
        work, t, reduction=reduction, z_loss=0.01, grad_output=go, out=work
    )
    assert grad is work
    close(loss, want_loss, np.float64)
    close(grad, want_grad, np.float64)


def test_half(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for dtype in (np.float16, ml_dtypes.bfloat16):
        x, t = problem(rng, (8, 500), np.float32)
        x = x.astype(dtype)
        loss, lse = xent.cross_entropy(x, t, z_loss=1e-2, return_lse=True)
        want_loss, want_lse = reference.cross_entropy(x, t, z_loss=1e-2, return_lse=True)
        assert lse.dtype == x.dtype
        np.testing.assert_allclose(float(loss), want_loss, rtol=1e-2)
        np.testing.assert_allclose(lse.astype(np.float64), want_lse, rtol=1e-2)


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x, t = problem(rng, (10, 25), np.float64)
    tx = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(t)
    kept = tt != -100
    lse = torch.logsumexp(tx, -1)
    loss = torch.nn.functional.cross_entropy(tx, tt) + 1e-2 * (lse[kept] ** 2).sum() / kept.sum()
    loss.backward()
    got, grad = xent.cross_entropy_with_grad(x, t, z_loss=1e-2)
    np.testing.assert_allclose(got, loss.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_finite_differences(rng):
    x, t = problem(rng, (4, 6), np.float64)
    _, grad = xent.cross_entropy_with_grad(x, t, z_loss=0.05)
    h = 1e-6
    numeric = np.empty_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (
            xent.cross_entropy(up, t, z_loss=0.05) - xent.cross_entropy(down, t, z_loss=0.05)
        ) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_bad_z_loss(rng):
    x, t = problem(rng, (4, 6), np.float64)
    with pytest.raises(ValueError, match="z_loss"):
        xent.cross_entropy(x, t, z_loss=-1)
    with pytest.raises(TypeError, match="return_lse"):
        xent.cross_entropy(x, t, return_lse="yes")
