"""Check the NumPy oracle `xent.reference` against outside oracles.

SciPy is the oracle for logsumexp / log_softmax / softmax, PyTorch (skipped
when absent) for cross_entropy / nll_loss, and hand-computed values written
with ``math`` for the tiny examples and the deliberate differences.
"""

import itertools
import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st
import hypothesis.extra.numpy as hnp

from xent import reference as ref

from support import (
    REDUCTIONS,
    SMOOTHINGS,
    assert_allclose_nan,
    class_targets,
    class_weight,
    logits,
    no_warnings,
    prob_targets,
    torch_cross_entropy,
    torch_nll_loss,
)

INF = math.inf
NAN = math.nan
SPECIALS = [INF, -INF, NAN, 1e300, -1e300, 0.0, -0.0]

# Values in [-300, 300] keep exp(x - max) in the normal range, so SciPy and
# the oracle agree to a few ulps; the specials exercise the edge cases.
ELEMENTS = st.one_of(
    st.floats(-300, 300, allow_nan=False, allow_infinity=False),
    st.sampled_from(SPECIALS),
)


def arrays_and_axis(min_side):
    """Float64 arrays of up to (6, 7) with a random valid axis."""
    shapes = hnp.array_shapes(min_dims=1, max_dims=2, min_side=min_side, max_side=7).filter(
        lambda s: len(s) == 1 or s[0] <= 6
    )

    @st.composite
    def draw(draw_):
        x = draw_(hnp.arrays(np.float64, shapes, elements=ELEMENTS))
        axis = draw_(st.integers(-x.ndim, x.ndim - 1))
        return x, axis

    return draw()


# ---------------------------------------------------------------------------
# logsumexp / log_softmax / softmax against SciPy
# ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(arrays_and_axis(min_side=0), st.booleans())
def test_logsumexp_matches_scipy(x_axis, keepdims):
    x, axis = x_axis
    x_copy = x.copy()
    actual = no_warnings(ref.logsumexp, x, axis=axis, keepdims=keepdims)
    expected = scipy.special.logsumexp(x, axis=axis, keepdims=keepdims)
    assert np.shape(actual) == np.shape(expected)
    assert np.asarray(actual).dtype == np.float64
    assert_allclose_nan(actual, expected)
    np.testing.assert_array_equal(x, x_copy)


@settings(max_examples=300, deadline=None)
@given(arrays_and_axis(min_side=1))
def test_log_softmax_matches_scipy(x_axis):
    x, axis = x_axis
    with np.errstate(all="ignore"):
        expected = scipy.special.log_softmax(x, axis=axis)
    actual = no_warnings(ref.log_softmax, x, axis=axis)
    assert actual.shape == x.shape and actual.dtype == np.float64
    assert_allclose_nan(actual, expected)


@settings(max_examples=300, deadline=None)
@given(arrays_and_axis(min_side=1))
def test_softmax_matches_scipy(x_axis):
    x, axis = x_axis
    with np.errstate(all="ignore"):
        expected = scipy.special.softmax(x, axis=axis)
        # Documented difference: rows containing +inf follow
        # exp(log_softmax) ([inf, 1] -> [nan, 0]), SciPy gives all NaN.
        has_pos_inf = np.any(x == INF, axis=axis, keepdims=True)
        via_log = np.exp(scipy.special.log_softmax(x, axis=axis))
    expected = np.where(has_pos_inf, via_log, expected)
    actual = no_warnings(ref.softmax, x, axis=axis)
    assert actual.shape == x.shape and actual.dtype == np.float64
    assert_allclose_nan(actual, expected)


def test_logsumexp_special_rows():
    assert ref.logsumexp([INF, 1.0]) == INF
    assert ref.logsumexp([-INF, -INF]) == -INF
    assert np.isnan(ref.logsumexp([NAN, 1.0]))
    assert np.isnan(ref.logsumexp([INF, NAN]))
    assert ref.logsumexp(np.zeros(0)) == -INF
    np.testing.assert_array_equal(ref.logsumexp(np.zeros((3, 0))), [-INF, -INF, -INF])
    np.testing.assert_array_equal(ref.logsumexp(np.zeros((0, 4)), axis=0), [-INF] * 4)
    # Accurate: log(1 + e^-40) is not rounded to 0.
    assert_allclose_nan(ref.logsumexp([0.0, -40.0]), math.log1p(math.exp(-40.0)))
    assert_allclose_nan(ref.logsumexp([1e300, 1e300]), 1e300)
    assert_allclose_nan(ref.logsumexp([2.0, 2.0, 2.0]), 2.0 + math.log(3.0))
    out = ref.logsumexp([1.0, 2.0])
    assert isinstance(out, np.float64)
    assert ref.logsumexp(np.zeros((2, 3)), keepdims=True).shape == (2, 1)


def test_log_softmax_and_softmax_special_rows():
    np.testing.assert_array_equal(ref.log_softmax([INF, 1.0]), [NAN, -INF])
    assert np.all(np.isnan(ref.log_softmax([-INF, -INF])))
    np.testing.assert_array_equal(ref.softmax([INF, 1.0]), [NAN, 0.0])
    assert_allclose_nan(ref.log_softmax([1000.0, 1.0]), [0.0, -999.0])
    assert_allclose_nan(ref.softmax([[1.0, 1.0], [0.0, math.log(3.0)]]), [[0.5, 0.5], [0.25, 0.75]])


# ---------------------------------------------------------------------------
# cross_entropy / nll_loss against PyTorch
# ---------------------------------------------------------------------------

C = 5
SHAPES = [(7, C), (3, 4, C)]


def _check_result(actual, expected, reduction, batch_shape):
    if reduction == "none":
        assert isinstance(actual, np.ndarray) and actual.shape == batch_shape
    else:
        assert isinstance(actual, np.float64)
    assert np.asarray(actual).dtype == np.float64
    assert_allclose_nan(actual, expected, rtol=1e-10)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("weight_kind", [None, "random"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_class_indices_vs_torch(
    reduction, weight_kind, ignore_index, label_smoothing, shape, rng
):
    torch = pytest.importorskip("torch")
    x = logits(rng, shape)
    w = class_weight(rng, C, weight_kind is not None)
    t = class_targets(rng, shape[:-1], C, ignore_index)
    kwargs = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    expected = torch_cross_entropy(torch, x, t, w, **kwargs)
    actual = ref.cross_entropy(x, t, weight=w, **kwargs)
    _check_result(actual, expected, reduction, shape[:-1])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("prob_kind", ["normalised", "arbitrary"])
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weight_kind", [None, "random"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_vs_torch(
    reduction, weight_kind, label_smoothing, prob_kind, shape, rng
):
    torch = pytest.importorskip("torch")
    x = logits(rng, shape)
    w = class_weight(rng, C, weight_kind is not None)
    p = prob_targets(rng, shape, prob_kind == "normalised")
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    expected = torch_cross_entropy(torch, x, p, w, **kwargs)
    actual = ref.cross_entropy(x, p, weight=w, **kwargs)
    _check_result(actual, expected, reduction, shape[:-1])
    # ignore_index does not apply to probability targets.
    again = ref.cross_entropy(x, p, weight=w, ignore_index=1, **kwargs)
    np.testing.assert_array_equal(again, actual)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("weight_kind", [None, "random"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_vs_torch(reduction, weight_kind, ignore_index, shape, rng):
    torch = pytest.importorskip("torch")
    lp = scipy.special.log_softmax(logits(rng, shape), axis=-1)
    w = class_weight(rng, C, weight_kind is not None)
    t = class_targets(rng, shape[:-1], C, ignore_index)
    kwargs = dict(ignore_index=ignore_index, reduction=reduction)
    expected = torch_nll_loss(torch, lp, t, w, **kwargs)
    actual = ref.nll_loss(lp, t, weight=w, **kwargs)
    _check_result(actual, expected, reduction, shape[:-1])


@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weight_kind", [None, "random"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_rows_ignored_vs_torch(reduction, weight_kind, label_smoothing, rng):
    torch = pytest.importorskip("torch")
    x = logits(rng, (4, C))
    w = class_weight(rng, C, weight_kind is not None)
    t = np.full(4, -100, dtype=np.int64)
    kwargs = dict(reduction=reduction)
    ce = no_warnings(ref.cross_entropy, x, t, weight=w, label_smoothing=label_smoothing, **kwargs)
    nll = no_warnings(ref.nll_loss, x, t, weight=w, **kwargs)
    ce_torch = torch_cross_entropy(torch, x, t, w, label_smoothing=label_smoothing, **kwargs)
    nll_torch = torch_nll_loss(torch, x, t, w, **kwargs)
    _check_result(ce, ce_torch, reduction, (4,))
    _check_result(nll, nll_torch, reduction, (4,))
    if reduction == "mean":
        assert np.isnan(ce) and np.isnan(nll)
    elif reduction == "sum":
        assert ce == 0.0 and nll == 0.0
    else:
        np.testing.assert_array_equal(ce, np.zeros(4))


def test_empty_batch_mean_is_nan():
    x = np.zeros((0, C))
    t = np.zeros(0, dtype=np.int64)
    assert np.isnan(no_warnings(ref.cross_entropy, x, t))
    assert np.isnan(no_warnings(ref.cross_entropy, x, np.zeros((0, C))))
    assert np.isnan(no_warnings(ref.nll_loss, x, t))
    assert no_warnings(ref.cross_entropy, x, t, reduction="sum") == 0.0
    assert ref.cross_entropy(x, t, reduction="none").shape == (0,)


def test_integer_dtypes_are_class_indices():
    x = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    expected = ref.cross_entropy(x, np.array([2, 0]), reduction="none")
    for dtype in (np.int8, np.uint8, np.int32, np.uint64):
        actual = ref.cross_entropy(x, np.array([2, 0], dtype=dtype), reduction="none")
        np.testing.assert_array_equal(actual, expected)


# ---------------------------------------------------------------------------
# Hand-computed values (independent of torch)
# ---------------------------------------------------------------------------


def _lse(row):
    m = max(row)
    return m + math.log(sum(math.exp(v - m) for v in row))


def test_cross_entropy_hand_computed_weights_and_smoothing():
    logits = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
    target = [0, 2]
    w = [0.5, 1.0, 2.0]
    eps = 0.1
    n_classes = 3
    expected_rows = []
    for row, t in zip(logits, target):
        lse = _lse(row)
        loss = (1 - eps) * w[t] * (lse - row[t])
        loss += (eps / n_classes) * sum(w[j] * (lse - row[j]) for j in range(n_classes))
        expected_rows.append(loss)
    total = sum(expected_rows)
    denom = w[0] + w[2]

    x = np.array(logits)
    t = np.array(target)
    kwargs = dict(weight=np.array(w), label_smoothing=eps)
    assert_allclose_nan(ref.cross_entropy(x, t, reduction="none", **kwargs), expected_rows)
    assert_allclose_nan(ref.cross_entropy(x, t, reduction="sum", **kwargs), total)
    assert_allclose_nan(ref.cross_entropy(x, t, reduction="mean", **kwargs), total / denom)
    # Ignoring the second row (its class as ignore_index) keeps the first.
    assert_allclose_nan(
        ref.cross_entropy(x, t, reduction="mean", ignore_index=2, **kwargs), expected_rows[0] / w[0]
    )


def test_cross_entropy_hand_computed_probabilities():
    logits = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
    probs = [[0.2, 0.0, 0.8], [0.5, 0.25, 0.25]]
    w = [0.5, 1.0, 2.0]
    eps = 0.3
    rows = []
    for row, p in zip(logits, probs):
        lse = _lse(row)
        rows.append(sum(w[j] * (p[j] * (1 - eps) + eps / 3) * (lse - row[j]) for j in range(3)))
    x, pt = np.array(logits), np.array(probs)
    kwargs = dict(weight=np.array(w), label_smoothing=eps)
    assert_allclose_nan(ref.cross_entropy(x, pt, reduction="none", **kwargs), rows)
    assert_allclose_nan(ref.cross_entropy(x, pt, reduction="mean", **kwargs), sum(rows) / 2)


def test_nll_loss_hand_computed():
    lp = np.array([[-0.1, -2.0, -3.0], [-1.5, -0.7, -1.2], [-1.0, -1.0, -1.0]])
    t = np.array([1, 2, -100])
    w = np.array([0.5, 1.5, 3.0])
    rows = [1.5 * 2.0, 3.0 * 1.2, 0.0]
    assert_allclose_nan(ref.nll_loss(lp, t, weight=w, reduction="none"), rows)
    assert_allclose_nan(ref.nll_loss(lp, t, weight=w), (3.0 + 3.6) / (1.5 + 3.0))
    assert_allclose_nan(ref.nll_loss(lp, t), (2.0 + 1.2) / 2)


# ---------------------------------------------------------------------------
# Deliberate differences from PyTorch
# ---------------------------------------------------------------------------


def test_pos_inf_row_follows_composition():
    x = np.array([[INF, 1.0, 2.0], [INF, 1.0, 2.0], [-INF, -INF, -INF]])
    losses = no_warnings(ref.cross_entropy, x, np.array([1, 0, 0]), reduction="none")
    assert losses[0] == INF  # finite target logit
    assert np.isnan(losses[1])  # target logit is +inf: inf - inf
    assert np.isnan(losses[2])  # all -inf
    # Without smoothing the +inf row stays +inf even with weights.
    out = ref.cross_entropy(x[:1], np.array([2]), weight=np.array([1.0, 2.0, 3.0]), reduction="sum")
    assert out == INF


def test_zero_probability_on_neg_inf_logit_contributes_zero():
    x = np.array([[0.0, -INF, 1.0]])
    p = np.array([[0.5, 0.0, 0.5]])
    lse = math.log(1.0 + math.e)
    expected = 0.5 * (lse - 0.0) + 0.5 * (lse - 1.0)
    out = no_warnings(ref.cross_entropy, x, p, reduction="none")
    assert_allclose_nan(out, [expected])
    assert_allclose_nan(ref.cross_entropy(x, p), expected)
    # With smoothing every class gets p > 0, so the -inf logit costs +inf.
    assert ref.cross_entropy(x, p, label_smoothing=0.1) == INF


# ---------------------------------------------------------------------------
# Misc: inputs untouched, bad arguments
# ---------------------------------------------------------------------------


def test_inputs_are_not_modified():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, C))
    x[0, 0, 0] = -INF
    t = rng.integers(0, C, size=(3, 4))
    t[0, 1] = -100
    p = rng.uniform(size=(3, 4, C))
    w = rng.uniform(0.5, 1.5, size=C)
    x32 = x.astype(np.float32)
    originals = [a.copy() for a in (x, t, p, w, x32)]
    for fn in (ref.logsumexp, ref.log_softmax, ref.softmax):
        fn(x)
        fn(x32)
        fn(x, axis=0)
    for reduction, eps in itertools.product(REDUCTIONS, SMOOTHINGS):
        ref.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=eps)
        ref.cross_entropy(x, p, weight=w, reduction=reduction, label_smoothing=eps)
        ref.cross_entropy(x32, t, reduction=reduction, label_smoothing=eps)
        ref.nll_loss(x, t, weight=w, reduction=reduction)
    for original, current in zip(originals, (x, t, p, w, x32)):
        np.testing.assert_array_equal(current, original)
        assert current.dtype == original.dtype


def test_bad_reduction_raises():
    x = np.zeros((2, 3))
    t = np.array([0, 1])
    with pytest.raises(ValueError):
        ref.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError):
        ref.nll_loss(x, t, reduction="Mean")


def test_out_of_range_label_raises():
    x = np.zeros((2, 3))
    with pytest.raises(IndexError):
        ref.cross_entropy(x, np.array([0, 3]))
    with pytest.raises(IndexError):
        ref.nll_loss(x, np.array([-1, 0]))
