"""sample_weight= and the per-row gradient and diagonal Hessian, as scikit-learn computes them.

Against scikit-learn's HalfMultinomialLoss / HalfBinomialLoss when it is installed (skipped
otherwise: the reference twins and finite differences below hold either way).
"""

import numpy as np
import pytest

import xent
from xent import reference as ref

RNG = np.random.default_rng(21)
N, C = 40, 5
X = RNG.standard_normal((N, C)) * 4
T = RNG.integers(0, C, N)
SW = RNG.random(N) * 3
XB = RNG.standard_normal((N, 3)) * 6
YB = (RNG.random((N, 3)) > 0.5).astype(np.float64)


def sklearn_loss():
    return pytest.importorskip("sklearn._loss.loss")


def test_multinomial_against_sklearn():
    loss = sklearn_loss().HalfMultinomialLoss(n_classes=C)
    grad, hess = xent.cross_entropy_grad_hess(X, T, sample_weight=SW)
    want_grad, want_hess = loss.gradient_hessian(T.astype(float), X, sample_weight=SW)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hess, want_hess, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        xent.cross_entropy(X, T, sample_weight=SW),
        loss(T.astype(float), X, sample_weight=SW),
        rtol=1e-13,
    )


def test_binomial_against_sklearn():
    loss = sklearn_loss().HalfBinomialLoss()
    x, y = np.ascontiguousarray(XB[:, 0]), np.ascontiguousarray(YB[:, 0])  # sklearn's need
    grad, hess = xent.binary_cross_entropy_with_logits_grad_hess(x, y, sample_weight=SW)
    want_grad, want_hess = loss.gradient_hessian(y, x, sample_weight=SW)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hess, want_hess, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        xent.binary_cross_entropy_with_logits(x, y, sample_weight=SW),
        loss(y, x, sample_weight=SW),
        rtol=1e-13,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_grad_hess_against_reference_and_finite_differences(dtype):
    weight = RNG.random(C) + 0.5
    t = T.copy()
    t[3] = -100
    grad, hess = xent.cross_entropy_grad_hess(X.astype(dtype), t, weight=weight, sample_weight=SW)
    want = ref.cross_entropy_grad_hess(X.astype(dtype), t, weight=weight, sample_weight=SW)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(grad, want[0], rtol=tol, atol=tol * 1e-2)
    np.testing.assert_allclose(hess, want[1], rtol=tol, atol=tol * 1e-2)
    assert grad.dtype == hess.dtype == dtype
    assert not grad[3].any() and not hess[3].any()
    # the gradient and the Hessian's diagonal are the loss's derivatives (float64)
    h = 1e-5

    def rows(x):
        return xent.cross_entropy(x, t, weight=weight, sample_weight=SW, reduction="none")

    for k in range(C):
        step = np.zeros(C)
        step[k] = h
        up, mid, down = rows(X + step), rows(X), rows(X - step)
        np.testing.assert_allclose((up - down) / (2 * h), want[0][:, k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose((up - 2 * mid + down) / h**2, want[1][:, k], atol=2e-4)


def test_binary_grad_hess_with_weights_against_reference():
    weight, pos_weight = RNG.random(3) + 0.5, RNG.random(3) * 3
    grad, hess = xent.binary_cross_entropy_with_logits_grad_hess(
        XB, YB, weight=weight, pos_weight=pos_weight, sample_weight=SW
    )
    want = ref.binary_cross_entropy_with_logits_grad_hess(
        XB, YB, weight=weight, pos_weight=pos_weight, sample_weight=SW
    )
    np.testing.assert_allclose(grad, want[0], rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(hess, want[1], rtol=1e-13, atol=1e-16)


def test_confident_rows_keep_their_digits():
    """p_t - 1 and p (1 - p) of a confident row: about -e^-30 and e^-30, not 0 (exact values
    from mpmath at 200 bits). The other entries are exp(log_softmax), whose argument near -30
    is rounded to a double first: a few ulp, hence 3e-15."""
    grad, hess = xent.cross_entropy_grad_hess(np.array([[0.0, -30.0]]), np.array([0]))
    np.testing.assert_allclose(grad, [[-9.357622968839299e-14, 9.357622968839299e-14]], rtol=3e-15)
    np.testing.assert_allclose(hess, [[9.357622968838423e-14, 9.357622968838423e-14]], rtol=3e-15)
    g, h = xent.binary_cross_entropy_with_logits_grad_hess(np.float32([20.0]), np.float32([1]))
    np.testing.assert_allclose(g, [-2.0611537e-09], rtol=1e-6)
    np.testing.assert_allclose(h, [2.0611537e-09], rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sample_weight_rule(reduction):
    """scikit-learn's weighted mean; with class weights the row weighs s_i w[t_i]."""
    weight = RNG.random(C) + 0.5
    rows = ref.cross_entropy(X, T, weight=weight, reduction="none")
    got = xent.cross_entropy(X, T, weight=weight, sample_weight=SW, reduction=reduction)
    want = {
        "none": rows * SW,
        "sum": np.sum(rows * SW),
        "mean": np.sum(rows * SW) / np.sum(SW * weight[T]),
    }[reduction]
    np.testing.assert_allclose(got, want, rtol=1e-13)
    loss, grad = xent.cross_entropy_with_grad(
        X, T, weight=weight, sample_weight=SW, reduction=reduction
    )
    np.testing.assert_allclose(loss, want, rtol=1e-13)
    g = ref.cross_entropy_grad(X, T, weight=weight, reduction="none") * SW[:, None]
    if reduction == "mean":
        g = g / np.sum(SW * weight[T])
    np.testing.assert_allclose(grad, g, rtol=1e-12, atol=1e-17)
    logp = ref.log_softmax(X)
    np.testing.assert_allclose(
        xent.nll_loss(logp, T, weight=weight, sample_weight=SW, reduction=reduction),
        want,
        rtol=1e-12,
    )
    # binary: one weight per sample, over its elements
    brows = ref.binary_cross_entropy_with_logits(XB, YB, reduction="none") * SW[:, None]
    bwant = {"none": brows, "sum": brows.sum(), "mean": brows.sum() / (SW.sum() * 3)}
    np.testing.assert_allclose(
        xent.binary_cross_entropy_with_logits(XB, YB, sample_weight=SW, reduction=reduction),
        bwant[reduction],
        rtol=1e-13,
    )


def test_sample_weight_errors():
    with pytest.raises(ValueError, match="sample_weight has shape"):
        xent.cross_entropy(X, T, sample_weight=np.ones(N + 1))
    with pytest.raises(ValueError, match="sample_weight must be finite"):
        xent.binary_cross_entropy_with_logits(XB, YB, sample_weight=np.full(N, np.nan))
    with pytest.raises(TypeError, match="integer class indices"):
        xent.cross_entropy_grad_hess(X, np.full((N, C), 0.2))
