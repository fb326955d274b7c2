"""The binary cross-entropies (probabilities and logits; xent.binary_cross_entropy,
binary_cross_entropy_with_logits and their _with_grad forms) against xent.reference and
PyTorch's autograd: values, reductions, weights and pos_weight, extremes, in-place results,
errors and check mode.

The oracles are evaluated in float64 on the very values xent is given (float32 inputs upcast
exactly); PyTorch too runs in float64 on those values, so that the comparison measures xent's
error and not PyTorch's own float32 rounding.

Tolerances, and why
-------------------
Binary cross-entropy: each element's loss is compared relative to the sum of the magnitudes
of its terms (``w (|(1 - y) x| + |L| softplus(-x))`` for logits: for x << 0 and y = 0 the
two terms cancel to a small result with an error of a few ulps of |x|, as in PyTorch), and a
reduction relative to the sum (mean) of those scales: rtol 1e-6 (float32; measured <= 2e-7)
/ 1e-12 (float64). Targets are given in the input's dtype: xent computes with the target
rounded to it, see ``_binary_data``.

Gradients are compared relative to the element's gradient scale (``w`` times the incoming
factor) with ``support.assert_grad_close``, whose docstring gives the tolerance and why.
"""

import math
import re

import numpy as np
import pytest

import xent
from xent import reference as ref

from support import (
    F64,
    FLOAT_DTYPES,
    REDUCTIONS,
    SCALE_RTOL,
    SUBNORMAL_FLOOR,
    assert_grad_close,
    assert_within,
)


SHAPES = [(), (6,), (3, 4, 5)]


def _weight_cases(shape, rng):
    """(label, weight) pairs that broadcast to ``shape``."""
    cases = [("none", None), ("full", rng.uniform(0.25, 3.0, size=shape))]
    if shape:
        cases.append(("C", rng.uniform(0.25, 3.0, size=shape[-1:])))
    if len(shape) >= 2:
        cases.append(("N1", rng.uniform(0.25, 3.0, size=shape[:-1] + (1,))))
    return cases


def _pos_weight_cases(shape, rng):
    return [None, rng.uniform(0.5, 3.0, size=shape[-1:])]


def _binary_data(shape, dtype, rng, logits):
    """Inputs with exact 0 / 1 probabilities (or +-1e4 logits), soft and hard targets."""
    if logits:
        x = rng.standard_normal(shape) * 4
        special = [1e4, -1e4, 0.0, 30.0, -30.0]
    else:
        x = rng.uniform(0.0, 1.0, size=shape)
        special = [0.0, 1.0, 1e-30, 1 - 1e-7, 0.5]
    y = rng.uniform(0.0, 1.0, size=shape)
    flat_x, flat_y = np.reshape(x, -1), np.reshape(y, -1)
    for i in range(min(flat_x.size, 2 * len(special))):
        flat_x[i] = special[i % len(special)]
        flat_y[i] = [0.0, 1.0, 0.3][i % 3]
    # The target in the input's dtype: xent computes with the target rounded to it (as PyTorch,
    # which wants one dtype), so a float64 soft target next to float32 input would differ
    # from the float64 oracle by that rounding (up to 0.15% of a loss like (1 - y) x with
    # y = 0.99998 and x = 35), which is the input's precision, not an error of the kernels.
    return flat_x.reshape(shape).astype(dtype), flat_y.reshape(shape).astype(dtype)


def _bce_scale(x, y, w, pw, logits):
    """Per element, the sum of the magnitudes of the loss's terms (module docstring)."""
    x, y = np.asarray(x, F64), np.asarray(y, F64)
    w = np.ones_like(x) if w is None else np.broadcast_to(w, x.shape)
    if logits:
        big_l = 1.0 if pw is None else 1.0 + (np.broadcast_to(pw, x.shape) - 1.0) * y
        softplus = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0.0)
        return np.abs(w) * (np.abs((1 - y) * x) + np.abs(big_l) * softplus)
    with np.errstate(divide="ignore"):
        return np.abs(w) * (
            y * -np.maximum(np.log(x), -100.0) + (1 - y) * -np.maximum(np.log1p(-x), -100.0)
        )


def assert_bce_loss(got, expected, scale, reduction, dtype, shape):
    rtol = SCALE_RTOL[dtype]
    if reduction == "none":
        assert isinstance(got, np.ndarray) or shape == ()
        assert_within(got, expected, dtype, rtol * scale + SUBNORMAL_FLOOR[dtype], shape=shape)
        return
    assert isinstance(got, np.generic) and got.dtype == dtype, type(got)
    total = float(np.sum(scale)) / (np.size(scale) if reduction == "mean" else 1)
    assert_within(got, expected, dtype, rtol * total + SUBNORMAL_FLOOR[dtype])


def _incoming(reduction, shape, rng):
    """grad_output choices: None and a value; for "none", an array of the input's shape."""
    if reduction == "none":
        return [None, rng.uniform(-2.0, 2.0, size=shape)]
    return [None, -0.75]


def _unit(reduction, grad_output, n, shape, w):
    g = 1.0 if grad_output is None else np.asarray(grad_output, F64)
    if reduction == "mean":
        g = g / max(n, 1)
    w = 1.0 if w is None else np.asarray(w, F64)
    return np.abs(np.broadcast_to(g * w, shape))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
def test_binary_cross_entropy_against_reference(isa, dtype, shape, logits, rng):
    x, y = _binary_data(shape, dtype, rng, logits)
    x64 = x.astype(F64)
    loss_fn = xent.binary_cross_entropy_with_logits if logits else xent.binary_cross_entropy
    grad_fn = (
        xent.binary_cross_entropy_with_logits_with_grad
        if logits
        else xent.binary_cross_entropy_with_grad
    )
    ref_loss = ref.binary_cross_entropy_with_logits if logits else ref.binary_cross_entropy
    ref_grad = (
        ref.binary_cross_entropy_with_logits_grad if logits else ref.binary_cross_entropy_grad
    )
    for _, w in _weight_cases(shape, rng):
        for pw in _pos_weight_cases(shape, rng) if logits else [None]:
            extra = dict(pos_weight=pw) if logits else {}
            scale = _bce_scale(x64, y, w, pw, logits)
            for reduction in REDUCTIONS:
                kw = dict(weight=w, reduction=reduction, **extra)
                expected = ref_loss(x64, y, **kw)
                got = loss_fn(x, y, **kw)
                assert_bce_loss(got, expected, scale, reduction, dtype, shape)
                for g in _incoming(reduction, shape, rng):
                    loss, grad = grad_fn(x, y, grad_output=g, **kw)
                    assert_bce_loss(loss, expected, scale, reduction, dtype, shape)
                    assert_grad_close(
                        grad,
                        ref_grad(x64, y, grad_output=g, **kw),
                        _unit(reduction, g, x.size, shape, w),
                        dtype,
                    )


def _torch_binary(torch, logits, x64, y, w, pw, reduction, g):
    """PyTorch's loss and autograd gradient, in float64."""
    F = torch.nn.functional
    xt = torch.tensor(x64, requires_grad=True)
    kw = dict(weight=None if w is None else torch.tensor(np.asarray(w, F64)), reduction=reduction)
    if logits:
        loss = F.binary_cross_entropy_with_logits(
            xt,
            torch.tensor(np.asarray(y, F64)),
            pos_weight=None if pw is None else torch.tensor(pw),
            **kw,
        )
    else:
        loss = F.binary_cross_entropy(xt, torch.tensor(np.asarray(y, F64)), **kw)
    incoming = torch.ones_like(loss) if g is None else torch.tensor(np.asarray(g, F64))
    loss.backward(incoming)
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
def test_binary_cross_entropy_against_torch(dtype, shape, logits, rng):
    torch = pytest.importorskip("torch")
    x, y = _binary_data(shape, dtype, rng, logits)
    x64 = x.astype(F64)
    grad_fn = (
        xent.binary_cross_entropy_with_logits_with_grad
        if logits
        else xent.binary_cross_entropy_with_grad
    )
    for _, w in _weight_cases(shape, rng):
        for pw in _pos_weight_cases(shape, rng) if logits else [None]:
            extra = dict(pos_weight=pw) if logits else {}
            scale = _bce_scale(x64, y, w, pw, logits)
            for reduction in REDUCTIONS:
                for g in _incoming(reduction, shape, rng):
                    t_loss, t_grad = _torch_binary(torch, logits, x64, y, w, pw, reduction, g)
                    loss, grad = grad_fn(
                        x, y, weight=w, reduction=reduction, grad_output=g, **extra
                    )
                    assert_bce_loss(loss, t_loss, scale, reduction, dtype, shape)
                    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
                    assert_grad_close(grad, t_grad, _unit(reduction, g, x.size, shape, w), dtype)


def test_binary_extremes(dtype):
    """probs exactly 0 and 1 (PyTorch's -100 clamp of the log, and its 1e-12 floor in the
    gradient); logits of magnitude 1e4 stay finite."""
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=dtype)
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    loss, grad = xent.binary_cross_entropy_with_grad(x, y, reduction="none")
    np.testing.assert_array_equal(loss, np.array([0, 100, 100, 0, 50, 50], dtype=dtype))
    np.testing.assert_allclose(grad, [0.0, -1e12, 1e12, 0.0, -0.5e12, 0.5e12], rtol=1e-6)
    z = np.array([1e4, -1e4, -1e4, 1e4, 1e4, -1e4], dtype=dtype)
    loss, grad = xent.binary_cross_entropy_with_logits_with_grad(
        z, y, pos_weight=np.full(6, 2.0), reduction="none"
    )
    # wrong by 1e4: 1e4 (y = 0), pos_weight * 1e4 (y = 1); right: exactly 0 (for y = 0 the
    # terms x and max(-x, 0) cancel); y = 0.5: 0.5 x + 1.5 softplus(-x)
    np.testing.assert_array_equal(loss, np.array([1e4, 2e4, 0, 0, 0.5e4, 1e4], dtype=dtype))
    # L sigmoid(x) - pos_weight y with L = 1 + (pos_weight - 1) y
    np.testing.assert_array_equal(grad, np.array([1, -2, 0, 0, 0.5, -1], dtype=dtype))
    torch = pytest.importorskip("torch")
    t_loss, t_grad = _torch_binary(
        torch, True, z.astype(F64), y, None, np.full(6, 2.0), "none", None
    )
    np.testing.assert_array_equal(loss, t_loss.astype(dtype))
    np.testing.assert_array_equal(grad, t_grad.astype(dtype))
    t_loss, t_grad = _torch_binary(
        torch, False, x.astype(F64), np.asarray(y), None, None, "sum", None
    )
    loss, grad = xent.binary_cross_entropy_with_grad(x, y, reduction="sum")
    assert loss == pytest.approx(t_loss) and np.allclose(grad, t_grad, rtol=1e-6)


@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
def test_binary_errors(logits):
    loss_fn = xent.binary_cross_entropy_with_logits if logits else xent.binary_cross_entropy
    grad_fn = (
        xent.binary_cross_entropy_with_logits_with_grad
        if logits
        else xent.binary_cross_entropy_with_grad
    )
    name = "logits" if logits else "probs"
    x = np.full((2, 3), 0.5)
    y = np.full((2, 3), 0.5)
    for fn in (loss_fn, grad_fn):
        for bad in (-0.1, 1.5, math.nan):
            y_bad = y.copy()
            y_bad[1, 2] = bad
            with pytest.raises(ValueError, match=re.escape("target[1, 2]")):
                fn(x, y_bad)
            if not logits:
                x_bad = x.copy()
                x_bad[1, 2] = bad
                with pytest.raises(ValueError, match=re.escape("probs[1, 2]")):
                    fn(x_bad, y)
        with pytest.raises(ValueError, match="target has shape"):
            fn(x, y[:, :2])
        with pytest.raises(ValueError, match="target has shape"):
            fn(x, y.T)
        for w in (np.ones(2), np.ones((3, 3)), np.ones((2, 3, 1))):
            with pytest.raises(ValueError, match="weight"):
                fn(x, y, weight=w)
        if logits:
            with pytest.raises(ValueError, match="pos_weight"):
                fn(x, y, pos_weight=np.ones(2))
        else:
            with pytest.raises(TypeError, match="pos_weight"):
                fn(x, y, pos_weight=np.ones(3))
        with pytest.raises(TypeError, match=name):
            fn(np.ones((2, 3), dtype=np.int64), y)
        with pytest.raises(ValueError, match="reduction"):
            fn(x, y, reduction="avg")
    with pytest.raises(ValueError, match="grad_output"):
        grad_fn(x, y, reduction="none", grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output"):
        grad_fn(x, y, reduction="none", grad_output=np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="grad_output"):
        grad_fn(x, y, reduction="mean", grad_output=np.ones(2))
    with pytest.raises(ValueError):
        grad_fn(x, y, out=np.empty((3, 2)))
    with pytest.raises(ValueError, match="overlap"):
        grad_fn(x, y, out=y)


@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_in_place(isa, dtype, logits, reduction):
    grad_fn = (
        xent.binary_cross_entropy_with_logits_with_grad
        if logits
        else xent.binary_cross_entropy_with_grad
    )
    rng = np.random.default_rng(5)
    x, y = _binary_data((4, 3, 5), dtype, rng, logits)
    extra = dict(pos_weight=rng.uniform(0.5, 2, 5)) if logits else {}
    w = rng.uniform(0.5, 2.0, size=(4, 3, 1))
    g = rng.uniform(-1, 1, size=x.shape) if reduction == "none" else 0.5
    kw = dict(weight=w, reduction=reduction, grad_output=g, **extra)
    loss, grad = grad_fn(x, y, **kw)
    x_in = x.copy()
    loss_in, grad_in = grad_fn(x_in, y, out=x_in, **kw)
    assert np.shares_memory(grad_in, x_in)
    np.testing.assert_array_equal(grad_in, grad)
    np.testing.assert_array_equal(x_in, grad)
    np.testing.assert_array_equal(loss_in, loss)
    # a strided input, written in place
    big = np.zeros((4, 3, 10), dtype=dtype)
    view = big[..., ::2]
    view[...] = x
    loss_v, grad_v = grad_fn(view, y, out=view, **kw)
    assert grad_v is view
    np.testing.assert_array_equal(grad_v, grad)
    np.testing.assert_array_equal(loss_v, loss)
    np.testing.assert_array_equal(big[..., 1::2], 0)


def test_binary_in_place_bad_input_names_the_input():
    """An invalid probability must be reported as itself, also when out= is the input.

    (The check runs after the kernel, which with out=probs has already overwritten probs
    with the gradient.)"""
    probs = np.array([0.2, 0.3, 1.5, 0.4])
    target = np.array([0.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=re.escape("probs[2] = 1.5")):
        xent.binary_cross_entropy_with_grad(probs, target, out=probs)
    probs = np.array([0.2, 0.3, 0.5, 0.4])
    target = np.array([0.0, 1.0, math.nan, 0.0])
    with pytest.raises(ValueError, match=re.escape("target[2] = nan")):
        xent.binary_cross_entropy_with_grad(probs, target, out=probs)


def test_binary_check_mode():
    rng = np.random.default_rng(6)
    for dtype in FLOAT_DTYPES:
        for logits in (False, True):
            x, y = _binary_data((7, 5), dtype, rng, logits)
            extra = dict(pos_weight=rng.uniform(0.5, 2, 5)) if logits else {}
            for reduction in REDUCTIONS:
                if logits:
                    xent.binary_cross_entropy_with_logits(
                        x, y, reduction=reduction, check=True, **extra
                    )
                    xent.binary_cross_entropy_with_logits_with_grad(
                        x, y, reduction=reduction, check=True, **extra
                    )
                else:
                    xent.binary_cross_entropy(x, y, reduction=reduction, check=True)
                    xent.binary_cross_entropy_with_grad(x, y, reduction=reduction, check=True)
