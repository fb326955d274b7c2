"""xent.info against SciPy and xent.reference: entropy, cross-entropy and KL divergence of
distributions, entropy from logits, self-information, binary entropy and perplexity; their
special values (zeros, infinities, bits), threads, check mode and errors.

The oracles are evaluated in float64 on the very values xent is given (float32 inputs upcast
exactly); PyTorch too runs in float64 on those values, so that the comparison measures xent's
error and not PyTorch's own float32 rounding.

Tolerances, and why
-------------------
Information quantities (entropy, cross-entropy, KL) are sums of per-entry terms
``p_j log p_j``, ``p_j log q_j``, ``p_j log(p_j / q_j)``. For float32 input the kernels
evaluate each term in float32 (vectorised log, a few ulps) and sum in double, so the error of
a row is a few float32 ulps (2**-24 = 6e-8) of the *sum of the magnitudes* of its terms, not
of the result: KL's terms have both signs and may cancel to ~0, and forming ``p / q`` (or
``log p - log q``) costs up to an ulp of 1 per unit of p. The row's scale is therefore

    scale = sum_j p^_j (1 + |log p_j| + |log q_j|) + |log sum p| + |log sum q|

(``p^`` the normalised row; the last two terms are the ``log(sum)`` of ``normalize=True``),
divided by ``|log base|``, and a row must agree within ``rtol * scale`` with rtol = 1e-6 for
float32 (a bound of ~15 ulps: log, product, ratio and the final rounding; measured <= 8.6e-8
over 600 batches of random, near-equal and unnormalised rows on the three ISA variants) and
1e-12 for float64 (where the same argument gives ~1e-15). For ``entropy`` the q terms are
left out; for ``entropy_from_logits`` the scale is ``1 + H`` (its terms ``p_k (lse - x_k)``
are all >= 0 and ``lse`` carries an error of a few ulps of 1; measured <= 2e-7 with rows
shifted by up to 1e5). The elementwise ``self_information`` / ``binary_entropy`` are held to
rtol relative to their own value (no cancellation: all terms are >= 0; measured <= 1.4e-7),
plus a few subnormal spacings (a result that is a float32 subnormal has fewer significant
bits). Perplexity, the exponential of a cross-entropy loss, uses the loss tolerance of
tests/test_against_reference.py (``support.CE_LOSS_TOL``: 2e-6 absolute per unit of the row's
coefficients, 1e-12 for float64).
"""

import math
import re

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, strategies as st

from xent import info
from xent import reference as ref

from support import (
    CE_LOSS_TOL,
    F64,
    SCALE_RTOL,
    SUBNORMAL_FLOOR,
    assert_scalar_or_array,
    assert_within,
    hypothesis_settings,
)

BASES = [None, 2, 10]
HYPOTHESIS = hypothesis_settings(25)


def _log_base(base):
    return 1.0 if base is None else math.log(base)


def _abs_log(a):
    """``|log a|`` where a > 0, else 0 (a term with a = 0 is exact: 0 or +inf)."""
    with np.errstate(divide="ignore"):
        return np.where(a > 0, np.abs(np.log(np.where(a > 0, a, 1.0))), 0.0)


def dist_scale(p64, q64=None, base=None):
    """Per row (last axis) the error scale of an information quantity: module docstring."""
    s_p = p64.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_hat = p64 / np.where(s_p > 0, s_p, 1.0)[..., None]
    logs = 1.0 + _abs_log(p64)
    extra = _abs_log(s_p)
    if q64 is not None:
        logs = logs + _abs_log(q64)
        extra = extra + _abs_log(q64.sum(axis=-1))
    return (np.sum(p_hat * logs, axis=-1) + extra) / abs(_log_base(base))


# ---- strategies -----------------------------------------------------------------------------


def _positive():
    return st.floats(2.0**-30, 1.0)


@st.composite
def rows_of(draw, shape, normalize, zero_share=4):
    """float64 rows of ``shape``: some exact zeros, never a zero row; normalised to sum 1, or
    (``normalize``) multiplied by a random factor in [0.05, 20] per row."""
    elements = st.one_of(st.just(0.0), *([_positive()] * (zero_share - 1)))
    a = draw(hnp.arrays(F64, shape, elements=elements))
    rows = a.reshape(-1, shape[-1])
    rows[rows.sum(axis=1) == 0, 0] = 1.0
    rows /= rows.sum(axis=1, keepdims=True)
    if normalize:
        factors = draw(hnp.arrays(F64, (rows.shape[0], 1), elements=st.floats(0.05, 20.0)))
        rows *= factors
    return rows.reshape(shape)


@st.composite
def distribution_problems(draw, dtype, with_q=True):
    """(p, q, axis, base, normalize, p_last, q_last): p and q of ``dtype`` with the distribution
    axis at ``axis``; ``*_last`` are their float64 values with that axis last."""
    batch = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    shape = batch + (draw(st.integers(1, 16)),)
    normalize = draw(st.booleans())
    p = draw(rows_of(shape, normalize)).astype(dtype)
    q = None
    if with_q:
        q = draw(rows_of(shape, normalize))
        if draw(st.booleans()):  # q close to p: KL's log(p / q) near 0 (through log1p)
            wiggle = draw(hnp.arrays(F64, shape, elements=st.floats(-1e-3, 1e-3)))
            q = p.astype(F64) * (1 + wiggle)
            if not normalize:
                q /= q.sum(axis=-1, keepdims=True)
        q = q.astype(dtype)
    position = draw(st.integers(0, len(batch)))
    axis = position - len(shape) if draw(st.booleans()) else position
    moved = [None if a is None else np.moveaxis(a, -1, position) for a in (p, q)]
    return (
        moved[0],
        moved[1],
        axis,
        draw(st.sampled_from(BASES)),
        normalize,
        p.astype(F64),
        None if q is None else q.astype(F64),
    )


# ---- xent.info: against SciPy and xent.reference --------------------------------------------


@HYPOTHESIS
@given(data=st.data())
def test_entropy(dtype, data):
    p, _, axis, base, normalize, p64, _ = data.draw(distribution_problems(dtype, False))
    got = info.entropy(p, axis=axis, base=base, normalize=normalize)
    assert_scalar_or_array(got, p64.shape[:-1], dtype)
    bound = SCALE_RTOL[dtype] * dist_scale(p64, base=base)
    assert_within(got, ref.entropy(p, axis=axis, base=base, normalize=normalize), dtype, bound)
    if normalize:  # scipy.stats.entropy always normalises
        scipy_value = scipy.stats.entropy(p.astype(F64), base=base, axis=axis)
    else:
        scipy_value = scipy.special.entr(p64).sum(axis=-1) / _log_base(base)
    assert_within(got, scipy_value, dtype, bound)


@HYPOTHESIS
@given(data=st.data())
def test_cross_entropy_and_kl(dtype, data):
    p, q, axis, base, normalize, p64, q64 = data.draw(distribution_problems(dtype))
    batch = p64.shape[:-1]
    bound = SCALE_RTOL[dtype] * dist_scale(p64, q64, base)
    kw = dict(axis=axis, base=base, normalize=normalize)
    h = info.cross_entropy(p, q, **kw)
    kl = info.kl_divergence(p, q, **kw)
    for got in (h, kl):
        assert_scalar_or_array(got, batch, dtype)
    assert_within(h, ref.cross_entropy_dist(p, q, **kw), dtype, bound)
    assert_within(kl, ref.kl_divergence(p, q, **kw), dtype, bound)
    # SciPy: xlogy / rel_entr of the (normalised) float64 rows, scipy.stats.entropy(p, q)
    p_hat = p64 / p64.sum(axis=-1, keepdims=True) if normalize else p64
    q_hat = q64 / q64.sum(axis=-1, keepdims=True) if normalize else q64
    assert_within(
        h, -scipy.special.xlogy(p_hat, q_hat).sum(axis=-1) / _log_base(base), dtype, bound
    )
    assert_within(
        kl, scipy.special.rel_entr(p_hat, q_hat).sum(axis=-1) / _log_base(base), dtype, bound
    )
    if normalize:
        assert_within(
            kl,
            scipy.stats.entropy(p.astype(F64), q.astype(F64), base=base, axis=axis),
            dtype,
            bound,
        )


@HYPOTHESIS
@given(data=st.data())
def test_gibbs_inequality(dtype, data):
    """H(p, q) >= H(p), H(p, p) = H(p), KL(p, q) >= 0, KL(p, p) = 0, H(p, q) = H(p) + KL(p, q)
    -- each within the rounding tolerance of the rows involved."""
    p, q, axis, base, normalize, p64, q64 = data.draw(distribution_problems(dtype))
    kw = dict(axis=axis, base=base, normalize=normalize)
    tol = SCALE_RTOL[dtype] * dist_scale(p64, q64, base)
    tol_pp = SCALE_RTOL[dtype] * dist_scale(p64, p64, base)
    h_p = np.float64(info.entropy(p, **kw))
    h_pq = np.float64(info.cross_entropy(p, q, **kw))
    kl_pq = np.float64(info.kl_divergence(p, q, **kw))
    assert np.all(h_pq >= h_p - tol)
    assert np.all(kl_pq >= -tol)
    finite = np.isfinite(h_pq)
    assert np.array_equal(finite, np.isfinite(kl_pq))
    with np.errstate(invalid="ignore"):  # inf - inf in the rows left out
        gap = np.where(finite, h_pq - h_p - kl_pq, 0.0)
    np.testing.assert_array_less(np.abs(gap), np.broadcast_to(3 * tol, np.shape(finite)) + 1e-300)
    h_pp = np.float64(info.cross_entropy(p, p, **kw))
    kl_pp = np.float64(info.kl_divergence(p, p, **kw))
    assert np.all(np.abs(h_pp - h_p) <= tol_pp)
    assert np.all(np.abs(kl_pp) <= tol_pp)


@HYPOTHESIS
@given(data=st.data())
def test_entropy_from_logits(dtype, data):
    batch = tuple(data.draw(st.lists(st.integers(1, 4), max_size=2)))
    shape = batch + (data.draw(st.integers(1, 16)),)
    width = 8 * dtype.itemsize
    x = data.draw(
        hnp.arrays(
            dtype,
            shape,
            elements=st.one_of(
                st.floats(-30, 30, width=width), st.floats(-30, 30, width=width), st.just(-math.inf)
            ),
        )
    )
    x[..., 0] = np.where(np.isfinite(x[..., 0]), x[..., 0], 0)  # no row of only -inf
    x = x + dtype.type(data.draw(st.sampled_from([0.0, 1000.0, -1e5])))  # shifted rows
    base = data.draw(st.sampled_from(BASES))
    position = data.draw(st.integers(0, len(batch)))
    got = info.entropy_from_logits(np.moveaxis(x, -1, position), axis=position, base=base)
    assert_scalar_or_array(got, batch, dtype)
    x64 = x.astype(F64)
    expected = ref.entropy_from_logits(x64, base=base)
    bound = SCALE_RTOL[dtype] * (1.0 + np.abs(expected * _log_base(base))) / abs(_log_base(base))
    assert_within(got, expected, dtype, bound)
    scipy_value = scipy.stats.entropy(scipy.special.softmax(x64, axis=-1), base=base, axis=-1)
    assert_within(got, scipy_value, dtype, bound)


@HYPOTHESIS
@given(data=st.data())
def test_self_information_and_binary_entropy(dtype, data):
    width = 8 * dtype.itemsize
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))
    p = data.draw(
        hnp.arrays(
            dtype,
            shape,
            elements=st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0, width=width)),
        )
    )
    base = data.draw(st.sampled_from(BASES))
    p64 = p.astype(F64)
    with np.errstate(divide="ignore"):
        surprisal = -np.log(p64) / _log_base(base)
    # entr(p) + entr(1 - p) would lose the (1 - p) log(1 - p) ~ -p term of a tiny p
    # (1 - p rounds to 1): xlog1py keeps it
    bernoulli = (scipy.special.entr(p64) - scipy.special.xlog1py(1.0 - p64, -p64)) / _log_base(base)
    for fn, ref_fn, scipy_value in [
        (info.self_information, ref.self_information, surprisal),
        (info.binary_entropy, ref.binary_entropy, bernoulli),
    ]:
        got = fn(p, base=base)
        if shape == ():
            assert isinstance(got, np.generic) and got.dtype == dtype
        expected = ref_fn(p, base=base)
        bound = SCALE_RTOL[dtype] * np.abs(expected) + SUBNORMAL_FLOOR[dtype]
        assert_within(got, expected, dtype, bound, shape=shape)
        assert_within(got, scipy_value, dtype, bound, shape=shape)


def test_perplexity(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 3, 7)) * 2).astype(dtype)
    t = rng.integers(0, 7, size=(4, 3))
    t[0, 0] = t[2, 1] = -100
    w = rng.uniform(0.5, 2.0, size=7)
    p = rng.uniform(size=x.shape)
    p = (p / p.sum(axis=-1, keepdims=True)).astype(dtype)
    for target, kw in [
        (t, {}),
        (t, dict(weight=w, label_smoothing=0.1)),
        (p, dict(label_smoothing=0.1)),
        (np.where(t == -100, 3, t), dict(ignore_index=3)),
    ]:
        got = info.perplexity(x, target, **kw)
        assert isinstance(got, np.generic) and got.dtype == dtype
        expected = ref.perplexity(x.astype(F64), target, **kw)
        # exp turns the loss's absolute error (CE_LOSS_TOL per unit weight, weights <= 2) into a
        # relative one
        assert got == pytest.approx(expected, rel=2 * CE_LOSS_TOL[dtype] + SCALE_RTOL[dtype])
        t_w = None if "weight" not in kw else torch.tensor(w)
        torch_value = math.exp(
            torch.nn.functional.cross_entropy(
                torch.tensor(np.moveaxis(x.astype(F64), -1, 1)),
                torch.tensor(np.moveaxis(target, -1, 1) if target.dtype.kind == "f" else target),
                weight=t_w,
                ignore_index=kw.get("ignore_index", -100),
                label_smoothing=kw.get("label_smoothing", 0.0),
            ).item()
        )
        assert got == pytest.approx(torch_value, rel=2 * CE_LOSS_TOL[dtype] + SCALE_RTOL[dtype])
    assert np.isnan(info.perplexity(x, np.full((4, 3), -100)))


# ---- xent.info: special values ------------------------------------------------------------


def test_zeros_and_infinities():
    p = np.array([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [1.0, 0.0, 0.0]])
    q = np.array([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    h = info.entropy(p)
    assert h[2] == 0.0  # 0 log 0 = 0
    np.testing.assert_allclose(h, scipy.stats.entropy(p, axis=-1), rtol=1e-14)
    h_pq, kl = info.cross_entropy(p, q), info.kl_divergence(p, q)
    assert h_pq[0] == math.inf and kl[0] == math.inf  # p > 0 where q = 0
    assert h_pq[1] == math.inf and kl[1] == math.inf
    assert h_pq[2] == 0.0 and kl[2] == 0.0  # p = 0 where q = 0: the term is 0
    np.testing.assert_array_equal(kl, scipy.stats.entropy(p, q, axis=-1))
    assert info.kl_divergence(np.array([0.0, 0.5, 0.5]), np.array([0.0, 0.5, 0.5])) == 0.0
    assert info.kl_divergence(np.array([0.0, 1.0]), np.array([0.5, 0.5])) == pytest.approx(
        math.log(2), rel=1e-15
    )
    si = info.self_information(np.array([0.0, 1.0, 0.25]), base=2)
    assert si[0] == math.inf and si[1] == 0.0 and si[2] == 2.0
    be = info.binary_entropy(np.array([0.0, 1.0]))
    np.testing.assert_array_equal(be, [0.0, 0.0])
    assert info.entropy_from_logits(np.array([0.0, 0.0, -math.inf]), base=2) == 1.0


def test_bits(dtype):
    uniform = np.full(8, 1 / 8, dtype=dtype)
    tol = 4 * float(np.finfo(dtype).eps)
    # 3 bits: log(8) * (1 / log 2) may land an ulp from 3 in float64
    assert info.entropy(uniform, base=2) == pytest.approx(3.0, rel=tol)
    assert info.entropy(uniform, base=2).dtype == dtype
    assert info.cross_entropy(uniform, uniform, base=2) == pytest.approx(3.0, rel=tol)
    assert info.entropy_from_logits(np.zeros(8, dtype=dtype), base=2) == pytest.approx(3.0, rel=tol)
    assert info.entropy(uniform, base=8) == pytest.approx(1.0, rel=tol)
    one_bit = info.binary_entropy(dtype.type(0.5), base=2)
    assert one_bit == 1.0 and one_bit.dtype == dtype
    assert info.binary_entropy(dtype.type(0.5)) == pytest.approx(math.log(2), rel=1e-7)


def test_normalize():
    raw = np.array([[1.0, 3.0, 0.0], [2.0, 2.0, 4.0]])
    other = np.array([[5.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    norm = raw / raw.sum(axis=1, keepdims=True)
    norm_o = other / other.sum(axis=1, keepdims=True)
    with pytest.raises(ValueError, match=re.escape("p[0]")):
        info.entropy(raw)
    np.testing.assert_allclose(info.entropy(raw, normalize=True), info.entropy(norm), rtol=1e-14)
    np.testing.assert_allclose(
        info.entropy(raw, normalize=True), scipy.stats.entropy(raw, axis=1), rtol=1e-14
    )
    np.testing.assert_allclose(
        info.cross_entropy(raw, other, normalize=True), info.cross_entropy(norm, norm_o), rtol=1e-14
    )
    np.testing.assert_allclose(
        info.kl_divergence(raw, other, normalize=True, base=2),
        scipy.stats.entropy(raw, other, axis=1, base=2),
        rtol=1e-14,
    )
    before = raw.copy()
    info.entropy(raw, normalize=True)
    np.testing.assert_array_equal(raw, before)  # not normalised in place
    zero_row = np.array([[0.5, 0.5], [0.0, 0.0]])
    for call in (
        lambda: info.entropy(zero_row, normalize=True),
        lambda: info.cross_entropy(zero_row, zero_row[::-1].copy(), normalize=True),
        lambda: info.kl_divergence(zero_row, zero_row[::-1].copy(), normalize=True),
    ):
        with pytest.raises(ValueError, match=re.escape("[1]")):
            call()


def _info_many_rows(dtype):
    rng = np.random.default_rng(13)
    p = rng.dirichlet(np.ones(50), size=20_000).astype(dtype)
    q = rng.dirichlet(np.ones(50), size=20_000).astype(dtype)
    x = (rng.standard_normal((20_000, 50)) * 3).astype(dtype)
    t = rng.integers(0, 50, size=20_000)
    # name: (xent call taking num_threads and check, reference value, error scale per row)
    p64, q64 = p.astype(F64), q.astype(F64)
    return {
        "entropy": (
            lambda **k: info.entropy(p, base=2, **k),
            ref.entropy(p64, base=2),
            dist_scale(p64, base=2),
        ),
        "entropy_normalize": (
            lambda **k: info.entropy(p * 3, normalize=True, **k),
            ref.entropy(p64 * 3, normalize=True),
            dist_scale(p64 * 3),
        ),
        "cross_entropy": (
            lambda **k: info.cross_entropy(p, q, **k),
            ref.cross_entropy_dist(p64, q64),
            dist_scale(p64, q64),
        ),
        "kl_divergence": (
            lambda **k: info.kl_divergence(p, q, base=10, **k),
            ref.kl_divergence(p64, q64, base=10),
            dist_scale(p64, q64, 10),
        ),
        "kl_normalize": (
            lambda **k: info.kl_divergence(p, q * 2, normalize=True, **k),
            ref.kl_divergence(p64, q64 * 2, normalize=True),
            dist_scale(p64, q64 * 2),
        ),
        "entropy_from_logits": (
            lambda **k: info.entropy_from_logits(x, **k),
            ref.entropy_from_logits(x.astype(F64)),
            1.0 + ref.entropy_from_logits(x.astype(F64)),
        ),
        "perplexity": (
            lambda **k: info.perplexity(x, t, **k),
            ref.perplexity(x.astype(F64), t),
            # exp: the loss's absolute error becomes a relative one
            ref.perplexity(x.astype(F64), t) * CE_LOSS_TOL[dtype] / SCALE_RTOL[dtype],
        ),
    }


INFO_MANY = [
    "entropy",
    "entropy_normalize",
    "cross_entropy",
    "kl_divergence",
    "kl_normalize",
    "entropy_from_logits",
    "perplexity",
]


@pytest.mark.parametrize("name", INFO_MANY)
def test_info_many_rows_on_two_threads(dtype, name):
    """20 000 rows, so that two threads share the work: every row still right, every time."""
    call, expected, scale = _info_many_rows(dtype)[name]
    for _ in range(5):
        assert_within(call(num_threads=2), expected, dtype, SCALE_RTOL[dtype] * scale)


@pytest.mark.parametrize("name", INFO_MANY)
def test_info_check_mode_and_threads(dtype, name):
    """check=True passes on correct results; 1 and 2 threads give the same bits."""
    call = _info_many_rows(dtype)[name][0]
    one = np.asarray(call(num_threads=1, check=True))
    for _ in range(5):
        assert np.asarray(call(num_threads=2)).tobytes() == one.tobytes()


@pytest.mark.parametrize(
    "fn", [info.self_information, info.binary_entropy], ids=["self_information", "binary_entropy"]
)
def test_elementwise_threads(fn):
    p = np.random.default_rng(14).uniform(size=(3000, 50))
    assert fn(p, num_threads=1).tobytes() == fn(p, num_threads=2).tobytes()


# ---- xent.info: errors ------------------------------------------------------------------------

DIST_FUNCTIONS = {
    "entropy": lambda p, **kw: info.entropy(p, **kw),
    "cross_entropy": lambda p, axis=-1, **kw: info.cross_entropy(
        p, np.full(p.shape, 1 / p.shape[axis], dtype=p.dtype), axis=axis, **kw
    ),
    "kl_divergence": lambda p, axis=-1, **kw: info.kl_divergence(
        p, np.full(p.shape, 1 / p.shape[axis], dtype=p.dtype), axis=axis, **kw
    ),
}


@pytest.mark.parametrize("name", list(DIST_FUNCTIONS))
@pytest.mark.parametrize("normalize", [False, True])
def test_not_a_distribution(name, normalize):
    fn = DIST_FUNCTIONS[name]
    negative = np.array([[0.5, 0.5], [1.5, -0.5]])
    nan = np.array([[0.5, 0.5], [math.nan, 0.5]])
    for bad in (negative, nan):
        with pytest.raises(ValueError, match=re.escape("p[1]")):
            fn(bad, normalize=normalize)
    batch = np.full((2, 3, 4), 0.25)
    batch[1, 2, 3] = -0.25
    with pytest.raises(ValueError, match=re.escape("p[1, 2]")):
        fn(batch, normalize=normalize)
    with pytest.raises(ValueError, match=re.escape("p[1, 2]")):  # axis=0: same rows
        fn(np.moveaxis(batch, -1, 0), axis=0, normalize=normalize)
    if not normalize:
        with pytest.raises(ValueError, match=re.escape("p[1]") + ".*sums to"):
            fn(np.array([[0.5, 0.5], [0.3, 0.3]]))
        # within the float32 tolerance, 1e-4 (which float64 does not allow)
        fn(np.array([0.5, 0.50005], dtype=np.float32))
        with pytest.raises(ValueError):
            fn(np.array([0.5, 0.50005]))


def test_mixed_dtypes_use_each_inputs_tolerance():
    """SUM_TOLERANCE is per input dtype: a float32 p is held to float32's 1e-4, also next to
    a float64 q (as entropy(p) holds it)."""
    rng = np.random.default_rng(11)
    p32 = (rng.dirichlet(np.ones(1000), size=4) * (1 + 3e-6)).astype(np.float32)
    q64 = rng.dirichlet(np.ones(1000), size=4)
    sums = p32.astype(F64).sum(axis=1)
    assert np.all(np.abs(sums - 1) < 1e-5) and np.all(np.abs(sums - 1) > 1e-8)
    info.entropy(p32)
    info.cross_entropy(p32, p32)
    expected = ref.kl_divergence(p32, q64)
    np.testing.assert_allclose(info.kl_divergence(p32, q64), expected, rtol=1e-10)
    np.testing.assert_allclose(
        info.cross_entropy(p32, q64), ref.cross_entropy_dist(p32, q64), rtol=1e-10
    )
    np.testing.assert_allclose(
        info.kl_divergence(q64, p32), ref.kl_divergence(q64, p32), rtol=1e-10
    )


@pytest.mark.parametrize("normalize", [False, True])
def test_bad_q(normalize):
    p = np.full((2, 3), 1 / 3)
    for fn in (info.cross_entropy, info.kl_divergence):
        q = p.copy()
        q[1, 0] = -0.1
        with pytest.raises(ValueError, match=re.escape("q[1]")):
            fn(p, q, normalize=normalize)
        q[1, 0] = math.nan
        with pytest.raises(ValueError, match=re.escape("q[1]")):
            fn(p, q, normalize=normalize)
        if not normalize:
            with pytest.raises(ValueError, match=re.escape("q[0]")):
                fn(p, p * 0.9)
        for shape in [(3, 2), (2, 4), (3,), (1, 3), (2, 3, 1)]:
            with pytest.raises(ValueError, match="q has shape"):
                fn(p, np.full(shape, 1 / shape[-1]), normalize=normalize)


@pytest.mark.parametrize("bad", [0, 1, -2, 1.0, math.inf, math.nan, "2", True, None])
def test_bad_base(bad):
    p = np.array([0.25, 0.75])
    calls = [
        lambda b: info.entropy(p, base=b),
        lambda b: info.cross_entropy(p, p, base=b),
        lambda b: info.kl_divergence(p, p, base=b),
        lambda b: info.self_information(p, base=b),
        lambda b: info.binary_entropy(p, base=b),
        lambda b: info.entropy_from_logits(p, base=b),
    ]
    for call in calls:
        if bad is None:  # None is nats: the control
            call(bad)
        elif isinstance(bad, (str, bool)):
            with pytest.raises(TypeError, match="base"):
                call(bad)
        else:
            with pytest.raises(ValueError, match="base"):
                call(bad)


def test_non_floating_and_empty():
    for bad in (
        np.array([1, 0]),
        np.array([True, False]),
        np.array(["a", "b"]),
        np.array([1 + 0j, 0j]),
    ):
        for call in (
            lambda a: info.entropy(a),
            lambda a: info.cross_entropy(a, a),
            lambda a: info.kl_divergence(a, a),
            lambda a: info.self_information(a),
            lambda a: info.binary_entropy(a),
            lambda a: info.entropy_from_logits(a),
        ):
            with pytest.raises(TypeError):
                call(bad)
    good = np.array([0.5, 0.5])
    for fn in (info.cross_entropy, info.kl_divergence):
        with pytest.raises(TypeError):
            fn(good, np.array([1, 0]))
    for empty, axis in [(np.zeros((2, 0)), -1), (np.zeros((0, 3)), 0), (np.zeros(0), 0)]:
        for call in (
            lambda a: info.entropy(a, axis=axis),
            lambda a: info.cross_entropy(a, a, axis=axis),
            lambda a: info.kl_divergence(a, a, axis=axis),
            lambda a: info.entropy_from_logits(a, axis=axis),
        ):
            with pytest.raises(ValueError, match="empty"):
                call(empty)
    # an empty *batch* is fine
    assert info.entropy(np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize(
    "fn", [info.self_information, info.binary_entropy], ids=["self_information", "binary_entropy"]
)
def test_elementwise_outside_unit_interval(fn):
    for bad in (-0.1, 1.1, math.nan, -math.inf, math.inf, -1e-300, 1 + 2**-52):
        p = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, bad]])
        with pytest.raises(ValueError, match=re.escape("p[1, 2]")):
            fn(p)
        if abs(bad) > 1e-30 and bad != 1 + 2**-52:  # else float32 rounds it into [0, 1]
            with pytest.raises(ValueError, match=re.escape("p[1]")):
                fn(p[1, 1:].astype(np.float32))
    fn(np.array([0.0, 1.0, -0.0]))  # the ends are probabilities
