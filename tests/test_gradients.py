"""cross_entropy_with_grad (class indices and probabilities, weights, label smoothing,
ignore_index, grad_output) against xent.reference and PyTorch's autograd: the loss, the
gradient, threads, in-place results, ``out`` overlapping another operand, errors and check
mode.

The oracles are evaluated in float64 on the very values xent is given (float32 inputs upcast
exactly); PyTorch too runs in float64 on those values, so that the comparison measures xent's
error and not PyTorch's own float32 rounding.

Tolerances, and why
-------------------
The loss uses tests/test_against_reference.py's tolerance (``support.CE_LOSS_TOL``: 2e-6
absolute per unit of the row's coefficients, 1e-12 for float64). Gradients are compared per
element relative to the row's gradient scale ``|g| * c`` (``g`` the incoming factor of the
row, ``c`` the sum of its loss coefficients: ``(1 - eps) w_t + eps / C sum w`` for class
indices, ``sum_j w_j q_j`` for probabilities) with ``support.assert_grad_close``, whose
docstring gives the tolerance and why.
"""

import re

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import xent
from xent import reference as ref

from support import (
    CE_LOSS_TOL,
    F64,
    FLOAT_DTYPES,
    REDUCTIONS,
    SMOOTHINGS,
    assert_grad_close,
    assert_within,
    hypothesis_settings,
    torch_cross_entropy_with_grad,
)

HYPOTHESIS = hypothesis_settings(25)


def ce_row_coefficients(shape, target, weight, ignore_index, eps):
    """Per row, the sum of the loss's coefficients (0 for an ignored row); and the mean's
    denominator."""
    n_classes = shape[-1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, F64)
    target = np.asarray(target)
    if target.dtype.kind == "f":
        q = target.astype(F64) * (1.0 - eps) + eps / n_classes
        c = np.sum(w * np.abs(q), axis=-1)
        return c, c.size
    t = target.astype(np.int64)
    ignored = t == ignore_index
    safe = np.where(ignored, 0, t)
    c = np.where(ignored, 0.0, (1.0 - eps) * w[safe] + eps / n_classes * w.sum())
    return c, float(np.sum(np.where(ignored, 0.0, w[safe])))


def ce_grad_unit(shape, target, weight, ignore_index, eps, reduction, grad_output):
    """Per row, ``|g_i| * c_i`` (module docstring), shaped to broadcast against the logits."""
    c, denominator = ce_row_coefficients(shape, target, weight, ignore_index, eps)
    g = np.float64(1.0) if grad_output is None else np.asarray(grad_output, F64)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            g = g / np.float64(denominator)
    with np.errstate(invalid="ignore"):  # inf * 0: an ignored row of an all-ignored mean
        return (np.abs(g) * c)[..., None]


def as_computed(target, dtype):
    """The target as xent computes with it: probabilities in the logits' dtype (documented;
    the values drawn here are >= 2**-20, so none is rounded to 0)."""
    return target.astype(dtype) if target.dtype.kind == "f" else target


def check_ce_loss(got, x, target, kw, dtype):
    target = as_computed(target, dtype)
    expected = ref.cross_entropy(x.astype(F64), target, **kw)
    c, denominator = ce_row_coefficients(
        x.shape,
        target,
        kw.get("weight"),
        kw.get("ignore_index", -100),
        kw.get("label_smoothing", 0.0),
    )
    reduction = kw.get("reduction", "mean")
    rtol, atol = CE_LOSS_TOL[dtype], CE_LOSS_TOL[dtype] * c
    if reduction == "none":
        assert_within(got, expected, dtype, atol + rtol * np.abs(expected), shape=x.shape[:-1])
        return
    assert isinstance(got, np.generic) and got.dtype == dtype
    total = float(np.sum(atol))
    if reduction == "mean":
        total = total / denominator if denominator else 0.0
    assert_within(got, expected, dtype, total + rtol * np.abs(expected))


@st.composite
def ce_problems(draw, dtype):
    """(logits, target, kwargs) with class indices (some rows ignored) or probabilities."""
    batch = tuple(draw(st.lists(st.integers(0, 4), max_size=2)))
    n_classes = draw(st.integers(1, 10))
    shape = batch + (n_classes,)
    x = draw(hnp.arrays(dtype, shape, elements=st.floats(-40, 40, width=8 * dtype.itemsize)))
    layout = draw(st.sampled_from(["c", "fortran", "col_slice", "byteswapped"]))
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "col_slice":
        big = np.full(shape[:-1] + (n_classes + 2,), np.nan, dtype=dtype)
        big[..., 1:-1] = x
        x = big[..., 1:-1]
    elif layout == "byteswapped":
        x = x.astype(dtype.newbyteorder())
    kw = dict(
        reduction=draw(st.sampled_from(REDUCTIONS)),
        label_smoothing=draw(st.sampled_from(SMOOTHINGS)),
    )
    if draw(st.booleans()):
        kw["weight"] = draw(hnp.arrays(F64, (n_classes,), elements=st.floats(0.25, 4.0)))
    if draw(st.booleans()):  # class indices
        t = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, n_classes - 1)))
        ignore = draw(st.sampled_from([-100, -1, 0]))
        if ignore != -100 or draw(st.booleans()):
            kw["ignore_index"] = ignore
        mask = draw(hnp.arrays(np.bool_, batch))
        t = np.where(mask, ignore, t).astype(
            draw(
                st.sampled_from(
                    [np.int64, np.int32, np.int16] if ignore < 0 else [np.int64, np.uint8]
                )
            )
        )
    else:
        t_dtype = draw(st.sampled_from(FLOAT_DTYPES))
        t = draw(
            hnp.arrays(
                t_dtype,
                shape,
                elements=st.one_of(
                    st.just(0.0), st.floats(2.0**-20, 3.0, width=8 * t_dtype.itemsize)
                ),
            )
        )
        if draw(st.booleans()):
            sums = t.sum(axis=-1, keepdims=True)
            t = np.where(sums > 0, t / np.where(sums > 0, sums, 1), t).astype(t_dtype)
    if kw["reduction"] == "none":
        g = draw(st.one_of(st.none(), hnp.arrays(F64, batch, elements=st.floats(-2, 2))))
    else:
        g = draw(st.sampled_from([None, 1.0, -0.5, 3.0]))
    return x, t, kw, g


@HYPOTHESIS
@given(data=st.data())
def test_cross_entropy_with_grad_against_reference(isa, dtype, data):
    x, t, kw, g = data.draw(ce_problems(dtype))
    threads = data.draw(st.sampled_from([None, 1, 2]))
    x_before, t_before = x.copy(), t.copy()
    loss, grad = xent.cross_entropy_with_grad(x, t, grad_output=g, num_threads=threads, **kw)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(t, t_before)
    # the loss is exactly what cross_entropy returns
    plain = xent.cross_entropy(x, t, num_threads=threads, **kw)
    np.testing.assert_array_equal(np.asarray(loss), np.asarray(plain))
    assert type(loss) is type(plain)
    check_ce_loss(loss, x, t, kw, dtype)
    assert isinstance(grad, np.ndarray) and grad.shape == x.shape
    expected = ref.cross_entropy_grad(x.astype(F64), as_computed(t, dtype), grad_output=g, **kw)
    unit = ce_grad_unit(
        x.shape,
        t,
        kw.get("weight"),
        kw.get("ignore_index", -100),
        kw["label_smoothing"],
        kw["reduction"],
        g,
    )
    assert_grad_close(grad, expected, unit, dtype)
    if t.dtype.kind in "iu":  # ignored rows: exactly 0
        ignored = t == kw.get("ignore_index", -100)
        assert np.all(grad[ignored] == 0)
    # into a given (Fortran-ordered) out
    out = np.asfortranarray(np.full(x.shape, np.nan, dtype=dtype))
    loss2, grad2 = xent.cross_entropy_with_grad(
        x, t, grad_output=g, out=out, num_threads=threads, **kw
    )
    assert grad2 is out
    np.testing.assert_array_equal(grad2, grad)
    np.testing.assert_array_equal(np.asarray(loss2), np.asarray(loss))


@pytest.mark.parametrize("shape", [(7,), (9, 7), (2, 3, 7)], ids=str)
@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_cross_entropy_with_grad_against_torch(dtype, shape, target_kind, rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x64 = x.astype(F64)
    batch, n_classes = shape[:-1], shape[-1]
    w = rng.uniform(0.25, 3.0, size=n_classes)
    if target_kind == "index":
        t = rng.integers(0, n_classes, size=batch)
        if batch:
            t.reshape(-1)[::3] = -100
        options = [{}, dict(ignore_index=2), dict(weight=w), dict(weight=w, ignore_index=4)]
    else:
        t = rng.uniform(size=shape)
        t.reshape(-1)[::4] = 0.0
        t = (t / t.sum(axis=-1, keepdims=True)).astype(dtype)
        options = [{}, dict(weight=w)]
    base_target = t
    for opt in options:
        if "ignore_index" in opt:  # the rows ignored by -100, ignored by this index instead
            t = np.where(base_target == -100, opt["ignore_index"], base_target)
        for eps in SMOOTHINGS:
            for reduction in REDUCTIONS:
                grads = (
                    [None, rng.uniform(-2, 2, size=batch)] if reduction == "none" else [None, -1.5]
                )
                for g in grads:
                    kw = dict(opt, reduction=reduction, label_smoothing=eps)
                    loss, grad = xent.cross_entropy_with_grad(x, t, grad_output=g, **kw)
                    t_loss, t_grad = torch_cross_entropy_with_grad(
                        torch, x64, t, grad_output=g, **kw
                    )
                    check_ce_loss(loss, x, t, kw, dtype)
                    c, den = ce_row_coefficients(
                        shape, t, opt.get("weight"), opt.get("ignore_index", -100), eps
                    )
                    # a single row whose class is ignore_index: the mean is NaN on both
                    # sides (assert_within requires that), and so is its bound, 0 / 0
                    with np.errstate(invalid="ignore"):
                        tol = CE_LOSS_TOL[dtype] * (
                            np.sum(c) / (den if reduction == "mean" else 1)
                            if reduction != "none"
                            else c
                        )
                    assert_within(loss, t_loss, dtype, tol + CE_LOSS_TOL[dtype] * np.abs(t_loss))
                    unit = ce_grad_unit(
                        shape,
                        t,
                        opt.get("weight"),
                        opt.get("ignore_index", -100),
                        eps,
                        reduction,
                        g,
                    )
                    assert_grad_close(grad, t_grad, unit, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", SMOOTHINGS)
def test_all_rows_ignored(reduction, eps):
    x = np.random.default_rng(2).standard_normal((3, 4))
    t = np.full(3, -100)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    loss, grad = xent.cross_entropy_with_grad(
        x, t, weight=w, reduction=reduction, label_smoothing=eps
    )
    np.testing.assert_array_equal(grad, 0.0)
    if reduction == "mean":
        assert np.isnan(loss)
    else:
        np.testing.assert_array_equal(loss, 0.0)
    torch = pytest.importorskip("torch")
    t_loss, t_grad = torch_cross_entropy_with_grad(
        torch, x, t, weight=w, reduction=reduction, label_smoothing=eps
    )
    np.testing.assert_array_equal(np.asarray(loss), t_loss)  # NaN meets NaN
    np.testing.assert_array_equal(grad, t_grad)


@pytest.mark.parametrize("shape", [(20_000, 11), (40, 3000)], ids=str)
def test_same_bits_on_one_and_two_threads(isa, dtype, shape):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.integers(0, shape[1], size=shape[0])
    t[::7] = -100
    p = rng.uniform(size=shape).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=shape[1])
    for target in (t, p):
        for reduction in REDUCTIONS:
            g = rng.uniform(-1, 1, size=shape[0]) if reduction == "none" else 0.3
            for eps, weight in [(0.0, None), (0.1, w), (1.0, w)]:
                kw = dict(weight=weight, reduction=reduction, label_smoothing=eps, grad_output=g)
                l1, g1 = xent.cross_entropy_with_grad(x, target, num_threads=1, **kw)
                l2, g2 = xent.cross_entropy_with_grad(x, target, num_threads=2, **kw)
                assert np.asarray(l1).tobytes() == np.asarray(l2).tobytes(), kw
                assert g1.tobytes() == g2.tobytes(), kw
    for logits in (False, True):  # and the binary losses
        a = x if logits else np.clip(np.abs(x) / 10, 0, 1).astype(dtype)
        fn = (
            xent.binary_cross_entropy_with_logits_with_grad
            if logits
            else xent.binary_cross_entropy_with_grad
        )
        for reduction in REDUCTIONS:
            one = fn(a, p, weight=w, reduction=reduction, num_threads=1)
            two = fn(a, p, weight=w, reduction=reduction, num_threads=2)
            assert np.asarray(one[0]).tobytes() == np.asarray(two[0]).tobytes()
            assert one[1].tobytes() == two[1].tobytes()


@pytest.mark.parametrize("target_kind", ["index", "probability"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_grad_in_place(isa, dtype, target_kind, reduction):
    rng = np.random.default_rng(4)
    shape = (3, 5, 9)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if target_kind == "index":
        t = rng.integers(0, 9, size=shape[:-1])
        t[0, 1] = -100
    else:
        t = rng.uniform(size=shape).astype(dtype)
    g = rng.uniform(-1, 1, size=shape[:-1]) if reduction == "none" else 2.0
    kw = dict(
        weight=rng.uniform(0.5, 2, 9), reduction=reduction, label_smoothing=0.1, grad_output=g
    )
    loss, grad = xent.cross_entropy_with_grad(x, t, **kw)
    x_in = x.copy()
    loss_in, grad_in = xent.cross_entropy_with_grad(x_in, t, out=x_in, **kw)
    assert grad_in is x_in
    np.testing.assert_array_equal(grad_in, grad)
    np.testing.assert_array_equal(np.asarray(loss_in), np.asarray(loss))
    # and with check mode, which must read the logits before they are overwritten
    x_in = x.copy()
    loss_chk, grad_chk = xent.cross_entropy_with_grad(x_in, t, out=x_in, check=True, **kw)
    np.testing.assert_array_equal(grad_chk, grad)
    np.testing.assert_array_equal(np.asarray(loss_chk), np.asarray(loss))
    # logits with a row stride (every other row of a buffer), written in place
    big = np.zeros((6, 5, 9), dtype=dtype)
    view = big[::2]
    view[...] = x
    loss_v, grad_v = xent.cross_entropy_with_grad(view, t, out=view, **kw)
    assert grad_v is view
    np.testing.assert_array_equal(grad_v, grad)
    np.testing.assert_array_equal(np.asarray(loss_v), np.asarray(loss))
    np.testing.assert_array_equal(big[1::2], 0)


def test_out_overlapping_probability_target():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 6))
    p = rng.uniform(size=(4, 6))
    with pytest.raises(ValueError, match="overlap"):
        xent.cross_entropy_with_grad(x, p, out=p)
    buffer = rng.uniform(size=(5, 6))
    with pytest.raises(ValueError, match="overlap"):  # a partial overlap
        xent.cross_entropy_with_grad(x, buffer[1:], out=buffer[:4])
    # class-index targets cannot overlap a floating out: out=logits is fine there
    loss, grad = xent.cross_entropy_with_grad(x.copy(), np.zeros(4, dtype=np.int64))
    assert np.all(np.isfinite(grad))


def _aliasing_case(case):
    """(call with out sharing memory with another operand, the same call without)."""
    rng = np.random.default_rng(12)
    n, c = 5000, 8
    x = rng.standard_normal((n, c))
    t = rng.integers(0, c, size=n)
    if case == "ce_weight":  # the weight is row 0 of out
        w = rng.uniform(0.5, 2.0, size=c)
        buf = np.empty((n, c))
        buf[0] = w
        return (
            lambda: xent.cross_entropy_with_grad(x, t, weight=buf[0], out=buf),
            lambda: xent.cross_entropy_with_grad(x, t, weight=w),
        )
    if case == "ce_grad_output":  # grad_output is the first n entries of out
        g = rng.uniform(-1, 1, size=n)
        buf = np.empty((n, c))
        buf.reshape(-1)[:n] = g
        return (
            lambda: xent.cross_entropy_with_grad(
                x, t, reduction="none", grad_output=buf.reshape(-1)[:n], out=buf
            ),
            lambda: xent.cross_entropy_with_grad(x, t, reduction="none", grad_output=g),
        )
    p, y = rng.uniform(size=(300, 7)), rng.uniform(size=(300, 7))
    w_full = rng.uniform(0.5, 2.0, size=(300, 7))
    buf = np.empty((301, 7))
    buf[:-1] = w_full  # an elementwise weight one row behind out
    return (
        lambda: xent.binary_cross_entropy_with_grad(p, y, weight=buf[:-1], out=buf[1:]),
        lambda: xent.binary_cross_entropy_with_grad(p, y, weight=w_full),
    )


@pytest.mark.parametrize("case", ["ce_weight", "ce_grad_output", "bce_weight"])
def test_out_overlapping_weight_or_grad_output(case):
    """``out`` sharing memory with the weight or the per-row grad_output: refused (as an
    overlap with the target is), or the result of the call without the overlap -- never a
    silently different loss or gradient (the kernels would read weights / incoming gradients
    that earlier rows have already overwritten)."""
    aliased, plain = _aliasing_case(case)
    expected = plain()
    try:
        got = aliased()
    except ValueError:
        return
    np.testing.assert_array_equal(got[1], expected[1], err_msg="gradient")
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(expected[0]), err_msg="loss")


def test_cross_entropy_with_grad_errors():
    x = np.zeros((4, 6))
    t = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="grad_output"):
        xent.cross_entropy_with_grad(x, t, reduction="mean", grad_output=np.ones(4))
    with pytest.raises(ValueError, match="grad_output"):
        xent.cross_entropy_with_grad(x, t, reduction="none", grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output"):
        xent.cross_entropy_with_grad(x, t, reduction="none", grad_output=2.0)
    with pytest.raises(ValueError):
        xent.cross_entropy_with_grad(x, t, out=np.empty((6, 4)))
    with pytest.raises(TypeError):
        xent.cross_entropy_with_grad(x, t, out=np.empty((4, 6), dtype=np.float32))
    with pytest.raises(IndexError, match=re.escape("target[2]")):
        xent.cross_entropy_with_grad(x, np.array([0, 1, 6, 2]))
    x_before = x.copy()
    with pytest.raises(IndexError):  # refused before anything is written
        xent.cross_entropy_with_grad(x, np.array([0, 1, 6, 2]), out=x)
    np.testing.assert_array_equal(x, x_before)


def test_cross_entropy_with_grad_check_mode():
    rng = np.random.default_rng(8)
    for dtype in FLOAT_DTYPES:
        x = (rng.standard_normal((6, 3, 8)) * 4).astype(dtype)
        t = rng.integers(0, 8, size=(6, 3))
        t[1, 1] = -100
        p = rng.uniform(size=x.shape).astype(dtype)
        w = rng.uniform(0.5, 2.0, size=8)
        for target in (t, p):
            for reduction in REDUCTIONS:
                for eps in SMOOTHINGS:
                    g = rng.uniform(-1, 1, size=(6, 3)) if reduction == "none" else 0.25
                    xent.cross_entropy_with_grad(
                        x,
                        target,
                        weight=w,
                        reduction=reduction,
                        label_smoothing=eps,
                        grad_output=g,
                        check=True,
                    )
    big = rng.standard_normal((5000, 4)).astype(np.float32)  # checked on a sample of rows
    xent.cross_entropy_with_grad(big, rng.integers(0, 4, size=5000), check=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
@pytest.mark.parametrize("c", [5, 100, 3001, 5000])
def test_streamed_gradient_has_the_same_bits(isa, dtype, c, monkeypatch):
    """Non-temporal stores (gradients apart from the logits, large) write the same bits as
    plain stores, from any alignment of the output rows, with class weights and smoothing."""
    from xent import _kernels, _multiclass

    rng = np.random.default_rng(c)
    n = 37
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    target = rng.integers(0, c, n)
    weight = rng.uniform(0.5, 2, c)
    for options in ({}, {"weight": weight, "label_smoothing": 0.1}):
        want_loss, want = xent.cross_entropy_with_grad(x, target, **options)
        monkeypatch.setattr(_multiclass, "STREAM_BYTES", 0)
        for offset in range(3):  # output rows at every alignment of a few elements
            store = np.zeros(n * c + 3, dtype=dtype)
            out = store[offset : offset + n * c].reshape(n, c)
            loss, grad = xent.cross_entropy_with_grad(x, target, out=out, **options)
            assert grad is out
            assert np.array_equal(grad.view(np.uint8), want.view(np.uint8))
            assert np.array_equal(np.asarray(loss), np.asarray(want_loss))
        monkeypatch.undo()
    # the kernel itself, streamed or not
    plain, streamed = np.empty_like(x), np.empty_like(x)
    args = (x, target, None, -100, 0.0, 1.0 / n, None, None)
    assert _kernels.index_loss_grad(*args, plain, 2, False) == _kernels.index_loss_grad(
        *args, streamed, 2, True
    )
    assert np.array_equal(plain.view(np.uint8), streamed.view(np.uint8))
