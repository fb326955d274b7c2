"""Check the NumPy oracle's information quantities, binary cross-entropy and
gradients against outside oracles.

SciPy (``scipy.special.entr / rel_entr / kl_div / xlogy`` and
``scipy.stats.entropy``) is the oracle for the information quantities,
PyTorch (skipped when absent) for binary cross-entropy and for every
gradient (autograd), and fourth-order central finite differences of the
reference losses themselves check the gradients independently of PyTorch.
"""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import assume, given, settings, strategies as st
import hypothesis.extra.numpy as hnp

from xent import reference as ref

from support import (
    REDUCTIONS,
    SMOOTHINGS,
    assert_allclose_nan,
    class_targets,
    no_warnings,
    prob_targets,
    torch_cross_entropy_with_grad,
)

INF = math.inf
NAN = math.nan
BASES = [None, 2, 10, math.e, 0.5, 3.7]


# ---------------------------------------------------------------------------
# Hypothesis strategies: non-negative arrays, shapes up to (5, 8), an axis
# ---------------------------------------------------------------------------

SHAPES = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=8).filter(
    lambda s: len(s) == 1 or s[0] <= 5
)

# Exact zeros are frequent; the rest spans many magnitudes.
MASSES = st.one_of(
    st.just(0.0),
    st.floats(1e-300, 1e3, allow_nan=False, allow_infinity=False),
    st.floats(0.01, 1.0),
)


@st.composite
def raw_pair(draw):
    """Two non-negative arrays of one shape and a random axis along which
    every slice of both has a positive sum."""
    shape = draw(SHAPES)
    p = draw(hnp.arrays(np.float64, shape, elements=MASSES))
    q = draw(hnp.arrays(np.float64, shape, elements=MASSES))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    assume(np.all(np.sum(p, axis=axis) > 0))
    assume(np.all(np.sum(q, axis=axis) > 0))
    return p, q, axis


def _normalise(a, axis):
    return a / np.sum(a, axis=axis, keepdims=True)


# ---------------------------------------------------------------------------
# Entropy, cross-entropy and KL against SciPy
# ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(raw_pair(), st.sampled_from(BASES))
def test_entropy_matches_scipy(pqa, base):
    raw, _, axis = pqa
    raw_copy = raw.copy()
    p = _normalise(raw, axis)
    scale = 1.0 if base is None else math.log(base)

    actual = no_warnings(ref.entropy, p, axis=axis, base=base)
    assert np.asarray(actual).dtype == np.float64
    assert np.shape(actual) == np.shape(np.sum(p, axis=axis))
    assert_allclose_nan(actual, np.sum(scipy.special.entr(p), axis=axis) / scale)
    # scipy.stats.entropy normalises p again (a few ulps), hence the atol.
    assert_allclose_nan(actual, scipy.stats.entropy(p, axis=axis, base=base), atol=1e-14)
    assert_allclose_nan(actual, -np.sum(scipy.special.xlogy(p, p), axis=axis) / scale)

    # normalize=True against scipy.stats.entropy's own normalisation.
    actual_n = no_warnings(ref.entropy, raw, axis=axis, base=base, normalize=True)
    assert_allclose_nan(actual_n, scipy.stats.entropy(raw, axis=axis, base=base))
    np.testing.assert_array_equal(raw, raw_copy)


@settings(max_examples=200, deadline=None)
@given(raw_pair(), st.sampled_from(BASES))
def test_kl_divergence_matches_scipy(pqa, base):
    raw_p, raw_q, axis = pqa
    copies = raw_p.copy(), raw_q.copy()
    p, q = _normalise(raw_p, axis), _normalise(raw_q, axis)
    scale = 1.0 if base is None else math.log(base)

    actual = no_warnings(ref.kl_divergence, p, q, axis=axis, base=base)
    assert np.asarray(actual).dtype == np.float64
    assert_allclose_nan(actual, np.sum(scipy.special.rel_entr(p, q), axis=axis) / scale)
    # scipy.stats.entropy normalises p and q again (a few ulps); KL may be
    # ~0, hence the atol.
    assert_allclose_nan(actual, scipy.stats.entropy(p, q, axis=axis, base=base), atol=1e-14)
    # kl_div = rel_entr - p + q: the sums agree for normalised p and q, up to
    # the rounding of sum(q - p) (absolute, since KL may be ~0).
    with np.errstate(invalid="ignore"):
        kl_div = np.sum(scipy.special.kl_div(p, q), axis=axis) / scale
    assert_allclose_nan(actual, kl_div, rtol=1e-12, atol=1e-14)

    actual_n = no_warnings(ref.kl_divergence, raw_p, raw_q, axis=axis, base=base, normalize=True)
    assert_allclose_nan(actual_n, scipy.stats.entropy(raw_p, raw_q, axis=axis, base=base))
    np.testing.assert_array_equal(raw_p, copies[0])
    np.testing.assert_array_equal(raw_q, copies[1])


@settings(max_examples=200, deadline=None)
@given(raw_pair(), st.sampled_from(BASES))
def test_cross_entropy_dist_matches_scipy(pqa, base):
    raw_p, raw_q, axis = pqa
    p, q = _normalise(raw_p, axis), _normalise(raw_q, axis)
    scale = 1.0 if base is None else math.log(base)
    with np.errstate(divide="ignore"):
        expected = -np.sum(scipy.special.xlogy(p, q), axis=axis) / scale
    actual = no_warnings(ref.cross_entropy_dist, p, q, axis=axis, base=base)
    assert_allclose_nan(actual, expected)
    actual_n = no_warnings(
        ref.cross_entropy_dist, raw_p, raw_q, axis=axis, base=base, normalize=True
    )
    assert_allclose_nan(actual_n, expected)
    # H(p, q) = H(p) + KL(p || q), where all are finite.
    h = ref.entropy(p, axis=axis, base=base)
    kl = ref.kl_divergence(p, q, axis=axis, base=base)
    finite = np.isfinite(kl)
    assert np.array_equal(np.isfinite(actual), finite)
    assert_allclose_nan(
        np.where(finite, actual, 0.0), np.where(finite, h + kl, 0.0), rtol=1e-12, atol=1e-12
    )


def test_zeros_in_p_and_q():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    q = np.array([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    kl = no_warnings(ref.kl_divergence, p, q)
    np.testing.assert_array_equal(kl, [INF, math.log(2.0), 0.0])
    np.testing.assert_array_equal(kl, np.sum(scipy.special.rel_entr(p, q), axis=-1))
    ce = no_warnings(ref.cross_entropy_dist, p, q)
    assert ce[0] == INF
    assert_allclose_nan(ce[1:], [math.log(2.0), 0.0])
    h = no_warnings(ref.entropy, p)
    assert_allclose_nan(h, [math.log(2.0), 0.0, 0.0])
    # Negative entries: rel_entr's +inf; NaN propagates as in SciPy.
    assert ref.kl_divergence([0.5, 0.5], [1.5, -0.5]) == INF
    assert np.isnan(ref.kl_divergence([0.5, NAN], [0.5, 0.5]))
    assert np.isnan(ref.cross_entropy_dist([0.0, 1.0], [NAN, 1.0]))
    # Zero-length axis: empty sums.
    assert ref.entropy(np.zeros(0)) == 0.0
    # normalize with an all-zero slice gives NaN, without a warning.
    assert np.isnan(no_warnings(ref.entropy, [0.0, 0.0], normalize=True))


def test_axis_base_and_scalar_results():
    p = np.array([[0.5, 0.25], [0.5, 0.75]])
    assert_allclose_nan(ref.entropy(p, axis=0, base=2), [1.0, ref.entropy([0.25, 0.75], base=2)])
    assert_allclose_nan(ref.entropy([0.25, 0.25, 0.25, 0.25], base=2), 2.0)
    assert_allclose_nan(ref.entropy([0.25] * 4, base=4), 1.0)
    for fn, args in [
        (ref.entropy, ([0.5, 0.5],)),
        (ref.cross_entropy_dist, ([0.5, 0.5], [0.25, 0.75])),
        (ref.kl_divergence, ([0.5, 0.5], [0.25, 0.75])),
        (ref.binary_entropy, (0.3,)),
        (ref.self_information, (0.3,)),
        (ref.entropy_from_logits, ([1.0, 2.0],)),
    ]:
        out = fn(*args)
        assert isinstance(out, np.float64), fn.__name__
    # p broadcast against q.
    q = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert_allclose_nan(
        ref.kl_divergence([0.5, 0.5], q), [0.0, ref.kl_divergence([0.5, 0.5], [0.25, 0.75])]
    )


def test_self_information():
    p = np.array([1.0, 0.5, 0.0, 0.25])
    out = no_warnings(ref.self_information, p, base=2)
    np.testing.assert_array_equal(out, [0.0, 1.0, INF, 2.0])
    with np.errstate(divide="ignore"):
        assert_allclose_nan(ref.self_information(p), -np.log(p))
    assert_allclose_nan(ref.self_information(0.1, base=10), 1.0)
    assert np.isnan(no_warnings(ref.self_information, -0.5))


# ---------------------------------------------------------------------------
# Gibbs' inequality
# ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(raw_pair(), st.sampled_from(BASES[:4]))
def test_gibbs_inequality(pqa, base):
    raw_p, raw_q, axis = pqa
    p, q = _normalise(raw_p, axis), _normalise(raw_q, axis)
    h = ref.entropy(p, axis=axis, base=base)
    assert np.all(ref.cross_entropy_dist(p, q, axis=axis, base=base) >= h - 1e-12)
    assert_allclose_nan(ref.cross_entropy_dist(p, p, axis=axis, base=base), h)
    assert np.all(ref.kl_divergence(p, q, axis=axis, base=base) >= -1e-12)
    assert_allclose_nan(ref.kl_divergence(p, p, axis=axis, base=base), np.zeros_like(h), atol=1e-12)
    assert np.all(h >= 0)


# ---------------------------------------------------------------------------
# Binary entropy, entropy from logits, perplexity
# ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(max_dims=2, max_side=6),
        elements=st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.5])),
    ),
    st.sampled_from(BASES),
)
def test_binary_entropy_matches_scipy(p, base):
    p_copy = p.copy()
    scale = 1.0 if base is None else math.log(base)
    actual = no_warnings(ref.binary_entropy, p, base=base)
    expected = (scipy.special.entr(p) + scipy.special.entr(1.0 - p)) / scale
    # entr(1 - p) rounds 1 - p; log1p(-p) does not, hence the tiny atol.
    assert_allclose_nan(actual, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(p, p_copy)


def test_binary_entropy_special_values():
    assert ref.binary_entropy(0.5, base=2) == 1.0  # exactly
    assert ref.binary_entropy(0.0) == 0.0
    assert ref.binary_entropy(1.0) == 0.0
    # log1p keeps the (1 - p) term accurate for tiny p.
    p = 1e-20
    assert_allclose_nan(ref.binary_entropy(p), -p * math.log(p) - math.log1p(-p))
    assert_allclose_nan(
        ref.binary_entropy(0.25, base=2), -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    )


LOGIT_ELEMENTS = st.one_of(st.floats(-30, 30), st.just(-INF))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, SHAPES, elements=LOGIT_ELEMENTS), st.data(), st.sampled_from(BASES))
def test_entropy_from_logits_matches_entropy_of_softmax(x, data, base):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    x_copy = x.copy()
    actual = no_warnings(ref.entropy_from_logits, x, axis=axis, base=base)
    expected = ref.entropy(ref.softmax(x, axis=axis), axis=axis, base=base)
    # entropy(softmax) rounds p before its log; the difference is absolute.
    assert_allclose_nan(actual, expected, rtol=1e-12, atol=1e-14)
    all_neg_inf = np.all(x == -INF, axis=axis)
    assert np.array_equal(np.isnan(actual), all_neg_inf)
    np.testing.assert_array_equal(x, x_copy)


def test_entropy_from_logits_special_rows():
    out = no_warnings(
        ref.entropy_from_logits,
        [[0.0, -INF, 0.0], [5.0, -INF, -INF], [1.0, 1.0, 1.0], [INF, 0.0, 0.0]],
    )
    assert_allclose_nan(out[:3], [math.log(2.0), 0.0, math.log(3.0)])
    assert np.isnan(out[3])
    assert_allclose_nan(ref.entropy_from_logits([0.0, 0.0, 0.0, 0.0], base=2), 2.0)
    assert_allclose_nan(
        ref.entropy_from_logits([[0.0, 0.0], [0.0, 0.0]], axis=0, base=2), [1.0, 1.0]
    )


def test_perplexity():
    assert_allclose_nan(ref.perplexity(np.zeros((4, 5)), np.array([0, 1, 2, 3])), 5.0)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 4))
    t = np.array([0, 1, -100, 3, 2, 2])
    w = np.array([1.0, 0.5, 2.0, 1.5])
    kwargs = dict(weight=w, ignore_index=-100, label_smoothing=0.1)
    out = ref.perplexity(x, t, **kwargs)
    assert isinstance(out, np.float64)
    assert_allclose_nan(out, math.exp(ref.cross_entropy(x, t, **kwargs)))
    p = ref.softmax(rng.standard_normal((6, 4)))
    assert_allclose_nan(ref.perplexity(x, p), math.exp(ref.cross_entropy(x, p)))
    assert np.isnan(ref.perplexity(x, np.full(6, -100)))


# ---------------------------------------------------------------------------
# Binary cross-entropy against PyTorch
# ---------------------------------------------------------------------------

BCE_SHAPE = (6, 5)
WEIGHT_KINDS = [None, "classes", "full"]


def _bce_weight(rng, kind, shape):
    if kind is None:
        return None
    return rng.uniform(0.2, 2.0, size=shape[-1:] if kind == "classes" else shape)


def _probs_with_ends(rng, shape):
    x = rng.uniform(0.0, 1.0, size=shape)
    flat = x.reshape(-1)
    flat[::7] = 0.0
    flat[3::7] = 1.0
    flat[5::11] = 1e-200  # log(x) < -100: clamped
    return x


def _binary_targets(rng, shape):
    y = rng.uniform(0.0, 1.0, size=shape)
    flat = y.reshape(-1)
    flat[::4] = 0.0
    flat[1::4] = 1.0
    return y


def _big_logits(rng, shape):
    x = rng.standard_normal(shape) * 5.0
    flat = x.reshape(-1)
    flat[::5] = 1e4
    flat[2::5] = -1e4
    flat[3::9] = 1e3
    flat[4::9] = -1e3
    return x


def _t(torch, a):
    return None if a is None else torch.from_numpy(np.asarray(a))


@pytest.mark.parametrize("weight_kind", WEIGHT_KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_vs_torch(reduction, weight_kind, rng):
    torch = pytest.importorskip("torch")
    x = _probs_with_ends(rng, BCE_SHAPE)
    y = _binary_targets(rng, BCE_SHAPE)
    w = _bce_weight(rng, weight_kind, BCE_SHAPE)
    copies = [a.copy() for a in (x, y, w) if a is not None]
    actual = no_warnings(ref.binary_cross_entropy, x, y, weight=w, reduction=reduction)
    expected = torch.nn.functional.binary_cross_entropy(
        _t(torch, x), _t(torch, y), weight=_t(torch, w), reduction=reduction
    ).numpy()
    if reduction == "none":
        assert isinstance(actual, np.ndarray) and actual.shape == BCE_SHAPE
    else:
        assert isinstance(actual, np.float64)
    assert np.all(np.isfinite(actual))
    assert_allclose_nan(actual, expected, rtol=1e-10)
    for a, c in zip([a for a in (x, y, w) if a is not None], copies):
        np.testing.assert_array_equal(a, c)


def test_binary_cross_entropy_clamp_hand_values():
    out = no_warnings(
        ref.binary_cross_entropy,
        [0.0, 1.0, 0.0, 1.0, 0.5],
        [1.0, 0.0, 0.0, 1.0, 0.25],
        reduction="none",
    )
    assert_allclose_nan(out, [100.0, 100.0, 0.0, 0.0, math.log(2.0)])
    assert np.isnan(no_warnings(ref.binary_cross_entropy, np.zeros(0), np.zeros(0)))
    assert ref.binary_cross_entropy(np.zeros(0), np.zeros(0), reduction="sum") == 0.0
    with pytest.raises(ValueError):
        ref.binary_cross_entropy([0.5, 0.5], [1.0])


@pytest.mark.parametrize("pos_weight_kind", [None, "classes"])
@pytest.mark.parametrize("weight_kind", WEIGHT_KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_vs_torch(reduction, weight_kind, pos_weight_kind, rng):
    torch = pytest.importorskip("torch")
    x = _big_logits(rng, BCE_SHAPE)
    y = _binary_targets(rng, BCE_SHAPE)
    w = _bce_weight(rng, weight_kind, BCE_SHAPE)
    pw = None if pos_weight_kind is None else rng.uniform(0.2, 3.0, size=BCE_SHAPE[-1:])
    copies = [a.copy() for a in (x, y, w, pw) if a is not None]
    actual = no_warnings(
        ref.binary_cross_entropy_with_logits, x, y, weight=w, pos_weight=pw, reduction=reduction
    )
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        _t(torch, x),
        _t(torch, y),
        weight=_t(torch, w),
        pos_weight=_t(torch, pw),
        reduction=reduction,
    ).numpy()
    assert np.all(np.isfinite(actual))
    assert_allclose_nan(actual, expected, rtol=1e-10)
    for a, c in zip([a for a in (x, y, w, pw) if a is not None], copies):
        np.testing.assert_array_equal(a, c)


def test_binary_cross_entropy_with_logits_hand_values():
    x = np.array([1e4, -1e4, 0.0, 2.0, 1e308, -1e308])
    y = np.array([0.0, 1.0, 0.5, 1.0, 1.0, 0.0])
    out = no_warnings(ref.binary_cross_entropy_with_logits, x, y, reduction="none")
    assert_allclose_nan(out, [1e4, 1e4, math.log(2.0), math.log1p(math.exp(-2.0)), 0.0, 0.0])
    # pos_weight multiplies the positive term only.
    out = ref.binary_cross_entropy_with_logits([2.0], [1.0], pos_weight=[3.0], reduction="sum")
    assert_allclose_nan(out, 3.0 * math.log1p(math.exp(-2.0)))


# ---------------------------------------------------------------------------
# Gradients against torch autograd
# ---------------------------------------------------------------------------

C = 5
CE_SHAPES = [(7, C), (3, 4, C), (C,)]
GRAD_OUTPUT_KINDS = [None, "given"]


def _grad_output(rng, reduction, kind, batch_shape):
    if kind is None:
        return None
    if reduction == "none":
        return rng.uniform(-2.0, 2.0, size=batch_shape)
    return np.float64(rng.uniform(0.5, 2.0))


def _backward(torch, loss, grad_output):
    if grad_output is None:
        if loss.ndim == 0:
            loss.backward()
        else:
            loss.backward(gradient=torch.ones_like(loss))
    else:
        loss.backward(gradient=torch.as_tensor(grad_output, dtype=torch.float64))


def _assert_grad(actual, expected, shape):
    assert isinstance(actual, np.ndarray) and actual.shape == shape
    assert actual.dtype == np.float64
    assert_allclose_nan(actual, expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
@pytest.mark.parametrize("grad_output_kind", GRAD_OUTPUT_KINDS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("weight_kind", [None, "random"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_grad_class_indices_vs_torch(
    reduction, weight_kind, ignore_index, label_smoothing, grad_output_kind, shape, rng
):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape) * 3.0
    w = None if weight_kind is None else rng.uniform(0.2, 2.0, size=C)
    t = class_targets(rng, shape[:-1], C, ignore_index)
    go = _grad_output(rng, reduction, grad_output_kind, shape[:-1])
    copies = [a.copy() for a in (x, t, w, go) if a is not None]
    kwargs = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    expected = torch_cross_entropy_with_grad(torch, x, t, w, go, **kwargs)[1]
    actual = no_warnings(ref.cross_entropy_grad, x, t, weight=w, grad_output=go, **kwargs)
    _assert_grad(actual, expected, shape)
    if t.size > 1:  # ignored rows are exactly 0
        ignored = t == ignore_index
        assert np.any(ignored)
        assert np.all(actual[ignored] == 0.0)
    for a, c in zip([a for a in (x, t, w, go) if a is not None], copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
@pytest.mark.parametrize("grad_output_kind", GRAD_OUTPUT_KINDS)
@pytest.mark.parametrize("prob_kind", ["normalised", "arbitrary"])
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weight_kind", [None, "random"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_grad_probabilities_vs_torch(
    reduction, weight_kind, label_smoothing, prob_kind, grad_output_kind, shape, rng
):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape) * 3.0
    w = None if weight_kind is None else rng.uniform(0.2, 2.0, size=C)
    p = prob_targets(rng, shape, prob_kind == "normalised")
    go = _grad_output(rng, reduction, grad_output_kind, shape[:-1])
    p_copy = p.copy()
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    expected = torch_cross_entropy_with_grad(torch, x, p, w, go, **kwargs)[1]
    actual = no_warnings(ref.cross_entropy_grad, x, p, weight=w, grad_output=go, **kwargs)
    _assert_grad(actual, expected, shape)
    np.testing.assert_array_equal(p, p_copy)
    # ignore_index does not apply to probability targets.
    again = ref.cross_entropy_grad(x, p, weight=w, grad_output=go, ignore_index=1, **kwargs)
    np.testing.assert_array_equal(again, actual)


@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weight_kind", [None, "random"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_grad_all_rows_ignored_vs_torch(reduction, weight_kind, label_smoothing, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, C))
    w = None if weight_kind is None else rng.uniform(0.2, 2.0, size=C)
    t = np.full(4, -100, dtype=np.int64)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    expected = torch_cross_entropy_with_grad(torch, x, t, w, None, **kwargs)[1]
    actual = no_warnings(ref.cross_entropy_grad, x, t, weight=w, **kwargs)
    _assert_grad(actual, expected, x.shape)
    np.testing.assert_array_equal(actual, np.zeros_like(x))


@pytest.mark.parametrize("grad_output_kind", GRAD_OUTPUT_KINDS)
@pytest.mark.parametrize("weight_kind", WEIGHT_KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_grad_vs_torch(reduction, weight_kind, grad_output_kind, rng):
    torch = pytest.importorskip("torch")
    # Exact 0 and 1 included: PyTorch's formula divides by
    # max(x (1 - x), 1e-12) there, giving +-1e12 * (x - y), not the clamped
    # loss's derivative 0.
    x = _probs_with_ends(rng, BCE_SHAPE)
    y = _binary_targets(rng, BCE_SHAPE)
    w = _bce_weight(rng, weight_kind, BCE_SHAPE)
    go = _grad_output(rng, reduction, grad_output_kind, BCE_SHAPE)
    copies = [a.copy() for a in (x, y, w, go) if a is not None]
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.nn.functional.binary_cross_entropy(
        xt, _t(torch, y), weight=_t(torch, w), reduction=reduction
    )
    _backward(torch, loss, go)
    actual = no_warnings(
        ref.binary_cross_entropy_grad, x, y, weight=w, reduction=reduction, grad_output=go
    )
    _assert_grad(actual, xt.grad.numpy(), BCE_SHAPE)
    assert np.max(np.abs(actual)) > 1e10  # the 1e-12 floor was exercised
    for a, c in zip([a for a in (x, y, w, go) if a is not None], copies):
        np.testing.assert_array_equal(a, c)


def test_binary_cross_entropy_grad_at_the_ends():
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.5])
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.25])
    out = no_warnings(ref.binary_cross_entropy_grad, x, y, reduction="sum")
    # PyTorch's floor is the float32 1e-12 (9.999999960041972e-13).
    floor = float(np.float32(1e-12))
    assert floor == 9.999999960041972e-13
    np.testing.assert_array_equal(out, [0.0, -1.0 / floor, 1.0 / floor, 0.0, 1.0])


@pytest.mark.parametrize("grad_output_kind", GRAD_OUTPUT_KINDS)
@pytest.mark.parametrize("pos_weight_kind", [None, "classes"])
@pytest.mark.parametrize("weight_kind", WEIGHT_KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_grad_vs_torch(
    reduction, weight_kind, pos_weight_kind, grad_output_kind, rng
):
    torch = pytest.importorskip("torch")
    x = _big_logits(rng, BCE_SHAPE)
    y = _binary_targets(rng, BCE_SHAPE)
    w = _bce_weight(rng, weight_kind, BCE_SHAPE)
    pw = None if pos_weight_kind is None else rng.uniform(0.2, 3.0, size=BCE_SHAPE[-1:])
    go = _grad_output(rng, reduction, grad_output_kind, BCE_SHAPE)
    copies = [a.copy() for a in (x, y, w, pw, go) if a is not None]
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        xt, _t(torch, y), weight=_t(torch, w), pos_weight=_t(torch, pw), reduction=reduction
    )
    _backward(torch, loss, go)
    actual = no_warnings(
        ref.binary_cross_entropy_with_logits_grad,
        x,
        y,
        weight=w,
        pos_weight=pw,
        reduction=reduction,
        grad_output=go,
    )
    assert np.all(np.isfinite(actual))
    _assert_grad(actual, xt.grad.numpy(), BCE_SHAPE)
    for a, c in zip([a for a in (x, y, w, pw, go) if a is not None], copies):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------------------
# Gradients against finite differences of the reference losses
# ---------------------------------------------------------------------------


def _fd_grad(f, x, h):
    """Fourth-order central differences of scalar f at every entry of x."""
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):

        def at(step):
            xs = x.copy()
            xs[i] += step
            return f(xs)

        grad[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    return grad


def _scalar_loss(loss_fn, reduction, grad_output, **kwargs):
    """The scalar whose gradient the *_grad functions return."""

    def f(x):
        out = loss_fn(x, reduction=reduction, **kwargs)
        g = 1.0 if grad_output is None else grad_output
        return float(np.sum(g * out))

    return f


CE_FD_CASES = [
    dict(target="index", reduction="mean", weight=True, ignore=True, eps=0.0),
    dict(target="index", reduction="sum", weight=False, ignore=False, eps=0.1),
    dict(target="index", reduction="none", weight=True, ignore=True, eps=0.1, grad_output=True),
    dict(target="index", reduction="mean", weight=True, ignore=False, eps=1.0),
    dict(target="prob", reduction="mean", weight=True, eps=0.0),
    dict(target="prob", reduction="sum", weight=False, eps=0.3),
    dict(target="prob", reduction="none", weight=True, eps=0.1, grad_output=True),
]


@pytest.mark.parametrize("case", CE_FD_CASES, ids=str)
def test_cross_entropy_grad_finite_differences(case, rng):
    shape = (3, 4)
    x = rng.standard_normal(shape)
    w = rng.uniform(0.2, 2.0, size=4) if case["weight"] else None
    if case["target"] == "index":
        t = np.array([0, 3, 1])
        if case["ignore"]:
            t[1] = -100
    else:
        t = rng.uniform(0.0, 1.0, size=shape)
        t[0, 2] = 0.0
    go = rng.uniform(-2.0, 2.0, size=3) if case.get("grad_output") else None
    kwargs = dict(weight=w, label_smoothing=case["eps"])
    f = _scalar_loss(lambda z, **kw: ref.cross_entropy(z, t, **kw), case["reduction"], go, **kwargs)
    expected = _fd_grad(f, x, 1e-3)
    actual = ref.cross_entropy_grad(x, t, reduction=case["reduction"], grad_output=go, **kwargs)
    assert_allclose_nan(actual, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("grad_output_kind", GRAD_OUTPUT_KINDS)
@pytest.mark.parametrize("weight_kind", WEIGHT_KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_grad_finite_differences(
    reduction, weight_kind, grad_output_kind, rng
):
    shape = (3, 4)
    x = rng.uniform(0.05, 0.95, size=shape)
    y = _binary_targets(rng, shape)
    w = _bce_weight(rng, weight_kind, shape)
    go = _grad_output(rng, reduction, grad_output_kind, shape)
    f = _scalar_loss(lambda z, **kw: ref.binary_cross_entropy(z, y, **kw), reduction, go, weight=w)
    # A smaller step: the fifth derivative of log(x) is large near 0.05.
    expected = _fd_grad(f, x, 1e-4)
    actual = ref.binary_cross_entropy_grad(x, y, weight=w, reduction=reduction, grad_output=go)
    assert_allclose_nan(actual, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("grad_output_kind", GRAD_OUTPUT_KINDS)
@pytest.mark.parametrize("pos_weight_kind", [None, "classes"])
@pytest.mark.parametrize("weight_kind", WEIGHT_KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_grad_finite_differences(
    reduction, weight_kind, pos_weight_kind, grad_output_kind, rng
):
    shape = (3, 4)
    x = rng.standard_normal(shape) * 3.0
    y = _binary_targets(rng, shape)
    w = _bce_weight(rng, weight_kind, shape)
    pw = None if pos_weight_kind is None else rng.uniform(0.2, 3.0, size=shape[-1:])
    go = _grad_output(rng, reduction, grad_output_kind, shape)
    f = _scalar_loss(
        lambda z, **kw: ref.binary_cross_entropy_with_logits(z, y, **kw),
        reduction,
        go,
        weight=w,
        pos_weight=pw,
    )
    expected = _fd_grad(f, x, 1e-3)
    actual = ref.binary_cross_entropy_with_logits_grad(
        x, y, weight=w, pos_weight=pw, reduction=reduction, grad_output=go
    )
    assert_allclose_nan(actual, expected, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------
# Misc: shapes, empty inputs, inputs never modified
# ---------------------------------------------------------------------------


def test_grad_shapes_and_empty_inputs():
    x = np.zeros((0, C))
    g = no_warnings(ref.cross_entropy_grad, x, np.zeros(0, dtype=np.int64))
    assert g.shape == (0, C)
    g = no_warnings(ref.cross_entropy_grad, x, np.zeros((0, C)))
    assert g.shape == (0, C)
    assert no_warnings(ref.binary_cross_entropy_grad, np.zeros(0), np.zeros(0)).shape == (0,)
    # One row, no batch axis: a scalar class index.
    row = np.array([1.0, 2.0, 0.5])
    g = ref.cross_entropy_grad(row, np.array(1))
    assert_allclose_nan(g, ref.softmax(row) - [0.0, 1.0, 0.0])
    # Mean of probability targets divides by the number of rows.
    x = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    q = ref.softmax(np.array([[0.3, 0.1, 0.2], [1.0, 2.0, 3.0]]))
    assert_allclose_nan(
        ref.cross_entropy_grad(x, q), (ref.softmax(x) - q) / 2.0, rtol=1e-12, atol=1e-16
    )


def test_inputs_never_modified():
    rng = np.random.default_rng(3)
    p = ref.softmax(rng.standard_normal((3, 4)))
    q = ref.softmax(rng.standard_normal((3, 4)))
    x = rng.standard_normal((3, 4))
    t = np.array([0, -100, 2])
    w = rng.uniform(0.5, 1.5, size=4)
    probs = rng.uniform(0.05, 0.95, size=(3, 4))
    y = rng.uniform(0.0, 1.0, size=(3, 4))
    go = rng.uniform(size=3)
    go_full = rng.uniform(size=(3, 4))
    arrays = [p, q, x, t, w, probs, y, go, go_full]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.flags.writeable = False  # any in-place write raises
    ref.self_information(p, base=2)
    for norm in (False, True):
        ref.entropy(p, normalize=norm)
        ref.cross_entropy_dist(p, q, normalize=norm)
        ref.kl_divergence(p, q, normalize=norm)
    ref.binary_entropy(probs)
    ref.entropy_from_logits(x)
    ref.perplexity(x, t, weight=w, label_smoothing=0.1)
    ref.binary_cross_entropy(probs, y, weight=w)
    ref.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=w)
    ref.cross_entropy_grad(x, t, weight=w, reduction="none", grad_output=go, label_smoothing=0.1)
    ref.cross_entropy_grad(x, q, weight=w, label_smoothing=0.1)
    ref.binary_cross_entropy_grad(probs, y, weight=w, reduction="none", grad_output=go_full)
    ref.binary_cross_entropy_with_logits_grad(
        x, y, weight=w, pos_weight=w, reduction="none", grad_output=go_full
    )
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


def test_new_names_exported():
    for name in [
        "self_information",
        "entropy",
        "cross_entropy_dist",
        "kl_divergence",
        "binary_entropy",
        "entropy_from_logits",
        "perplexity",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "cross_entropy_grad",
        "binary_cross_entropy_grad",
        "binary_cross_entropy_with_logits_grad",
    ]:
        assert name in ref.__all__
        assert callable(getattr(ref, name))
