"""Every public function of xent against its float64 NumPy twin in :mod:`xent.reference`.

The reference is evaluated in float64 on the very same values xent is given (float32 and
float16 inputs upcast exactly), and its result is rounded to the dtype of xent's result before
the comparison, so infinities that appear by overflow of that rounding appear on both sides.

Tolerances (rtol, atol), and why
--------------------------------
The kernels form every result in double from the given values; the only arithmetic in the
input precision is the vectorised exp (about 1 ulp) and the vector-lane partial sums of
``exp(x - max)`` over a chunk of 4 KiB of the row. So ``log(sum)`` -- and with it logsumexp,
every log_softmax entry and every ``-log_softmax`` term of a loss -- carries an *absolute*
error of a few ulps of 1 in the input precision, plus the final rounding to the output dtype,
which is *relative* (half an ulp).

* float32: rtol = atol = 2e-6. Measured over C = 2 .. 100 000, logits of scale 1 .. 100 and
  the three ISA variants: absolute error <= 3.6e-7 where the result is below 1 in magnitude
  (where logsumexp cancels to ~1e-3 that is up to ~440 float32 ulps *relative*, which is why
  atol is needed), relative error <= 2.1e-7 elsewhere (one rounding of the reference plus one
  of xent plus the log(sum) error). 2e-6 leaves a margin of 5-10x.
* float64: rtol = atol = 1e-12 by the same argument (measured <= 1.5e-15 absolute below 1,
  <= 6.3e-16 relative elsewhere; softmax <= 5.7e-14 relative, see below).
* softmax is ``exp`` of the log-probability *rounded to the input precision* (the exp runs in
  that precision), so it also has a relative error of ``|log p| * 2**-24`` (float32) from
  rounding exp's argument: up to 87.3 * 2**-24 = 5.2e-6 for the smallest normal float32
  probability (measured 3.9e-6, and <= 3.6e-7 once that term is taken off). That term is added
  to the bound element by element (``softmax_atol``), so large probabilities are still held to
  2e-6. (float64: ``|log p| * 2**-52``, as the reference's own exp argument is rounded to
  double as well; it stays below 1e-12 anyway.) The kernels flush probabilities below the
  smallest normal number to 0 where the reference has a subnormal, hence atol = 1e-37
  (float32) and 1e-300 (float64) for softmax instead of 2e-6 / 1e-12.
* Losses are ``sum_j c_j * nll_j`` with coefficients c_j >= 0 (``(1 - eps) w_t`` and
  ``eps/C w_j``, or ``w_j q_j``), and each ``nll_j`` carries the absolute log(sum) error
  above, so a row's atol is the dtype's atol times ``sum_j c_j`` (``loss_scale``); a sum or
  mean gets the sum (or mean) of those.
* nll_loss does one double multiplication per row (``-w_t * x_t``), rounded once: rtol only.
  Its sum / mean add terms of either sign in another order than ``np.sum`` (blocks of rows vs
  pairwise), so where they cancel the error is relative to the inputs' magnitude, not to the
  result: atol = 1e-12 * sum_i |w_t x_t| (this is also what makes 1e30 / 1e300 logits, whose
  scale is rounded away in such a cancelling sum, comparable).
* float16 is computed in float32 and rounded once to float16, the reference once from
  float64: the two roundings may land one float16 ulp apart (<= 2**-10 relative): rtol 1e-3,
  atol 1e-7 (the float16 subnormal spacing is 6e-8).

Every comparison involving the kernels runs under every ISA variant this CPU supports
(fixture ``isa``).
"""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import xent
from xent import reference as ref

from support import (
    F16,
    F32,
    F64,
    FLOAT_DTYPES,
    INT_DTYPES,
    LAYOUTS,
    REDUCTIONS,
    SMOOTHINGS,
    assert_close,
    assert_unchanged,
    hypothesis_settings,
    relayout,
    snapshot,
)

INF, NAN = math.inf, math.nan

#: Huge but finite logits, exactly representable in their dtype.
BIG = {F16: float(np.float16(6e4)), F32: float(np.float32(1e30)), F64: 1e300}
#: (rtol, atol): see the module docstring.
TOL = {F16: (1e-3, 1e-7), F32: (2e-6, 2e-6), F64: (1e-12, 1e-12)}
#: Unit roundoff of exp's argument in softmax, and softmax's atol (flushed subnormals).
HALF_ULP = {F16: 2.0**-24, F32: 2.0**-24, F64: 2.0**-52}  # float16 computes in float32
SOFTMAX_FLOOR = {F16: 1e-7, F32: 1e-37, F64: 1e-300}
#: nll_loss sums: relative to sum |terms| (double accumulation in another order).
SUM_RTOL = 1e-12

HYPOTHESIS = hypothesis_settings(30)


# ---- comparison helpers -----------------------------------------------------------------------


def softmax_atol(x64, axis, dtype):
    """Per-element atol of softmax: the floor plus |p| * |log p| * (unit roundoff)."""
    with np.errstate(all="ignore"):
        log_p = ref.log_softmax(x64, axis=axis)
        extra = np.nan_to_num(np.exp(log_p) * np.abs(log_p) * HALF_ULP[dtype], nan=0.0, posinf=0.0)
    return SOFTMAX_FLOOR[dtype] + extra


def loss_scale(shape, target, weight, ignore_index, eps, probabilities):
    """Per row, ``sum_j c_j`` of the loss ``sum_j c_j * nll_j``; and the mean's denominator."""
    n_classes = shape[-1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    if probabilities:
        q = np.asarray(target, dtype=np.float64) * (1.0 - eps) + eps / n_classes
        scale = np.sum(w * np.abs(q), axis=-1)
        return scale, scale.size
    t = np.asarray(target).astype(np.int64)
    ignored = t == ignore_index
    safe = np.where(ignored, 0, t)
    scale = np.where(ignored, 0.0, (1.0 - eps) * w[safe] + eps / n_classes * w.sum())
    return scale, float(np.sum(np.where(ignored, 0.0, w[safe])))


def check_loss(got, expected, dtype, reduction, batch_shape, row_atol, denominator, rtol=None):
    """A loss: per-row atol ``row_atol``, summed (and divided) for the reductions."""
    rtol = TOL[dtype][0] if rtol is None else rtol
    row_atol = np.asarray(row_atol, dtype=np.float64)
    if reduction == "none":
        assert isinstance(got, np.ndarray) and got.shape == batch_shape
        assert_close(got, expected, dtype, rtol, row_atol)
        return
    assert isinstance(got, np.generic) and got.dtype == dtype, type(got)
    total = float(np.sum(row_atol))
    if reduction == "mean":
        total = total / denominator if denominator else 0.0  # then the reference is NaN
    assert_close(got, expected, dtype, rtol, total)


def ce_check(got, x, target, dtype, kwargs, weight=None):
    """cross_entropy's result against the reference with the loss_scale tolerance."""
    expected = ref.cross_entropy(np.asarray(x, dtype=np.float64), target, weight=weight, **kwargs)
    probabilities = np.asarray(target).dtype.kind == "f"
    eps = kwargs.get("label_smoothing", 0.0)
    scale, denominator = loss_scale(
        x.shape, target, weight, kwargs.get("ignore_index", -100), eps, probabilities
    )
    # A smoothed or probability-target loss sums C terms: however they are added (vector
    # lanes or one by one, as a build without vectorisation does), the rounding of a sum of
    # C terms stays within C unit roundoffs of its size (Higham's bound).
    rtol = TOL[dtype][0]
    if dtype == F64 and (eps or probabilities):
        rtol = max(rtol, x.shape[-1] * HALF_ULP[F64])
    check_loss(
        got,
        expected,
        dtype,
        kwargs.get("reduction", "mean"),
        x.shape[:-1],
        TOL[dtype][1] * scale,
        denominator,
        rtol=rtol,
    )


def nll_check(got, x, target, dtype, kwargs, weight=None):
    """nll_loss's result against the reference: rtol per row, SUM_RTOL * sum |terms| summed."""
    x64 = np.asarray(x, dtype=np.float64)
    expected = ref.nll_loss(x64, target, weight=weight, **kwargs)
    terms = np.abs(
        ref.nll_loss(
            x64,
            target,
            weight=weight,
            ignore_index=kwargs.get("ignore_index", -100),
            reduction="none",
        )
    )
    terms = np.where(np.isfinite(terms), terms, 0.0)
    _, denominator = loss_scale(
        x.shape, target, weight, kwargs.get("ignore_index", -100), 0.0, False
    )
    reduction = kwargs.get("reduction", "mean")
    with np.errstate(over="ignore"):
        overflow = not np.isfinite(terms.sum())
    if reduction != "none" and overflow:
        # the finite terms alone overflow float64: inf or NaN then depends on the order of the
        # sum (rows of 1.8e308 and one inf: the reference's pairwise sum meets -inf + inf,
        # xent's row order does not), but a finite total would be wrong
        assert not np.isfinite(got), got
        return
    check_loss(
        got,
        expected,
        dtype,
        reduction,
        x.shape[:-1],
        0.0 if reduction == "none" else SUM_RTOL * terms,
        denominator,
    )


# ---- layouts --------------------------------------------------------------------------------


def test_relayout_keeps_values():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    for kind in LAYOUTS:
        for arr in (a, a[0, 0], a[0]):
            b = relayout(arr, kind)
            np.testing.assert_array_equal(b, arr)
            assert b.dtype == arr.dtype or kind == "byteswapped"
            assert b.shape == arr.shape
    assert relayout(a, "col_slice").strides[1] != 4 * a.itemsize
    assert relayout(a, "neg_rows").strides[0] < 0 and relayout(a, "neg_cols").strides[-1] < 0


# ---- strategies -----------------------------------------------------------------------------


def finite_floats(dtype, bound=200.0):
    return st.floats(-bound, bound, width=8 * dtype.itemsize, allow_nan=False, allow_infinity=False)


def special_floats(dtype):
    big, top = BIG[dtype], float(np.finfo(dtype).max)
    return st.sampled_from([INF, -INF, NAN, big, -big, top, -top, 0.0, -0.0])


@st.composite
def float_arrays(draw, dtype, shape, hostile):
    """Values in [-200, 200]; if ``hostile``, also +-inf, NaN, +-BIG, +-max, whole rows of
    one special value (all -inf, all +inf, all NaN, all BIG)."""
    fin = finite_floats(dtype)
    elements = st.one_of(fin, fin, fin, special_floats(dtype)) if hostile else fin
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    if hostile and x.size:
        rows = x.reshape(-1, x.shape[-1])
        fills = st.sampled_from([-INF, INF, NAN, BIG[dtype]])
        for i, v in draw(st.lists(st.tuples(st.integers(0, rows.shape[0] - 1), fills), max_size=2)):
            rows[i] = v
    return x


@st.composite
def batch_shapes(draw, max_dims=2, max_side=5):
    ndim = draw(st.integers(0, max_dims))
    return tuple(draw(st.lists(st.integers(0, max_side), min_size=ndim, max_size=ndim)))


@st.composite
def axis_arrays(draw, dtype, min_classes=0, max_classes=40):
    """(x, axis): an array of 1-3 dims whose class axis (length 0 .. 40) is ``axis``, in any
    layout; ``axis`` negative or not."""
    batch = draw(batch_shapes())
    n_classes = draw(st.integers(min_classes, max_classes))
    x = draw(float_arrays(dtype, batch + (n_classes,), draw(st.booleans())))
    position = draw(st.integers(0, len(batch)))
    x = relayout(np.moveaxis(x, -1, position), draw(st.sampled_from(LAYOUTS)))
    axis = position - x.ndim if draw(st.booleans()) else position
    return x, axis


@st.composite
def logits_arrays(draw, dtype, max_classes=12, hostile=None):
    """Logits (..., C): 0-2 batch axes (so 1-d input too), C in 1 .. max_classes."""
    batch = draw(batch_shapes())
    n_classes = draw(st.integers(1, max_classes))
    if hostile is None:
        hostile = draw(st.booleans())
    x = draw(float_arrays(dtype, batch + (n_classes,), hostile))
    return relayout(x, draw(st.sampled_from(LAYOUTS)))


@st.composite
def weights(draw, n_classes):
    """None, or positive per-class weights of float32/float64/int dtype, in any layout."""
    kind = draw(st.sampled_from([None, F64, F32, np.dtype(np.int64)]))
    if kind is None:
        return None
    elements = (
        st.integers(1, 5) if kind.kind == "i" else st.floats(0.25, 4.0, width=8 * kind.itemsize)
    )
    w = draw(hnp.arrays(kind, (n_classes,), elements=elements))
    return relayout(
        w, draw(st.sampled_from(["c", "row_step", "neg_rows", "byteswapped", "readonly"]))
    )


@st.composite
def class_targets(draw, batch, n_classes):
    """(target, kwargs): integer class indices of any dtype, some rows ignored (by the default
    -100 where the dtype holds it, or by ignore_index equal to a valid class)."""
    dtype = draw(st.sampled_from(INT_DTYPES))
    t = draw(hnp.arrays(dtype, batch, elements=st.integers(0, n_classes - 1)))
    mode = draw(st.sampled_from(["default", "explicit", "class"]))
    kwargs = {}
    ignore = -100
    if mode == "class":
        ignore = draw(st.integers(0, n_classes - 1))
        kwargs["ignore_index"] = ignore
    elif mode == "explicit":
        kwargs["ignore_index"] = -100
    if dtype.kind == "i" or mode == "class":
        mask = draw(hnp.arrays(np.bool_, batch))
        t = np.where(mask, ignore, t).astype(dtype)
    layout = draw(st.sampled_from(["c", "row_step", "neg_rows", "byteswapped", "readonly"]))
    return relayout(t, layout), kwargs


@st.composite
def probability_targets(draw, shape):
    """Floating targets (float32 or float64) of ``shape``: exact zeros, values in [2**-20, 3],
    rows normalised or not.

    Values below 2**-20 are left out on purpose: a float64 target is rounded to float32 for
    float32 logits, see test_tiny_float64_probability_is_not_rounded_away.
    """
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    p = draw(
        hnp.arrays(
            dtype,
            shape,
            elements=st.one_of(st.just(0.0), st.floats(2.0**-20, 3.0, width=8 * dtype.itemsize)),
        )
    )
    if draw(st.booleans()):
        sums = p.sum(axis=-1, keepdims=True)
        p = np.where(sums > 0, p / np.where(sums > 0, sums, 1), p).astype(dtype)
    return relayout(p, draw(st.sampled_from(LAYOUTS)))


threads = st.sampled_from([None, 1, 2])


# ---- logsumexp, log_softmax, softmax ----------------------------------------------------------


@HYPOTHESIS
@given(data=st.data())
def test_logsumexp(isa, dtype, data):
    x, axis = data.draw(axis_arrays(dtype))
    keepdims = data.draw(st.booleans())
    before = snapshot(x)
    got = xent.logsumexp(x, axis=axis, keepdims=keepdims, num_threads=data.draw(threads))
    assert_unchanged([x], before)
    expected = ref.logsumexp(x.astype(F64), axis=axis, keepdims=keepdims)
    if np.ndim(expected) == 0:
        assert isinstance(got, np.generic)
    assert_close(got, expected, dtype, *TOL[dtype])


@HYPOTHESIS
@given(data=st.data())
def test_log_softmax(isa, dtype, data):
    x, axis = data.draw(axis_arrays(dtype))
    before = snapshot(x)
    got = xent.log_softmax(x, axis=axis, num_threads=data.draw(threads))
    assert_unchanged([x], before)
    assert isinstance(got, np.ndarray)
    assert_close(got, ref.log_softmax(x.astype(F64), axis=axis), dtype, *TOL[dtype])


@HYPOTHESIS
@given(data=st.data())
def test_softmax(isa, dtype, data):
    x, axis = data.draw(axis_arrays(dtype))
    before = snapshot(x)
    got = xent.softmax(x, axis=axis, num_threads=data.draw(threads))
    assert_unchanged([x], before)
    x64 = x.astype(F64)
    assert_close(
        got, ref.softmax(x64, axis=axis), dtype, TOL[dtype][0], softmax_atol(x64, axis, dtype)
    )


# ---- cross_entropy, nll_loss ------------------------------------------------------------------


@HYPOTHESIS
@given(data=st.data())
def test_cross_entropy_class_indices(isa, dtype, data):
    x = data.draw(logits_arrays(dtype))
    n_classes, batch = x.shape[-1], x.shape[:-1]
    t, kwargs = data.draw(class_targets(batch, n_classes))
    w = data.draw(weights(n_classes))
    kwargs["reduction"] = data.draw(st.sampled_from(REDUCTIONS))
    kwargs["label_smoothing"] = data.draw(st.sampled_from(SMOOTHINGS))
    before = snapshot(x, t, w)
    got = xent.cross_entropy(x, t, weight=w, num_threads=data.draw(threads), **kwargs)
    assert_unchanged([x, t, w], before)
    ce_check(got, x, t, dtype, kwargs, weight=w)


@HYPOTHESIS
@given(data=st.data())
def test_cross_entropy_probabilities(isa, dtype, data):
    x = data.draw(logits_arrays(dtype))
    p = data.draw(probability_targets(x.shape))
    w = data.draw(weights(x.shape[-1]))
    kwargs = dict(
        reduction=data.draw(st.sampled_from(REDUCTIONS)),
        label_smoothing=data.draw(st.sampled_from(SMOOTHINGS)),
    )
    if data.draw(st.booleans()):
        kwargs["ignore_index"] = -5  # negative: allowed, and unused with probabilities
    before = snapshot(x, p, w)
    got = xent.cross_entropy(x, p, weight=w, num_threads=data.draw(threads), **kwargs)
    assert_unchanged([x, p, w], before)
    ce_check(got, x, p, dtype, kwargs, weight=w)


@HYPOTHESIS
@given(data=st.data())
def test_nll_loss(isa, dtype, data):
    x = data.draw(logits_arrays(dtype))
    t, kwargs = data.draw(class_targets(x.shape[:-1], x.shape[-1]))
    w = data.draw(weights(x.shape[-1]))
    kwargs["reduction"] = data.draw(st.sampled_from(REDUCTIONS))
    before = snapshot(x, t, w)
    got = xent.nll_loss(x, t, weight=w, num_threads=data.draw(threads), **kwargs)
    assert_unchanged([x, t, w], before)
    nll_check(got, x, t, dtype, kwargs, weight=w)


# ---- explicit cases ---------------------------------------------------------------------------


def _special_rows(dtype):
    big, top = BIG[dtype], float(np.finfo(dtype).max)
    return [
        [INF, 1.0],
        [1.0, INF],
        [INF, INF],
        [-INF, -INF],
        [-INF, 0.0, -INF],
        [NAN, 1.0],
        [INF, NAN],
        [NAN, -INF],
        [NAN, NAN],
        [INF, -INF, 2.0],
        [big, -big],
        [big, big, 0.0],
        [-big, -big],
        [top, top],
        [top, -top],
        [-top, -top, -top],
        [big, 1.0, -INF],
        [0.0],
        [INF],
        [-INF],
        [NAN],
        [big],
        [-1e-30, 0.0, -0.0],
    ]


def test_special_rows(isa, dtype):
    """Hostile rows one at a time (1-d input), every function and option."""
    for row in _special_rows(dtype):
        x = np.array(row, dtype=dtype)
        x64 = x.astype(F64)
        c = x.size
        assert_close(xent.logsumexp(x), ref.logsumexp(x64), dtype, *TOL[dtype])
        assert_close(xent.log_softmax(x), ref.log_softmax(x64), dtype, *TOL[dtype])
        assert_close(
            xent.softmax(x), ref.softmax(x64), dtype, TOL[dtype][0], softmax_atol(x64, -1, dtype)
        )
        w = np.linspace(0.5, 2.0, c)
        p = np.linspace(0.0, 1.0, c).astype(dtype)  # p[0] == 0
        for eps in SMOOTHINGS:
            for weight in (None, w):
                for t in range(c):
                    kwargs = dict(reduction="none", label_smoothing=eps)
                    got = xent.cross_entropy(x, np.array(t), weight=weight, **kwargs)
                    ce_check(got, x, np.array(t), dtype, kwargs, weight=weight)
                got = xent.cross_entropy(x, p, weight=weight, reduction="sum", label_smoothing=eps)
                ce_check(got, x, p, dtype, dict(reduction="sum", label_smoothing=eps), weight)
        for t in range(c):
            got = xent.nll_loss(x, np.array(t, dtype=np.uint8), reduction="none")
            nll_check(got, x, np.array(t, dtype=np.uint8), dtype, dict(reduction="none"))


def _big_rows(dtype, n_classes, rng):
    """A few rows of n_classes logits with hostile values placed in different chunks."""
    c = n_classes
    rows = (rng.standard_normal((9, c)) * 10).astype(dtype)
    rows[1, -1] = INF  # +inf in the last chunk
    rows[2, c // 2] = NAN  # NaN in a middle chunk
    rows[3] = -INF  # all -inf
    rows[4] = -INF
    rows[4, -1] = 3.0  # one finite entry, at the end
    rows[5] = np.linspace(-300, 80, c)  # max grows chunk after chunk: rescaling
    rows[6] = np.linspace(80, -300, c)
    rows[7, ::7] = BIG[dtype]  # huge values, spread
    rows[7, 3::7] = -BIG[dtype]
    rows[8, : c // 2] = -INF  # first chunks all -inf, the rest finite
    return rows


BIG_CLASSES = [513, 1024, 1025, 4099, 100_000]  # chunk boundaries: 512 doubles, 1024 floats


@pytest.mark.parametrize("n_classes", BIG_CLASSES)
def test_many_classes(isa, dtype, n_classes):
    rng = np.random.default_rng(n_classes)
    x = _big_rows(dtype, n_classes, rng)
    x64 = x.astype(F64)
    n = x.shape[0]
    assert_close(xent.logsumexp(x), ref.logsumexp(x64), dtype, *TOL[dtype])
    assert_close(xent.log_softmax(x), ref.log_softmax(x64), dtype, *TOL[dtype])
    assert_close(
        xent.softmax(x), ref.softmax(x64), dtype, TOL[dtype][0], softmax_atol(x64, -1, dtype)
    )
    # A transposed copy: logsumexp along axis 0 of (C, n).
    assert_close(
        xent.logsumexp(np.ascontiguousarray(x.T), axis=0), ref.logsumexp(x64), dtype, *TOL[dtype]
    )
    t = rng.integers(0, n_classes, size=n)
    t[0] = -100
    w = rng.uniform(0.5, 2.0, size=n_classes)
    p = rng.uniform(size=x.shape).astype(dtype)
    p[:, ::5] = 0.0
    for eps in SMOOTHINGS:
        for weight in (None, w):
            for reduction in REDUCTIONS:
                kwargs = dict(reduction=reduction, label_smoothing=eps)
                ce_check(
                    xent.cross_entropy(x, t, weight=weight, **kwargs), x, t, dtype, kwargs, weight
                )
                ce_check(
                    xent.cross_entropy(x, p, weight=weight, **kwargs), x, p, dtype, kwargs, weight
                )
    for reduction in REDUCTIONS:
        nll_check(
            xent.nll_loss(x, t, weight=w, reduction=reduction),
            x,
            t,
            dtype,
            dict(reduction=reduction),
            w,
        )


def test_finite_scales_many_rows(isa, dtype):
    """Random finite logits of several scales and shapes (rows spread over many blocks)."""
    rng = np.random.default_rng(1)
    for shape, scale in [
        ((4000, 7), 10.0),
        ((300, 300), 30.0),
        ((6, 2, 3000), 1.0),
        ((20, 50), 1e3),
    ]:
        x = (rng.standard_normal(shape) * scale).astype(dtype)
        x64 = x.astype(F64)
        assert_close(xent.logsumexp(x), ref.logsumexp(x64), dtype, *TOL[dtype])
        assert_close(xent.log_softmax(x), ref.log_softmax(x64), dtype, *TOL[dtype])
        assert_close(
            xent.softmax(x), ref.softmax(x64), dtype, TOL[dtype][0], softmax_atol(x64, -1, dtype)
        )
        t = rng.integers(0, shape[-1], size=shape[:-1])
        for eps in SMOOTHINGS:
            kwargs = dict(reduction="mean", label_smoothing=eps)
            ce_check(xent.cross_entropy(x, t, **kwargs), x, t, dtype, kwargs)


def test_huge_logits_many_rows(isa, dtype):
    """Logits up to +-1e30 (float32) / +-1e300 (float64) mixed with ordinary rows.

    nll_loss's sum of such values of either sign cancels, so it is compared relative to the
    magnitude of its terms (SUM_RTOL * sum |terms|, see the module docstring).
    """
    rng = np.random.default_rng(12)
    n, c = 5000, 4
    x = (rng.uniform(-1.0, 1.0, (n, c)) * BIG[dtype]).astype(dtype)
    x[::3] = rng.standard_normal((len(x[::3]), c))
    x64 = x.astype(F64)
    assert_close(xent.logsumexp(x), ref.logsumexp(x64), dtype, *TOL[dtype])
    assert_close(xent.log_softmax(x), ref.log_softmax(x64), dtype, *TOL[dtype])
    assert_close(
        xent.softmax(x), ref.softmax(x64), dtype, TOL[dtype][0], softmax_atol(x64, -1, dtype)
    )
    t = rng.integers(0, c, size=n)
    t[::11] = -100
    w = rng.uniform(0.5, 2.0, size=c)
    for reduction in REDUCTIONS:
        nll_check(
            xent.nll_loss(x, t, weight=w, reduction=reduction),
            x,
            t,
            dtype,
            dict(reduction=reduction),
            w,
        )
        for eps in SMOOTHINGS:
            kwargs = dict(reduction=reduction, label_smoothing=eps)
            ce_check(xent.cross_entropy(x, t, weight=w, **kwargs), x, t, dtype, kwargs, w)


@pytest.mark.parametrize("shape", [(0, 5), (3, 0, 5), (5,), (1, 1), (4, 1), (2, 3, 1)], ids=str)
def test_edge_shapes(isa, dtype, shape):
    """No rows, one row, one class."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    x64 = x.astype(F64)
    for axis in range(-x.ndim, x.ndim):
        for keepdims in (False, True):
            assert_close(
                xent.logsumexp(x, axis=axis, keepdims=keepdims),
                ref.logsumexp(x64, axis=axis, keepdims=keepdims),
                dtype,
                *TOL[dtype],
            )
        assert_close(
            xent.log_softmax(x, axis=axis), ref.log_softmax(x64, axis=axis), dtype, *TOL[dtype]
        )
        assert_close(
            xent.softmax(x, axis=axis),
            ref.softmax(x64, axis=axis),
            dtype,
            TOL[dtype][0],
            softmax_atol(x64, axis, dtype),
        )
    t = rng.integers(0, shape[-1], size=shape[:-1])
    p = rng.uniform(size=shape)
    for reduction in REDUCTIONS:
        for eps in SMOOTHINGS:
            kwargs = dict(reduction=reduction, label_smoothing=eps)
            ce_check(xent.cross_entropy(x, t, **kwargs), x, t, dtype, kwargs)
            ce_check(xent.cross_entropy(x, p, **kwargs), x, p, dtype, kwargs)
        nll_check(xent.nll_loss(x, t, reduction=reduction), x, t, dtype, dict(reduction=reduction))


def test_empty_class_axis(dtype):
    """An empty class axis: logsumexp is -inf, log_softmax/softmax are empty."""
    x = np.zeros((3, 0), dtype=dtype)
    for keepdims in (False, True):
        assert_close(
            xent.logsumexp(x, keepdims=keepdims),
            ref.logsumexp(x.astype(F64), keepdims=keepdims),
            dtype,
            *TOL[dtype],
        )
    assert_close(
        xent.logsumexp(np.zeros((0, 4), dtype), axis=0),
        ref.logsumexp(np.zeros((0, 4)), axis=0),
        dtype,
        *TOL[dtype],
    )
    assert xent.log_softmax(x).shape == (3, 0) and xent.softmax(x).dtype == dtype


@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_rows_ignored(dtype, reduction, weighted, label_smoothing):
    """Every row ignored: mean is NaN, sum 0, per-row losses all 0."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=4) if weighted else None
    cases = [
        (np.full((2, 3), -100, dtype=np.int8), {}),
        (np.full((2, 3), 2, dtype=np.uint16), {"ignore_index": 2}),
    ]
    for t, extra in cases:
        kwargs = dict(reduction=reduction, label_smoothing=label_smoothing, **extra)
        ce = xent.cross_entropy(x, t, weight=w, **kwargs)
        ce_check(ce, x, t, dtype, kwargs, w)
        nll = xent.nll_loss(x, t, weight=w, reduction=reduction, **extra)
        nll_check(nll, x, t, dtype, dict(reduction=reduction, **extra), w)
        for got in (ce, nll):
            if reduction == "mean":
                assert np.isnan(got)
            elif reduction == "sum":
                assert got == 0
            else:
                np.testing.assert_array_equal(got, np.zeros((2, 3)))


@pytest.mark.parametrize("target_dtype", INT_DTYPES, ids=str)
def test_every_integer_target_dtype(target_dtype):
    """Class indices of every integer dtype give the same losses (and the reference's)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 6)).astype(np.float32)
    t64 = rng.integers(0, 6, size=(3, 5))
    t = t64.astype(target_dtype)
    w = rng.uniform(0.5, 2.0, size=6)
    for reduction in REDUCTIONS:
        for eps in SMOOTHINGS:
            kwargs = dict(reduction=reduction, label_smoothing=eps, ignore_index=4)
            got = xent.cross_entropy(x, t, weight=w, **kwargs)
            ce_check(got, x, t, F32, kwargs, w)
            np.testing.assert_array_equal(got, xent.cross_entropy(x, t64, weight=w, **kwargs))
        got = xent.nll_loss(x, t, weight=w, reduction=reduction)
        nll_check(got, x, t, F32, dict(reduction=reduction), w)
        np.testing.assert_array_equal(got, xent.nll_loss(x, t64, weight=w, reduction=reduction))


@pytest.mark.parametrize("bad", [-1, 5, -100, 127])
def test_out_of_range_label_raises_index_error(bad):
    """Like the reference, a label outside [0, C) that is not ignore_index is an IndexError."""
    x = np.zeros((4, 5), dtype=np.float32)
    t = np.array([0, 1, bad, 2], dtype=np.int8)
    for call in (
        lambda: xent.cross_entropy(x, t, ignore_index=3),
        lambda: xent.nll_loss(x, t, ignore_index=3),
        lambda: xent.cross_entropy(x, t, ignore_index=3, label_smoothing=1.0, reduction="none"),
    ):
        with pytest.raises(IndexError):
            call()
    with pytest.raises(IndexError):
        ref.cross_entropy(x, t, ignore_index=3)


def test_huge_unsigned_label_raises_index_error():
    x = np.zeros((2, 3))
    t = np.array([1, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(IndexError):
        xent.cross_entropy(x, t)
    with pytest.raises(IndexError):
        xent.nll_loss(x, t)


def test_tiny_float64_probability_is_not_rounded_away():
    """A float64 probability target that is tiny but not 0 still counts against a -inf logit.

    xent rounds a float64 target to float32 for float32 logits, so 1e-50 becomes exactly 0
    and is then left out ("a probability of exactly 0 contributes 0"); the reference, given
    the same values, counts it: 1e-50 * inf = inf.
    """
    x = np.array([[0.0, -np.inf, 1.0]], dtype=np.float32)
    p = np.array([[0.5, 1e-50, 0.5]], dtype=np.float64)
    expected = ref.cross_entropy(x.astype(F64), p, reduction="none")
    assert expected[0] == INF
    ce_check(xent.cross_entropy(x, p, reduction="none"), x, p, F32, dict(reduction="none"))


# ---- memory layouts, read-only arrays, memory maps --------------------------------------------


def test_memmaps_and_read_only(isa, dtype, tmp_path):
    rng = np.random.default_rng(5)
    arrays = {
        "x": (rng.standard_normal((6, 4, 9)) * 5).astype(dtype),
        "t": rng.integers(0, 9, size=(6, 4)).astype(np.int16),
        "p": rng.uniform(size=(6, 4, 9)).astype(dtype),
        "w": rng.uniform(0.5, 2.0, size=9),
    }
    arrays["t"][0, 0] = -100
    maps = {}
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
        maps[name] = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
        assert isinstance(maps[name], np.memmap) and not maps[name].flags.writeable
    x, t, p, w = maps["x"], maps["t"], maps["p"], maps["w"]
    x64 = arrays["x"].astype(F64)
    for axis in (-1, 0, 1):
        assert_close(
            xent.logsumexp(x, axis=axis), ref.logsumexp(x64, axis=axis), dtype, *TOL[dtype]
        )
        assert_close(
            xent.log_softmax(x, axis=axis), ref.log_softmax(x64, axis=axis), dtype, *TOL[dtype]
        )
        assert_close(
            xent.softmax(x, axis=axis),
            ref.softmax(x64, axis=axis),
            dtype,
            TOL[dtype][0],
            softmax_atol(x64, axis, dtype),
        )
    # Slices of memory maps: rows with a stride, columns cut off.
    for view in (x[::2], x[:, :, 1:-1], x[::-1]):
        assert_close(
            xent.log_softmax(view), ref.log_softmax(np.asarray(view, F64)), dtype, *TOL[dtype]
        )
    for reduction in REDUCTIONS:
        for eps in SMOOTHINGS:
            kwargs = dict(reduction=reduction, label_smoothing=eps)
            ce_check(
                xent.cross_entropy(x, t, weight=w, **kwargs),
                x,
                np.asarray(t),
                dtype,
                kwargs,
                np.asarray(w),
            )
            ce_check(
                xent.cross_entropy(x, p, weight=w, **kwargs),
                x,
                np.asarray(p),
                dtype,
                kwargs,
                np.asarray(w),
            )
        nll_check(
            xent.nll_loss(x, t, weight=w, reduction=reduction),
            x,
            np.asarray(t),
            dtype,
            dict(reduction=reduction),
            np.asarray(w),
        )
    for name, a in arrays.items():  # neither the maps nor the files changed
        np.testing.assert_array_equal(maps[name], a)
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), a)


# ---- inputs are never modified ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
def test_inputs_not_modified(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3, 7)).astype(dtype)
    x[0, 0, 0], x[1, 1, 1], x[2, 2, 2] = -INF, INF, NAN
    t = rng.integers(0, 7, size=(5, 3)).astype(np.int32)
    t[0, 1] = -100
    p = rng.uniform(size=(5, 3, 7)).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=7).astype(np.float32)
    inputs = [x, t, p, w, relayout(x, "col_slice"), relayout(x, "fortran")]
    before = snapshot(*inputs)
    for a in (x, inputs[4], inputs[5]):
        for axis in (-1, 0):
            xent.logsumexp(a, axis=axis)
            xent.log_softmax(a, axis=axis)
            xent.softmax(a, axis=axis)
        for reduction in REDUCTIONS:
            for eps in SMOOTHINGS:
                xent.cross_entropy(a, t, weight=w, reduction=reduction, label_smoothing=eps)
                xent.cross_entropy(a, p, weight=w, reduction=reduction, label_smoothing=eps)
            xent.nll_loss(a, t, weight=w, reduction=reduction)
    assert_unchanged(inputs, before)


# ---- out= -----------------------------------------------------------------------------------

FUNCTIONS = {"log_softmax": xent.log_softmax, "softmax": xent.softmax}


def _bits(a):
    a = np.asarray(a)
    return a.dtype, a.shape, np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
# A read-only x cannot be its own out; byte-swapped x: test_out_is_byteswapped_x.
@pytest.mark.parametrize("layout", [k for k in LAYOUTS if k not in ("readonly", "byteswapped")])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_out(isa, name, dtype, layout, axis):
    fn = FUNCTIONS[name]
    rng = np.random.default_rng(7)
    x0 = (rng.standard_normal((5, 4, 11)) * 4).astype(dtype)
    x0[1, 2, 3], x0[3, 0, :] = -INF, -INF
    x = relayout(x0, layout)
    expected = fn(x, axis=axis)
    # A fresh out (C order, and x's own layout).
    for out in (np.empty(x.shape, dtype), relayout(np.zeros(x.shape, dtype), layout)):
        got = fn(x, axis=axis, out=out)
        assert got is out
        assert _bits(out) == _bits(expected)
        np.testing.assert_array_equal(x, x0)
    # In place: the same bits as out of place.
    got = fn(x, axis=axis, out=x)
    assert got is x
    assert _bits(x) == _bits(expected)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_out_is_byteswapped_x(name, dtype):
    """out=x is documented to work ("May be x itself"), for any x the function accepts.

    An x in non-native byte order is accepted (its result is native), but out=x raises
    TypeError("out has dtype >f4, expected float32"): out is checked against the native
    dtype, not x's.
    """
    fn = FUNCTIONS[name]
    x = np.random.default_rng(11).standard_normal((3, 5)).astype(dtype)
    swapped = x.astype(x.dtype.newbyteorder())
    expected = fn(x)
    np.testing.assert_array_equal(fn(swapped), expected)  # accepted as input
    got = fn(swapped, out=swapped)
    assert got is swapped
    np.testing.assert_array_equal(swapped, expected)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_out_overlapping_input(name):
    """out overlaps x without being x (shifted by one column): still the out-of-place result."""
    fn = FUNCTIONS[name]
    base = np.random.default_rng(8).standard_normal((6, 10))
    x, out = base[:, :-1], base[:, 1:]
    expected = fn(x.copy())
    fn(x, out=out)
    assert _bits(out) == _bits(expected)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_out_errors(name):
    fn = FUNCTIONS[name]
    x = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError):
        fn(x, out=np.empty((3, 5), np.float32))
    with pytest.raises(ValueError):
        fn(x, out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError):
        fn(x, out=np.empty(12, np.float32))
    with pytest.raises(TypeError):
        fn(x, out=np.empty((3, 4), np.float64))
    with pytest.raises(TypeError):
        fn(x, out=np.empty((3, 4), np.float16))
    with pytest.raises(TypeError):
        fn(x, out=[[0.0] * 4] * 3)
    read_only = np.empty((3, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        fn(x, out=read_only)
    np.testing.assert_array_equal(x, 0)


# ---- determinism across thread counts ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(50_000, 10), (300, 5000), (70_000, 3)], ids=str)
def test_same_bits_on_any_number_of_threads(isa, dtype, shape):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    n, c = shape
    t = rng.integers(0, c, size=n)
    t[::7] = -100
    w = rng.uniform(0.5, 2.0, size=c)
    p = rng.uniform(size=shape).astype(dtype)
    calls = [
        ("logsumexp", lambda k: xent.logsumexp(x, num_threads=k)),
        ("log_softmax", lambda k: xent.log_softmax(x, num_threads=k)),
        ("softmax", lambda k: xent.softmax(x, num_threads=k)),
    ]
    for reduction in REDUCTIONS:
        for eps, weight in [(0.0, None), (0.1, w), (1.0, w)]:
            kw = dict(weight=weight, reduction=reduction, label_smoothing=eps)
            calls.append(
                (f"ce index {kw}", lambda k, kw=kw: xent.cross_entropy(x, t, num_threads=k, **kw))
            )
            calls.append(
                (f"ce prob {kw}", lambda k, kw=kw: xent.cross_entropy(x, p, num_threads=k, **kw))
            )
        calls.append(
            (
                f"nll {reduction}",
                lambda k, r=reduction: xent.nll_loss(x, t, weight=w, reduction=r, num_threads=k),
            )
        )
    for what, call in calls:
        one = _bits(call(1))
        for k in (2, 3):
            assert _bits(call(k)) == one, f"{what}: num_threads={k} differs from 1"


# ---- float16 ----------------------------------------------------------------------------------


def test_float16_smoke():
    """float16 in, float16 out, within float16 rounding of the reference."""
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((4, 3, 9)) * 4).astype(F16)
    x[0, 0, 0], x[1, 1, :] = -INF, -INF
    x[2, 0, 1] = BIG[F16]
    x64 = x.astype(F64)
    rtol, atol = TOL[F16]
    for axis in (-1, 1):
        got = xent.logsumexp(x, axis=axis)
        assert_close(got, ref.logsumexp(x64, axis=axis), F16, rtol, atol)
        assert_close(
            xent.log_softmax(x, axis=axis), ref.log_softmax(x64, axis=axis), F16, rtol, atol
        )
        assert_close(
            xent.softmax(x, axis=axis),
            ref.softmax(x64, axis=axis),
            F16,
            rtol,
            softmax_atol(x64, axis, F16),
        )
    assert isinstance(xent.logsumexp(x[0, 0]), np.float16)
    t = rng.integers(0, 9, size=(4, 3))
    t[0, 1] = -100
    w = rng.uniform(0.5, 2.0, size=9)
    p = rng.uniform(size=x.shape).astype(F16)
    for reduction in REDUCTIONS:
        for eps in SMOOTHINGS:
            kwargs = dict(reduction=reduction, label_smoothing=eps)
            ce_check(xent.cross_entropy(x, t, weight=w, **kwargs), x, t, F16, kwargs, w)
            ce_check(xent.cross_entropy(x, p, weight=w, **kwargs), x, p, F16, kwargs, w)
        nll_check(
            xent.nll_loss(x, t, weight=w, reduction=reduction),
            x,
            t,
            F16,
            dict(reduction=reduction),
            w,
        )
