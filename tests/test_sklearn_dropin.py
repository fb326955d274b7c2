"""sample_weight= and the per-row gradient and diagonal Hessian, as scikit-learn computes them.

Against scikit-learn's HalfMultinomialLoss / HalfBinomialLoss (scikit-learn is in the test
extra), the reference twins and finite differences. The cases are the ones scikit-learn's own
loss tests pin down for these two losses: float32 in and out, soft binary targets, perfect
and extreme predictions, the weighted mean.
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
    import sklearn._loss.loss

    return sklearn._loss.loss


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_multinomial_dtypes_against_sklearn(dtype):
    """float32 logits give float32 losses, gradients and Hessians, within 2e-6 of scikit-learn's
    float64 numbers on the same (float32) inputs. scikit-learn's own float32 Hessian is 1.6e-5
    off them on these rows (its p (1 - p) from a float32 softmax); xent's 6.5e-7."""
    loss = sklearn_loss().HalfMultinomialLoss(n_classes=C)
    x, sw = X.astype(dtype), SW.astype(dtype)
    grad, hess = xent.cross_entropy_grad_hess(x, T, sample_weight=sw)
    rows = xent.cross_entropy(x, T, reduction="none")
    assert grad.dtype == hess.dtype == rows.dtype == loss.loss(T.astype(dtype), x).dtype == dtype
    x64, sw64 = x.astype(np.float64), sw.astype(np.float64)
    want_grad, want_hess = loss.gradient_hessian(T.astype(float), x64, sample_weight=sw64)
    want_rows = loss.loss(T.astype(float), x64)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol * 1e-3)
    np.testing.assert_allclose(hess, want_hess, rtol=tol, atol=tol * 1e-3)
    np.testing.assert_allclose(rows, want_rows, rtol=tol, atol=tol * 1e-3)


def test_binomial_soft_targets_and_float32_against_sklearn():
    """y anywhere in [0, 1] (scikit-learn's HalfBinomialLoss allows it), float32 and float64."""
    loss = sklearn_loss().HalfBinomialLoss()
    y = RNG.random(N)
    x = np.ascontiguousarray(XB[:, 1])
    for dtype, tol in [(np.float64, 1e-13), (np.float32, 2e-6)]:
        xd, yd, swd = x.astype(dtype), y.astype(dtype), SW.astype(dtype)
        rows = xent.binary_cross_entropy_with_logits(xd, yd, reduction="none", sample_weight=swd)
        grad, hess = xent.binary_cross_entropy_with_logits_grad_hess(xd, yd, sample_weight=swd)
        assert rows.dtype == grad.dtype == hess.dtype == dtype
        x64, y64, sw64 = xd.astype(float), yd.astype(float), swd.astype(float)
        np.testing.assert_allclose(rows, loss.loss(y64, x64, sample_weight=sw64), rtol=tol)
        want_grad, want_hess = loss.gradient_hessian(y64, x64, sample_weight=sw64)
        np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol * 1e-3)
        np.testing.assert_allclose(hess, want_hess, rtol=tol, atol=1e-30)


def test_extreme_predictions_against_sklearn():
    """Logits from -700 to 700: gradients and Hessians agree with scikit-learn's in relative
    terms down to e^-700. Its loss at y = 1 and a large logit is log1p(e^x) - x, which
    cancels (0 at x = 40 and 700, 2.9e-7 off at x = 20); xent's is the exact value there
    (mpmath), and scikit-learn's wherever that does not cancel."""
    mpmath = pytest.importorskip("mpmath")
    binomial = sklearn_loss().HalfBinomialLoss()
    x = np.array([-700.0, -40.0, -20.0, -1e-8, 0.0, 1e-8, 20.0, 40.0, 700.0])
    for yv in (0.0, 1.0):
        y = np.full_like(x, yv)
        rows = xent.binary_cross_entropy_with_logits(x, y, reduction="none")
        with mpmath.workprec(2500):  # log1p(e^700) - 700 = e^-700 needs about 2100 bits
            exact = [float(mpmath.log1p(mpmath.exp(v)) - yv * mpmath.mpf(v)) for v in x]
        np.testing.assert_allclose(rows, exact, rtol=1e-15, atol=0)
        if yv == 0.0:
            np.testing.assert_allclose(rows, binomial.loss(y, x), rtol=1e-14, atol=0)
        grad, hess = xent.binary_cross_entropy_with_logits_grad_hess(x, y)
        want_grad, want_hess = binomial.gradient_hessian(y, x)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-14, atol=0)
        np.testing.assert_allclose(hess, want_hess, rtol=1e-14, atol=0)
    # a perfect multinomial prediction: the right class at e^10, the others at -e^10
    multinomial = sklearn_loss().HalfMultinomialLoss(n_classes=4)
    raw = np.full((4, 4), -np.exp(10))
    raw.flat[::5] = np.exp(10)
    labels = np.arange(4)
    rows = xent.cross_entropy(raw, labels, reduction="none")
    np.testing.assert_array_equal(rows, multinomial.loss(labels.astype(float), raw))
    np.testing.assert_array_equal(rows, 0.0)
    # a confident row: scikit-learn's loss (log-sum-exp minus the target's logit) is 6.4e-4
    # off the exact log1p(e^-30 + e^-35); xent's within 4 ulp. An ordinary row: the same.
    raw = np.array([[0.0, -30.0, -35.0], [12.0, -3.0, 11.5]])
    labels = np.array([0, 2])
    rows = xent.cross_entropy(raw, labels, reduction="none")
    with mpmath.workprec(200):
        exact = float(mpmath.log1p(mpmath.exp(-30) + mpmath.exp(-35)))
    assert abs(rows[0] - exact) <= 4 * np.spacing(exact)
    sklearn_rows = multinomial.__class__(n_classes=3).loss(labels.astype(float), raw)
    np.testing.assert_allclose(rows[1], sklearn_rows[1], rtol=1e-14)


def test_binary_targets_and_weights_in_bfloat16():
    """Targets and weights may share the logits' bfloat16 dtype (ml_dtypes' kind "V" was
    refused as not real): the numbers are those of the same values in float32, rounded."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = ml_dtypes.bfloat16
    x = np.array([-10.0, 0.0, 20.0, 3.5], dtype=bf16)
    y = np.array([0.0, 1.0, 1.0, 0.25], dtype=bf16)
    w = np.array([1.0, 2.0, 0.5, 1.0], dtype=bf16)
    got = xent.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=w, reduction="none")
    want = xent.binary_cross_entropy_with_logits(
        x.astype(np.float32),
        y.astype(np.float32),
        weight=w.astype(np.float32),
        pos_weight=w.astype(np.float32),
        reduction="none",
    )
    assert got.dtype == bf16
    np.testing.assert_array_equal(got, want.astype(bf16))
    with pytest.raises(TypeError, match="target must be real"):
        xent.binary_cross_entropy_with_logits(x, np.array(["a", "b", "c", "d"]))
