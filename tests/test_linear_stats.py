"""linear_cross_entropy(_with_grad)'s z_loss=, return_lse= and return_stats= against the
materialised float64 reference (and PyTorch's autograd), on every kernel variant, with the
vocabulary cut into stretches and not."""

import numpy as np
import pytest

import xent
from xent import _linear
from xent import reference as ref

ROWS, TILE = _linear.tiling()
# one block with many vocabulary stretches; several blocks (one stretch); a batch of (2, 3)
SHAPES = [((7,), 5, 4 * TILE + 37), ((2 * ROWS + 5,), 6, TILE + 3), ((2, 3), 4, 9)]
TOL = {np.float32: dict(rtol=3e-5, atol=3e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _problem(rng, batch, width, vocab, dtype):
    hidden = rng.standard_normal((*batch, width)).astype(dtype)
    weight = rng.standard_normal((vocab, width)).astype(dtype)
    target = rng.integers(0, vocab, batch)
    target.reshape(-1)[0] = -100
    bias = rng.standard_normal(vocab).astype(dtype)
    return hidden, weight, target, bias


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(
    "options",
    [{}, {"softcap": 4.0, "label_smoothing": 0.1}, {"reduction": "none"}, {"reduction": "sum"}],
    ids=str,
)
def test_against_reference(isa, rng, dtype, shape, options):
    hidden, weight, target, bias = _problem(rng, *shape, dtype)
    kw = dict(bias=bias, z_loss=1e-3, **options)
    loss, lse, stats = xent.linear_cross_entropy(
        hidden, weight, target, return_lse=True, return_stats=True, **kw
    )
    want_loss, want_lse, (_, want_entropy, want_argmax) = ref.linear_cross_entropy(
        hidden, weight, target, return_lse=True, return_stats=True, **kw
    )
    tol = TOL[np.dtype(dtype).type]
    np.testing.assert_allclose(loss, want_loss, **tol)
    np.testing.assert_allclose(lse, want_lse, **tol)
    np.testing.assert_allclose(stats.lse, want_lse, **tol)
    np.testing.assert_allclose(stats.entropy, want_entropy, **tol)
    assert stats.argmax.shape == shape[0]
    np.testing.assert_array_equal(stats.argmax, want_argmax)

    (grads, lse2) = xent.linear_cross_entropy_with_grad(
        hidden, weight, target, return_lse=True, **kw
    )
    want_grads, _ = ref.linear_cross_entropy_with_grad(
        hidden, weight, target, return_lse=True, **kw
    )
    np.testing.assert_allclose(lse2, want_lse, **tol)
    assert len(grads) == len(want_grads) == 4
    for got, want in zip(grads, want_grads):
        scale = np.max(np.abs(want)) if np.size(want) else 1.0
        np.testing.assert_allclose(got, want, rtol=tol["rtol"] * 10, atol=tol["rtol"] * 10 * scale)


def test_without_options_unchanged(rng):
    hidden, weight, target, bias = _problem(rng, (40,), 8, 3 * TILE, np.float32)
    plain = xent.linear_cross_entropy(hidden, weight, target, bias=bias)
    loss, stats = xent.linear_cross_entropy(hidden, weight, target, bias=bias, return_stats=True)
    assert plain == loss
    grads = xent.linear_cross_entropy_with_grad(hidden, weight, target, bias=bias)
    zero = xent.linear_cross_entropy_with_grad(hidden, weight, target, bias=bias, z_loss=0.0)
    for a, b in zip(grads, zero):
        assert np.array_equal(a, b)


def test_argmax_ties_take_the_first(rng):
    """Equal largest logits in two vocabulary stretches: the first index, as numpy."""
    vocab = 6 * TILE
    hidden = np.ones((3, 1))
    weight = rng.standard_normal((vocab, 1)) * 0.1
    weight[[5, TILE + 2, 5 * TILE + 1]] = 9.0
    _, stats = xent.linear_cross_entropy(hidden, weight, np.zeros(3, int), return_stats=True)
    np.testing.assert_array_equal(stats.argmax, [5, 5, 5])


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    hidden, weight, target, bias = _problem(rng, (12,), 5, 30, np.float64)
    th = torch.tensor(hidden, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    z = th @ tw.T + torch.tensor(bias)
    tt = torch.tensor(target)
    kept = tt != -100
    lse = torch.logsumexp(z, -1)
    loss = torch.nn.functional.cross_entropy(z, tt) + 0.01 * (lse[kept] ** 2).mean()
    loss.backward()
    got = xent.linear_cross_entropy_with_grad(hidden, weight, target, bias=bias, z_loss=0.01)
    np.testing.assert_allclose(got.loss, loss.item(), rtol=1e-12)
    np.testing.assert_allclose(got.grad_hidden, th.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.grad_weight, tw.grad.numpy(), rtol=1e-10, atol=1e-14)
    p = torch.softmax(z, -1)
    entropy = -(p * torch.log_softmax(z, -1)).sum(-1)
    _, stats = xent.linear_cross_entropy(hidden, weight, target, bias=bias, return_stats=True)
    np.testing.assert_allclose(stats.entropy, entropy.detach().numpy(), rtol=1e-12)
