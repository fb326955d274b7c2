"""xent against the libraries it imitates: SciPy (logsumexp, log_softmax, softmax) and PyTorch
(cross_entropy, nll_loss, and logsumexp / log_softmax / softmax), on finite inputs.

The PyTorch tests skip when torch is not installed; the SciPy tests do not need it.

Tolerances
----------
* SciPy is given the float64 values of the input (float32 upcast exactly), so it is an accurate
  oracle and the bounds are xent's own (see tests/test_against_reference.py): float64
  rtol = atol = 1e-12; float32 rtol = atol = 2e-6 (absolute log(sum) error of a few float32
  ulps of 1, plus one rounding). float32 softmax: rtol 6e-6, because xent takes exp of the
  log-probability rounded to float32, which costs |log p| * 2**-24 relative on top: the
  inputs here lie within [-25, 25] and C <= 1e5, so |log p| <= 50 + log(1e5) < 62 and that
  term is < 3.7e-6.
* PyTorch computes in the input's dtype. float64: rtol = atol = 1e-10 (measured: everything
  agrees to 1e-13). float32: torch forms log_softmax, softmax and the losses in float32 and
  accumulates its reductions in float32, so it is a few float32 ulps of the largest
  intermediate (|logit| <= ~15 here) away from the truth, and its means add rounding that
  grows with the number of rows: rtol = atol = 1e-5, about 10 float32 ulps (measured: up to
  2e-6 relative).
"""

import itertools

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st

import xent

from support import (
    F32,
    F64,
    FLOAT_DTYPES,
    INT_DTYPES,
    REDUCTIONS,
    SMOOTHINGS,
    assert_close,
    class_targets,
    class_weight,
    logits,
    prob_targets,
    seed_of,
    torch_cross_entropy,
    torch_nll_loss,
)

C = 6
SHAPES = [(C,), (9, C), (3, 4, C)]  # one row (0-d target), a batch, two leading axes

SCIPY_TOL = {F32: (2e-6, 2e-6), F64: (1e-12, 1e-12)}
SCIPY_SOFTMAX_TOL = {F32: (6e-6, 1e-37), F64: (1e-12, 1e-300)}
TORCH_TOL = {F32: (1e-5, 1e-5), F64: (1e-10, 1e-10)}


def assert_near_peer(got, expected, dtype, tol):
    """``support.assert_close`` with ``tol = (rtol, atol)`` against a peer's result as it is
    (not rounded again: SciPy's float64 result, or PyTorch's in ``dtype``)."""
    assert_close(got, expected, dtype, *tol, round_expected=False)


# ---- SciPy --------------------------------------------------------------------------------------


@st.composite
def finite_arrays(draw, dtype):
    """Arrays of 1-3 dims (sides 1-9) of values in [-20, 20], with a random valid axis."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9))
    x = draw(hnp.arrays(dtype, shape, elements=st.floats(-20, 20, width=8 * dtype.itemsize)))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    return x, axis


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_scipy_logsumexp(dtype, data):
    x, axis = data.draw(finite_arrays(dtype))
    keepdims = data.draw(st.booleans())
    got = xent.logsumexp(x, axis=axis, keepdims=keepdims)
    expected = scipy.special.logsumexp(x.astype(F64), axis=axis, keepdims=keepdims)
    assert np.ndim(got) == np.ndim(expected)
    # SciPy keeps float32 too.
    assert np.asarray(scipy.special.logsumexp(x, axis=axis)).dtype == dtype
    assert_near_peer(got, expected, dtype, SCIPY_TOL[dtype])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_scipy_log_softmax(dtype, data):
    x, axis = data.draw(finite_arrays(dtype))
    expected = scipy.special.log_softmax(x.astype(F64), axis=axis)
    assert scipy.special.log_softmax(x, axis=axis).dtype == dtype
    assert_near_peer(xent.log_softmax(x, axis=axis), expected, dtype, SCIPY_TOL[dtype])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_scipy_softmax(dtype, data):
    x, axis = data.draw(finite_arrays(dtype))
    expected = scipy.special.softmax(x.astype(F64), axis=axis)
    assert scipy.special.softmax(x, axis=axis).dtype == dtype
    assert_near_peer(xent.softmax(x, axis=axis), expected, dtype, SCIPY_SOFTMAX_TOL[dtype])


@pytest.mark.parametrize("shape", [(2000, 3), (40, 1000), (3, 100_000), (5, 7, 11)], ids=str)
def test_scipy_larger_arrays(dtype, shape):
    x = (np.random.default_rng(seed_of("scipy", shape)).standard_normal(shape) * 5).astype(dtype)
    x64 = x.astype(F64)
    for axis in range(x.ndim):
        assert_near_peer(
            xent.logsumexp(x, axis=axis),
            scipy.special.logsumexp(x64, axis=axis),
            dtype,
            SCIPY_TOL[dtype],
        )
        assert_near_peer(
            xent.log_softmax(x, axis=axis),
            scipy.special.log_softmax(x64, axis=axis),
            dtype,
            SCIPY_TOL[dtype],
        )
        assert_near_peer(
            xent.softmax(x, axis=axis),
            scipy.special.softmax(x64, axis=axis),
            dtype,
            SCIPY_SOFTMAX_TOL[dtype],
        )


# ---- PyTorch ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _target_dtypes(t):
    """The integer dtypes that hold every label of t."""
    return [
        d
        for d in INT_DTYPES
        if t.size == 0 or (np.iinfo(d).min <= t.min() and t.max() <= np.iinfo(d).max)
    ]


def _check_loss(got, expected, dtype, reduction, batch_shape):
    if reduction == "none":
        assert isinstance(got, np.ndarray) and got.shape == batch_shape
    else:
        assert isinstance(got, np.generic)
    assert_near_peer(got, expected, dtype, TORCH_TOL[dtype])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("ignore_index", [None, -100, 2])  # None: the default (-100)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_cross_entropy_class_indices(
    torch, reduction, weighted, ignore_index, label_smoothing, shape, dtype, rng
):
    x = logits(rng, shape, dtype)
    w = class_weight(rng, C, weighted, dtype)
    t = class_targets(rng, shape[:-1], C, -100 if ignore_index is None else ignore_index)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    expected = torch_cross_entropy(torch, x, t, w, **kwargs)
    dtypes = _target_dtypes(t)
    assert len(dtypes) >= 4  # the signed ones at least; all 8 when no label is negative
    for target_dtype in dtypes:
        got = xent.cross_entropy(x, t.astype(target_dtype), weight=w, **kwargs)
        _check_loss(got, expected, dtype, reduction, shape[:-1])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("normalised", [True, False])
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_cross_entropy_probabilities(
    torch, reduction, weighted, label_smoothing, normalised, shape, dtype, rng
):
    x = logits(rng, shape, dtype)
    w = class_weight(rng, C, weighted, dtype)
    p = prob_targets(rng, shape, normalised, dtype)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    expected = torch_cross_entropy(torch, x, p, w, **kwargs)
    got = xent.cross_entropy(x, p, weight=w, **kwargs)
    _check_loss(got, expected, dtype, reduction, shape[:-1])
    # Like torch, a negative ignore_index is accepted and unused with probabilities, and a
    # non-negative one is refused.
    got = xent.cross_entropy(x, p, weight=w, ignore_index=-1, **kwargs)
    _check_loss(got, expected, dtype, reduction, shape[:-1])
    unused_index = torch_cross_entropy(torch, x, p, w, ignore_index=-1, **kwargs)
    assert float(unused_index.sum()) == pytest.approx(float(np.sum(expected)))
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        torch_cross_entropy(torch, x, p, w, ignore_index=1, **kwargs)
    with pytest.raises(ValueError, match="ignore_index=1 is not supported with probability"):
        xent.cross_entropy(x, p, weight=w, ignore_index=1, **kwargs)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("ignore_index", [None, -100, 2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_nll_loss(torch, reduction, weighted, ignore_index, shape, dtype, rng):
    lp = scipy.special.log_softmax(logits(rng, shape, F64), axis=-1).astype(dtype)
    w = class_weight(rng, C, weighted, dtype)
    t = class_targets(rng, shape[:-1], C, -100 if ignore_index is None else ignore_index)
    kwargs = dict(reduction=reduction)
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    expected = torch_nll_loss(torch, lp, t, w, **kwargs)
    for target_dtype in _target_dtypes(t):
        got = xent.nll_loss(lp, t.astype(target_dtype), weight=w, **kwargs)
        _check_loss(got, expected, dtype, reduction, shape[:-1])


@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_all_rows_ignored(torch, reduction, weighted, label_smoothing, dtype, rng):
    x = logits(rng, (2, 3, C), dtype)
    w = class_weight(rng, C, weighted, dtype)
    for t, extra in [(np.full((2, 3), -100), {}), (np.full((2, 3), 4), {"ignore_index": 4})]:
        ce = xent.cross_entropy(
            x, t, weight=w, reduction=reduction, label_smoothing=label_smoothing, **extra
        )
        _check_loss(
            ce,
            torch_cross_entropy(
                torch, x, t, w, reduction=reduction, label_smoothing=label_smoothing, **extra
            ),
            dtype,
            reduction,
            (2, 3),
        )
        nll = xent.nll_loss(x, t, weight=w, reduction=reduction, **extra)
        _check_loss(
            nll,
            torch_nll_loss(torch, x, t, w, reduction=reduction, **extra),
            dtype,
            reduction,
            (2, 3),
        )
        if reduction == "mean":
            assert np.isnan(ce) and np.isnan(nll)


def test_torch_many_rows_and_classes(torch, dtype, rng):
    """Larger inputs: reductions over many rows, rows over many chunks."""
    for shape in [(20_000, 8), (16, 3000)]:
        n, c = shape
        x = (rng.standard_normal(shape) * 3.0).astype(dtype)
        t = rng.integers(0, c, size=n)
        t[::5] = -100
        w = rng.uniform(0.2, 2.0, size=c).astype(dtype)
        p = rng.dirichlet(np.ones(c), size=n).astype(dtype)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        for reduction, eps in itertools.product(REDUCTIONS, SMOOTHINGS):
            kw = dict(reduction=reduction, label_smoothing=eps)
            expected = torch.nn.functional.cross_entropy(
                xt, torch.from_numpy(t), weight=wt, **kw
            ).numpy()
            _check_loss(xent.cross_entropy(x, t, weight=w, **kw), expected, dtype, reduction, (n,))
            expected = torch.nn.functional.cross_entropy(
                xt, torch.from_numpy(p), weight=wt, **kw
            ).numpy()
            _check_loss(xent.cross_entropy(x, p, weight=w, **kw), expected, dtype, reduction, (n,))


@pytest.mark.parametrize("shape", [(7,), (5, 9), (3, 4, 6), (2, 3, 4, 5), (8, 2000)], ids=str)
def test_torch_logsumexp_log_softmax_softmax(torch, shape, dtype, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    xt = torch.from_numpy(x)
    for axis in range(-x.ndim, x.ndim):
        for keepdims in (False, True):
            expected = torch.logsumexp(xt, dim=axis, keepdim=keepdims).numpy()
            assert_near_peer(
                xent.logsumexp(x, axis=axis, keepdims=keepdims), expected, dtype, TORCH_TOL[dtype]
            )
        assert_near_peer(
            xent.log_softmax(x, axis=axis),
            torch.log_softmax(xt, dim=axis).numpy(),
            dtype,
            TORCH_TOL[dtype],
        )
        assert_near_peer(
            xent.softmax(x, axis=axis),
            torch.softmax(xt, dim=axis).numpy(),
            dtype,
            (TORCH_TOL[dtype][0], 1e-37 if dtype == F32 else 1e-300),
        )
