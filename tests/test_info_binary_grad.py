"""xent.info, the binary cross-entropies and cross_entropy_with_grad: the public API against
SciPy, PyTorch (autograd) and xent.reference.

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
bits). The loss of ``cross_entropy_with_grad`` uses tests/test_against_reference.py's
tolerance (2e-6 absolute per unit of the row's coefficients, 1e-12 for float64).

Binary cross-entropy: each element's loss is compared relative to the sum of the magnitudes
of its terms (``w (|(1 - y) x| + |L| softplus(-x))`` for logits: for x << 0 and y = 0 the
two terms cancel to a small result with an error of a few ulps of |x|, as in PyTorch), and a
reduction relative to the sum (mean) of those scales: rtol 1e-6 (float32; measured <= 2e-7)
/ 1e-12 (float64). Targets are given in the input's dtype: xent computes with the target
rounded to it, see ``_binary_data``.

Gradients are compared per element *relative to the element's (row's) gradient scale*: the
gradient of a mean is ~1 / N, of a weighted sum ~w, so ``grad / unit`` is compared, with
``unit = |g| * c`` where ``g`` is the incoming factor of the row (``grad_output / N`` for a
mean, ``grad_output[i]`` for "none") and ``c`` the sum of the row's loss coefficients (the
weights: ``(1 - eps) w_t + eps / C sum w`` for class indices, ``sum_j w_j q_j`` for
probabilities, ``w`` for the binary losses). ``grad / unit`` is O(1) and computed from a
float32 softmax / sigmoid (a few ulps) with one or two float32 roundings: it must agree within
1e-5 (float32; measured <= 1e-7 for cross-entropy, 2.5e-7 for BCE with logits) or 1e-12
(float64), absolute and relative (relative for PyTorch's 1e12-sized BCE gradient at probs 0
and 1). A gradient scaled below the dtype's range by a tiny grad_output underflows: the oracle
is rounded to the dtype first, and a few subnormal spacings are allowed.
"""

import math
import re
import zlib

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import HealthCheck, given, settings, strategies as st

import xent
from xent import info
from xent import reference as ref

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
FLOAT_DTYPES = [F32, F64]
REDUCTIONS = ["none", "mean", "sum"]
SMOOTHINGS = [0.0, 0.1, 1.0]
BASES = [None, 2, 10]

#: rtol of information quantities and losses (relative to the row's scale), and of gradients
#: (relative to the row's gradient scale): see the module docstring.
RTOL = {F32: 1e-6, F64: 1e-12}
GRAD_TOL = {F32: 1e-5, F64: 1e-12}
#: A few subnormal spacings: the absolute floor of a result that is subnormal.
TINY = {F32: 8 * float(np.finfo(F32).smallest_subnormal),
        F64: 8 * float(np.finfo(F64).smallest_subnormal)}
#: Loss tolerance of cross_entropy, as tests/test_against_reference.py explains: an absolute
#: few ulps of 1 per unit of the row's coefficients (log(sum exp) in the input precision).
CE_TOL = {F32: 2e-6, F64: 1e-12}

HYPOTHESIS = settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large])


def _seed(*args):
    """A seed from the test's parameters, the same in every process (unlike hash())."""
    return zlib.crc32(repr(args).encode())


def _log_base(base):
    return 1.0 if base is None else math.log(base)


# ---- comparison helpers ---------------------------------------------------------------------

def assert_within(got, expected, dtype, bound, shape=None):
    """``got`` (of ``dtype``) against the float64 ``expected``: non-finite values must be equal,
    finite ones within ``bound`` (scalar or per element) of each other."""
    got = np.asarray(got)
    assert got.dtype == dtype, f"result dtype {got.dtype}, expected {dtype}"
    expected = np.asarray(expected, dtype=np.float64)
    if shape is not None:
        assert got.shape == shape, f"result shape {got.shape}, expected {shape}"
    assert got.shape == expected.shape, f"shape {got.shape} vs oracle's {expected.shape}"
    g = got.astype(np.float64)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(g[~finite], expected[~finite],
                                  err_msg="non-finite results differ")
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), expected.shape)[finite]
    g, e = g[finite], expected[finite]
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(g - e) <= b)
    if bad.any():
        i = int(np.flatnonzero(bad)[np.argmax((np.abs(g - e) / b)[bad])])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} values differ beyond the tolerance; worst: got "
            f"{g[i]!r}, expected {e[i]!r}, |diff| {abs(g[i] - e[i]):.3g} > bound {b[i]:.3g}")


def assert_scalar_or_array(got, batch_shape, dtype):
    if batch_shape == ():
        assert isinstance(got, np.generic) and got.dtype == dtype, type(got)
    else:
        assert isinstance(got, np.ndarray) and got.shape == batch_shape


def assert_grad_close(got, expected, unit, dtype):
    """Gradients compared as ``grad / unit`` with rtol = atol = GRAD_TOL (module docstring):
    ``|got - expected| <= tol * (unit + |expected|)``, plus a few subnormal spacings, as a
    gradient scaled by a tiny grad_output may underflow (the float64 oracle is rounded to the
    dtype first, so a gradient below the dtype's range is 0 on both sides)."""
    got = np.asarray(got)
    assert got.dtype == dtype, f"gradient dtype {got.dtype}, expected {dtype}"
    assert got.shape == np.shape(expected), (got.shape, np.shape(expected))
    with np.errstate(over="ignore"):
        want = np.asarray(expected, dtype=np.float64).astype(dtype).astype(np.float64)
    unit = np.broadcast_to(np.asarray(unit, dtype=np.float64), got.shape)
    unit = np.where(np.isfinite(unit) & (unit > 0), unit, 1.0)
    assert_within(got, want, dtype, GRAD_TOL[dtype] * (unit + np.abs(want)) + TINY[dtype])


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
    return st.floats(2.0 ** -30, 1.0)


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
    return (moved[0], moved[1], axis, draw(st.sampled_from(BASES)), normalize,
            p.astype(F64), None if q is None else q.astype(F64))


# ---- xent.info: against SciPy and xent.reference --------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@HYPOTHESIS
@given(data=st.data())
def test_entropy(dtype, data):
    p, _, axis, base, normalize, p64, _ = data.draw(distribution_problems(dtype, False))
    got = info.entropy(p, axis=axis, base=base, normalize=normalize)
    assert_scalar_or_array(got, p64.shape[:-1], dtype)
    bound = RTOL[dtype] * dist_scale(p64, base=base)
    assert_within(got, ref.entropy(p, axis=axis, base=base, normalize=normalize), dtype, bound)
    if normalize:  # scipy.stats.entropy always normalises
        scipy_value = scipy.stats.entropy(p.astype(F64), base=base, axis=axis)
    else:
        scipy_value = scipy.special.entr(p64).sum(axis=-1) / _log_base(base)
    assert_within(got, scipy_value, dtype, bound)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@HYPOTHESIS
@given(data=st.data())
def test_cross_entropy_and_kl(dtype, data):
    p, q, axis, base, normalize, p64, q64 = data.draw(distribution_problems(dtype))
    batch = p64.shape[:-1]
    bound = RTOL[dtype] * dist_scale(p64, q64, base)
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
    assert_within(h, -scipy.special.xlogy(p_hat, q_hat).sum(axis=-1) / _log_base(base), dtype,
                  bound)
    assert_within(kl, scipy.special.rel_entr(p_hat, q_hat).sum(axis=-1) / _log_base(base),
                  dtype, bound)
    if normalize:
        assert_within(kl, scipy.stats.entropy(p.astype(F64), q.astype(F64), base=base,
                                              axis=axis), dtype, bound)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@HYPOTHESIS
@given(data=st.data())
def test_gibbs_inequality(dtype, data):
    """H(p, q) >= H(p), H(p, p) = H(p), KL(p, q) >= 0, KL(p, p) = 0, H(p, q) = H(p) + KL(p, q)
    -- each within the rounding tolerance of the rows involved."""
    p, q, axis, base, normalize, p64, q64 = data.draw(distribution_problems(dtype))
    kw = dict(axis=axis, base=base, normalize=normalize)
    tol = RTOL[dtype] * dist_scale(p64, q64, base)
    tol_pp = RTOL[dtype] * dist_scale(p64, p64, base)
    h_p = np.float64(info.entropy(p, **kw))
    h_pq = np.float64(info.cross_entropy(p, q, **kw))
    kl_pq = np.float64(info.kl_divergence(p, q, **kw))
    assert np.all(h_pq >= h_p - tol)
    assert np.all(kl_pq >= -tol)
    finite = np.isfinite(h_pq)
    assert np.array_equal(finite, np.isfinite(kl_pq))
    with np.errstate(invalid="ignore"):  # inf - inf in the rows left out
        gap = np.where(finite, h_pq - h_p - kl_pq, 0.0)
    np.testing.assert_array_less(np.abs(gap),
                                 np.broadcast_to(3 * tol, np.shape(finite)) + 1e-300)
    h_pp = np.float64(info.cross_entropy(p, p, **kw))
    kl_pp = np.float64(info.kl_divergence(p, p, **kw))
    assert np.all(np.abs(h_pp - h_p) <= tol_pp)
    assert np.all(np.abs(kl_pp) <= tol_pp)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@HYPOTHESIS
@given(data=st.data())
def test_entropy_from_logits(dtype, data):
    batch = tuple(data.draw(st.lists(st.integers(1, 4), max_size=2)))
    shape = batch + (data.draw(st.integers(1, 16)),)
    width = 8 * dtype.itemsize
    x = data.draw(hnp.arrays(dtype, shape, elements=st.one_of(
        st.floats(-30, 30, width=width), st.floats(-30, 30, width=width),
        st.just(-math.inf))))
    x[..., 0] = np.where(np.isfinite(x[..., 0]), x[..., 0], 0)  # no row of only -inf
    x = x + dtype.type(data.draw(st.sampled_from([0.0, 1000.0, -1e5])))  # shifted rows
    base = data.draw(st.sampled_from(BASES))
    position = data.draw(st.integers(0, len(batch)))
    got = info.entropy_from_logits(np.moveaxis(x, -1, position), axis=position, base=base)
    assert_scalar_or_array(got, batch, dtype)
    x64 = x.astype(F64)
    expected = ref.entropy_from_logits(x64, base=base)
    bound = RTOL[dtype] * (1.0 + np.abs(expected * _log_base(base))) / abs(_log_base(base))
    assert_within(got, expected, dtype, bound)
    scipy_value = scipy.stats.entropy(scipy.special.softmax(x64, axis=-1), base=base, axis=-1)
    assert_within(got, scipy_value, dtype, bound)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@HYPOTHESIS
@given(data=st.data())
def test_self_information_and_binary_entropy(dtype, data):
    width = 8 * dtype.itemsize
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))
    p = data.draw(hnp.arrays(dtype, shape, elements=st.one_of(
        st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0, width=width))))
    base = data.draw(st.sampled_from(BASES))
    p64 = p.astype(F64)
    with np.errstate(divide="ignore"):
        surprisal = -np.log(p64) / _log_base(base)
    # entr(p) + entr(1 - p) would lose the (1 - p) log(1 - p) ~ -p term of a tiny p
    # (1 - p rounds to 1): xlog1py keeps it
    bernoulli = (scipy.special.entr(p64) - scipy.special.xlog1py(1.0 - p64, -p64)
                 ) / _log_base(base)
    for fn, ref_fn, scipy_value in [(info.self_information, ref.self_information, surprisal),
                                    (info.binary_entropy, ref.binary_entropy, bernoulli)]:
        got = fn(p, base=base)
        if shape == ():
            assert isinstance(got, np.generic) and got.dtype == dtype
        expected = ref_fn(p, base=base)
        bound = RTOL[dtype] * np.abs(expected) + TINY[dtype]
        assert_within(got, expected, dtype, bound, shape=shape)
        assert_within(got, scipy_value, dtype, bound, shape=shape)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_perplexity(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 3, 7)) * 2).astype(dtype)
    t = rng.integers(0, 7, size=(4, 3))
    t[0, 0] = t[2, 1] = -100
    w = rng.uniform(0.5, 2.0, size=7)
    p = rng.uniform(size=x.shape)
    p = (p / p.sum(axis=-1, keepdims=True)).astype(dtype)
    for target, kw in [(t, {}), (t, dict(weight=w, label_smoothing=0.1)),
                       (p, dict(label_smoothing=0.1)),
                       (np.where(t == -100, 3, t), dict(ignore_index=3))]:
        got = info.perplexity(x, target, **kw)
        assert isinstance(got, np.generic) and got.dtype == dtype
        expected = ref.perplexity(x.astype(F64), target, **kw)
        # exp turns the loss's absolute error (CE_TOL per unit weight, weights <= 2) into a
        # relative one
        assert got == pytest.approx(expected, rel=2 * CE_TOL[dtype] + RTOL[dtype])
        t_w = None if "weight" not in kw else torch.tensor(w)
        torch_value = math.exp(torch.nn.functional.cross_entropy(
            torch.tensor(np.moveaxis(x.astype(F64), -1, 1)),
            torch.tensor(np.moveaxis(target, -1, 1) if target.dtype.kind == "f" else target),
            weight=t_w, ignore_index=kw.get("ignore_index", -100),
            label_smoothing=kw.get("label_smoothing", 0.0)).item())
        assert got == pytest.approx(torch_value, rel=2 * CE_TOL[dtype] + RTOL[dtype])
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
        math.log(2), rel=1e-15)
    si = info.self_information(np.array([0.0, 1.0, 0.25]), base=2)
    assert si[0] == math.inf and si[1] == 0.0 and si[2] == 2.0
    be = info.binary_entropy(np.array([0.0, 1.0]))
    np.testing.assert_array_equal(be, [0.0, 0.0])
    assert info.entropy_from_logits(np.array([0.0, 0.0, -math.inf]), base=2) == 1.0


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_bits(dtype):
    uniform = np.full(8, 1 / 8, dtype=dtype)
    tol = 4 * float(np.finfo(dtype).eps)
    # 3 bits: log(8) * (1 / log 2) may land an ulp from 3 in float64
    assert info.entropy(uniform, base=2) == pytest.approx(3.0, rel=tol)
    assert info.entropy(uniform, base=2).dtype == dtype
    assert info.cross_entropy(uniform, uniform, base=2) == pytest.approx(
        3.0, rel=tol)
    assert info.entropy_from_logits(np.zeros(8, dtype=dtype), base=2) == pytest.approx(
        3.0, rel=tol)
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
    np.testing.assert_allclose(info.entropy(raw, normalize=True), info.entropy(norm),
                               rtol=1e-14)
    np.testing.assert_allclose(info.entropy(raw, normalize=True),
                               scipy.stats.entropy(raw, axis=1), rtol=1e-14)
    np.testing.assert_allclose(info.cross_entropy(raw, other, normalize=True),
                               info.cross_entropy(norm, norm_o), rtol=1e-14)
    np.testing.assert_allclose(info.kl_divergence(raw, other, normalize=True, base=2),
                               scipy.stats.entropy(raw, other, axis=1, base=2), rtol=1e-14)
    before = raw.copy()
    info.entropy(raw, normalize=True)
    np.testing.assert_array_equal(raw, before)  # not normalised in place
    zero_row = np.array([[0.5, 0.5], [0.0, 0.0]])
    for call in (lambda: info.entropy(zero_row, normalize=True),
                 lambda: info.cross_entropy(zero_row, zero_row[::-1].copy(), normalize=True),
                 lambda: info.kl_divergence(zero_row, zero_row[::-1].copy(), normalize=True)):
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
        "entropy": (lambda **k: info.entropy(p, base=2, **k), ref.entropy(p64, base=2),
                    dist_scale(p64, base=2)),
        "entropy_normalize": (lambda **k: info.entropy(p * 3, normalize=True, **k),
                              ref.entropy(p64 * 3, normalize=True),
                              dist_scale(p64 * 3)),
        "cross_entropy": (lambda **k: info.cross_entropy(p, q, **k),
                          ref.cross_entropy_dist(p64, q64), dist_scale(p64, q64)),
        "kl_divergence": (lambda **k: info.kl_divergence(p, q, base=10, **k),
                          ref.kl_divergence(p64, q64, base=10), dist_scale(p64, q64, 10)),
        "kl_normalize": (lambda **k: info.kl_divergence(p, q * 2, normalize=True, **k),
                         ref.kl_divergence(p64, q64 * 2, normalize=True),
                         dist_scale(p64, q64 * 2)),
        "entropy_from_logits": (lambda **k: info.entropy_from_logits(x, **k),
                                ref.entropy_from_logits(x.astype(F64)),
                                1.0 + ref.entropy_from_logits(x.astype(F64))),
        "perplexity": (lambda **k: info.perplexity(x, t, **k),
                       ref.perplexity(x.astype(F64), t),
                       # exp: the loss's absolute error becomes a relative one
                       ref.perplexity(x.astype(F64), t) * CE_TOL[dtype] / RTOL[dtype]),
    }


INFO_MANY = ["entropy", "entropy_normalize", "cross_entropy", "kl_divergence", "kl_normalize",
             "entropy_from_logits", "perplexity"]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("name", INFO_MANY)
def test_info_many_rows_on_two_threads(dtype, name):
    """20 000 rows, so that two threads share the work: every row still right, every time."""
    call, expected, scale = _info_many_rows(dtype)[name]
    for _ in range(5):
        assert_within(call(num_threads=2), expected, dtype, RTOL[dtype] * scale)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("name", INFO_MANY)
def test_info_check_mode_and_threads(dtype, name):
    """check=True passes on correct results; 1 and 2 threads give the same bits."""
    call = _info_many_rows(dtype)[name][0]
    one = np.asarray(call(num_threads=1, check=True))
    for _ in range(5):
        assert np.asarray(call(num_threads=2)).tobytes() == one.tobytes()


@pytest.mark.parametrize("fn", [info.self_information, info.binary_entropy],
                         ids=["self_information", "binary_entropy"])
def test_elementwise_threads(fn):
    p = np.random.default_rng(14).uniform(size=(3000, 50))
    assert fn(p, num_threads=1).tobytes() == fn(p, num_threads=2).tobytes()


# ---- xent.info: errors ------------------------------------------------------------------------

DIST_FUNCTIONS = {
    "entropy": lambda p, **kw: info.entropy(p, **kw),
    "cross_entropy": lambda p, axis=-1, **kw: info.cross_entropy(
        p, np.full(p.shape, 1 / p.shape[axis], dtype=p.dtype), axis=axis, **kw),
    "kl_divergence": lambda p, axis=-1, **kw: info.kl_divergence(
        p, np.full(p.shape, 1 / p.shape[axis], dtype=p.dtype), axis=axis, **kw),
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
    np.testing.assert_allclose(info.cross_entropy(p32, q64),
                               ref.cross_entropy_dist(p32, q64), rtol=1e-10)
    np.testing.assert_allclose(info.kl_divergence(q64, p32),
                               ref.kl_divergence(q64, p32), rtol=1e-10)


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
    calls = [lambda b: info.entropy(p, base=b), lambda b: info.cross_entropy(p, p, base=b),
             lambda b: info.kl_divergence(p, p, base=b),
             lambda b: info.self_information(p, base=b),
             lambda b: info.binary_entropy(p, base=b),
             lambda b: info.entropy_from_logits(p, base=b)]
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
    for bad in (np.array([1, 0]), np.array([True, False]), np.array(["a", "b"]),
                np.array([1 + 0j, 0j])):
        for call in (lambda a: info.entropy(a), lambda a: info.cross_entropy(a, a),
                     lambda a: info.kl_divergence(a, a), lambda a: info.self_information(a),
                     lambda a: info.binary_entropy(a), lambda a: info.entropy_from_logits(a)):
            with pytest.raises(TypeError):
                call(bad)
    good = np.array([0.5, 0.5])
    for fn in (info.cross_entropy, info.kl_divergence):
        with pytest.raises(TypeError):
            fn(good, np.array([1, 0]))
    for empty, axis in [(np.zeros((2, 0)), -1), (np.zeros((0, 3)), 0), (np.zeros(0), 0)]:
        for call in (lambda a: info.entropy(a, axis=axis),
                     lambda a: info.cross_entropy(a, a, axis=axis),
                     lambda a: info.kl_divergence(a, a, axis=axis),
                     lambda a: info.entropy_from_logits(a, axis=axis)):
            with pytest.raises(ValueError, match="empty"):
                call(empty)
    # an empty *batch* is fine
    assert info.entropy(np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize("fn", [info.self_information, info.binary_entropy],
                         ids=["self_information", "binary_entropy"])
def test_elementwise_outside_unit_interval(fn):
    for bad in (-0.1, 1.1, math.nan, -math.inf, math.inf, -1e-300, 1 + 2 ** -52):
        p = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, bad]])
        with pytest.raises(ValueError, match=re.escape("p[1, 2]")):
            fn(p)
        if abs(bad) > 1e-30 and bad != 1 + 2 ** -52:  # else float32 rounds it into [0, 1]
            with pytest.raises(ValueError, match=re.escape("p[1]")):
                fn(p[1, 1:].astype(np.float32))
    fn(np.array([0.0, 1.0, -0.0]))  # the ends are probabilities


# ---- binary cross-entropy ---------------------------------------------------------------------

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
        return np.abs(w) * (y * -np.maximum(np.log(x), -100.0)
                            + (1 - y) * -np.maximum(np.log1p(-x), -100.0))


def assert_bce_loss(got, expected, scale, reduction, dtype, shape):
    rtol = RTOL[dtype]
    if reduction == "none":
        assert isinstance(got, np.ndarray) or shape == ()
        assert_within(got, expected, dtype, rtol * scale + TINY[dtype], shape=shape)
        return
    assert isinstance(got, np.generic) and got.dtype == dtype, type(got)
    total = float(np.sum(scale)) / (np.size(scale) if reduction == "mean" else 1)
    assert_within(got, expected, dtype, rtol * total + TINY[dtype])


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


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
def test_binary_cross_entropy_against_reference(isa, dtype, shape, logits):
    rng = np.random.default_rng(_seed(str(dtype), shape, logits))
    x, y = _binary_data(shape, dtype, rng, logits)
    x64 = x.astype(F64)
    loss_fn = xent.binary_cross_entropy_with_logits if logits else xent.binary_cross_entropy
    grad_fn = (xent.binary_cross_entropy_with_logits_with_grad if logits
               else xent.binary_cross_entropy_with_grad)
    ref_loss = ref.binary_cross_entropy_with_logits if logits else ref.binary_cross_entropy
    ref_grad = (ref.binary_cross_entropy_with_logits_grad if logits
                else ref.binary_cross_entropy_grad)
    for _, w in _weight_cases(shape, rng):
        for pw in (_pos_weight_cases(shape, rng) if logits else [None]):
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
                    assert_grad_close(grad, ref_grad(x64, y, grad_output=g, **kw),
                                      _unit(reduction, g, x.size, shape, w), dtype)


def _torch_binary(torch, logits, x64, y, w, pw, reduction, g):
    """PyTorch's loss and autograd gradient, in float64."""
    F = torch.nn.functional
    xt = torch.tensor(x64, requires_grad=True)
    kw = dict(weight=None if w is None else torch.tensor(np.asarray(w, F64)),
              reduction=reduction)
    if logits:
        loss = F.binary_cross_entropy_with_logits(
            xt, torch.tensor(np.asarray(y, F64)),
            pos_weight=None if pw is None else torch.tensor(pw), **kw)
    else:
        loss = F.binary_cross_entropy(xt, torch.tensor(np.asarray(y, F64)), **kw)
    incoming = torch.ones_like(loss) if g is None else torch.tensor(np.asarray(g, F64))
    loss.backward(incoming)
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
def test_binary_cross_entropy_against_torch(dtype, shape, logits):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(_seed(str(dtype), shape, logits, 1))
    x, y = _binary_data(shape, dtype, rng, logits)
    x64 = x.astype(F64)
    grad_fn = (xent.binary_cross_entropy_with_logits_with_grad if logits
               else xent.binary_cross_entropy_with_grad)
    for _, w in _weight_cases(shape, rng):
        for pw in (_pos_weight_cases(shape, rng) if logits else [None]):
            extra = dict(pos_weight=pw) if logits else {}
            scale = _bce_scale(x64, y, w, pw, logits)
            for reduction in REDUCTIONS:
                for g in _incoming(reduction, shape, rng):
                    t_loss, t_grad = _torch_binary(torch, logits, x64, y, w, pw, reduction, g)
                    loss, grad = grad_fn(x, y, weight=w, reduction=reduction, grad_output=g,
                                         **extra)
                    assert_bce_loss(loss, t_loss, scale, reduction, dtype, shape)
                    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
                    assert_grad_close(grad, t_grad, _unit(reduction, g, x.size, shape, w),
                                      dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
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
        z, y, pos_weight=np.full(6, 2.0), reduction="none")
    # wrong by 1e4: 1e4 (y = 0), pos_weight * 1e4 (y = 1); right: exactly 0 (for y = 0 the
    # terms x and max(-x, 0) cancel); y = 0.5: 0.5 x + 1.5 softplus(-x)
    np.testing.assert_array_equal(loss, np.array([1e4, 2e4, 0, 0, 0.5e4, 1e4], dtype=dtype))
    # L sigmoid(x) - pos_weight y with L = 1 + (pos_weight - 1) y
    np.testing.assert_array_equal(grad, np.array([1, -2, 0, 0, 0.5, -1], dtype=dtype))
    torch = pytest.importorskip("torch")
    t_loss, t_grad = _torch_binary(torch, True, z.astype(F64), y, None, np.full(6, 2.0),
                                   "none", None)
    np.testing.assert_array_equal(loss, t_loss.astype(dtype))
    np.testing.assert_array_equal(grad, t_grad.astype(dtype))
    t_loss, t_grad = _torch_binary(torch, False, x.astype(F64), np.asarray(y), None, None,
                                   "sum", None)
    loss, grad = xent.binary_cross_entropy_with_grad(x, y, reduction="sum")
    assert loss == pytest.approx(t_loss) and np.allclose(grad, t_grad, rtol=1e-6)


@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
def test_binary_errors(logits):
    loss_fn = xent.binary_cross_entropy_with_logits if logits else xent.binary_cross_entropy
    grad_fn = (xent.binary_cross_entropy_with_logits_with_grad if logits
               else xent.binary_cross_entropy_with_grad)
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


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_in_place(isa, dtype, logits, reduction):
    grad_fn = (xent.binary_cross_entropy_with_logits_with_grad if logits
               else xent.binary_cross_entropy_with_grad)
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
                    xent.binary_cross_entropy_with_logits(x, y, reduction=reduction,
                                                          check=True, **extra)
                    xent.binary_cross_entropy_with_logits_with_grad(
                        x, y, reduction=reduction, check=True, **extra)
                else:
                    xent.binary_cross_entropy(x, y, reduction=reduction, check=True)
                    xent.binary_cross_entropy_with_grad(x, y, reduction=reduction, check=True)


# ---- cross_entropy_with_grad --------------------------------------------------------------------

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
    c, denominator = ce_row_coefficients(x.shape, target, kw.get("weight"),
                                         kw.get("ignore_index", -100),
                                         kw.get("label_smoothing", 0.0))
    reduction = kw.get("reduction", "mean")
    rtol, atol = CE_TOL[dtype], CE_TOL[dtype] * c
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
    kw = dict(reduction=draw(st.sampled_from(REDUCTIONS)),
              label_smoothing=draw(st.sampled_from(SMOOTHINGS)))
    if draw(st.booleans()):
        kw["weight"] = draw(hnp.arrays(F64, (n_classes,), elements=st.floats(0.25, 4.0)))
    if draw(st.booleans()):  # class indices
        t = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, n_classes - 1)))
        ignore = draw(st.sampled_from([-100, -1, 0]))
        if ignore != -100 or draw(st.booleans()):
            kw["ignore_index"] = ignore
        mask = draw(hnp.arrays(np.bool_, batch))
        t = np.where(mask, ignore, t).astype(draw(st.sampled_from(
            [np.int64, np.int32, np.int16] if ignore < 0 else [np.int64, np.uint8])))
    else:
        t_dtype = draw(st.sampled_from(FLOAT_DTYPES))
        t = draw(hnp.arrays(t_dtype, shape, elements=st.one_of(
            st.just(0.0), st.floats(2.0 ** -20, 3.0, width=8 * t_dtype.itemsize))))
        if draw(st.booleans()):
            sums = t.sum(axis=-1, keepdims=True)
            t = np.where(sums > 0, t / np.where(sums > 0, sums, 1), t).astype(t_dtype)
    if kw["reduction"] == "none":
        g = draw(st.one_of(st.none(), hnp.arrays(F64, batch, elements=st.floats(-2, 2))))
    else:
        g = draw(st.sampled_from([None, 1.0, -0.5, 3.0]))
    return x, t, kw, g


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
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
    expected = ref.cross_entropy_grad(x.astype(F64), as_computed(t, dtype), grad_output=g,
                                      **kw)
    unit = ce_grad_unit(x.shape, t, kw.get("weight"), kw.get("ignore_index", -100),
                        kw["label_smoothing"], kw["reduction"], g)
    assert_grad_close(grad, expected, unit, dtype)
    if t.dtype.kind in "iu":  # ignored rows: exactly 0
        ignored = t == kw.get("ignore_index", -100)
        assert np.all(grad[ignored] == 0)
    # into a given (Fortran-ordered) out
    out = np.asfortranarray(np.full(x.shape, np.nan, dtype=dtype))
    loss2, grad2 = xent.cross_entropy_with_grad(x, t, grad_output=g, out=out,
                                                num_threads=threads, **kw)
    assert grad2 is out
    np.testing.assert_array_equal(grad2, grad)
    np.testing.assert_array_equal(np.asarray(loss2), np.asarray(loss))


def _torch_ce(torch, x64, t, kw, g):
    """PyTorch's cross-entropy and autograd gradient (classes moved to axis 1), float64."""
    F = torch.nn.functional
    moved = x64 if x64.ndim <= 2 else np.moveaxis(x64, -1, 1)
    xt = torch.tensor(np.ascontiguousarray(moved), requires_grad=True)
    if t.dtype.kind == "f":
        tt = torch.tensor(np.ascontiguousarray(t if t.ndim <= 2 else np.moveaxis(t, -1, 1)),
                          dtype=torch.float64)
    else:
        tt = torch.tensor(t.astype(np.int64))
    weight = kw.get("weight")
    loss = F.cross_entropy(xt, tt, weight=None if weight is None else torch.tensor(weight),
                           ignore_index=kw.get("ignore_index", -100),
                           reduction=kw["reduction"], label_smoothing=kw["label_smoothing"])
    incoming = torch.ones_like(loss) if g is None else torch.tensor(np.asarray(g, F64))
    loss.backward(incoming)
    grad = xt.grad.numpy()
    return loss.detach().numpy(), grad if x64.ndim <= 2 else np.moveaxis(grad, 1, -1)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7,), (9, 7), (2, 3, 7)], ids=str)
@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_cross_entropy_with_grad_against_torch(dtype, shape, target_kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(_seed(str(dtype), shape, target_kind))
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
                grads = [None, rng.uniform(-2, 2, size=batch)] if reduction == "none" else [
                    None, -1.5]
                for g in grads:
                    kw = dict(opt, reduction=reduction, label_smoothing=eps)
                    loss, grad = xent.cross_entropy_with_grad(x, t, grad_output=g, **kw)
                    t_loss, t_grad = _torch_ce(torch, x64, t, kw, g)
                    check_ce_loss(loss, x, t, kw, dtype)
                    c, den = ce_row_coefficients(shape, t, opt.get("weight"),
                                                 opt.get("ignore_index", -100), eps)
                    tol = CE_TOL[dtype] * (np.sum(c) / (den if reduction == "mean" else 1)
                                           if reduction != "none" else c)
                    assert_within(loss, t_loss, dtype, tol + CE_TOL[dtype] * np.abs(t_loss))
                    unit = ce_grad_unit(shape, t, opt.get("weight"),
                                        opt.get("ignore_index", -100), eps, reduction, g)
                    assert_grad_close(grad, t_grad, unit, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", SMOOTHINGS)
def test_all_rows_ignored(reduction, eps):
    x = np.random.default_rng(2).standard_normal((3, 4))
    t = np.full(3, -100)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    loss, grad = xent.cross_entropy_with_grad(x, t, weight=w, reduction=reduction,
                                              label_smoothing=eps)
    np.testing.assert_array_equal(grad, 0.0)
    if reduction == "mean":
        assert np.isnan(loss)
    else:
        np.testing.assert_array_equal(loss, 0.0)
    torch = pytest.importorskip("torch")
    t_loss, t_grad = _torch_ce(torch, x, t, dict(weight=w, reduction=reduction,
                                                 label_smoothing=eps), None)
    np.testing.assert_array_equal(np.asarray(loss), t_loss)  # NaN meets NaN
    np.testing.assert_array_equal(grad, t_grad)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
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
                kw = dict(weight=weight, reduction=reduction, label_smoothing=eps,
                          grad_output=g)
                l1, g1 = xent.cross_entropy_with_grad(x, target, num_threads=1, **kw)
                l2, g2 = xent.cross_entropy_with_grad(x, target, num_threads=2, **kw)
                assert np.asarray(l1).tobytes() == np.asarray(l2).tobytes(), kw
                assert g1.tobytes() == g2.tobytes(), kw
    for logits in (False, True):  # and the binary losses
        a = x if logits else np.clip(np.abs(x) / 10, 0, 1).astype(dtype)
        fn = (xent.binary_cross_entropy_with_logits_with_grad if logits
              else xent.binary_cross_entropy_with_grad)
        for reduction in REDUCTIONS:
            one = fn(a, p, weight=w, reduction=reduction, num_threads=1)
            two = fn(a, p, weight=w, reduction=reduction, num_threads=2)
            assert np.asarray(one[0]).tobytes() == np.asarray(two[0]).tobytes()
            assert one[1].tobytes() == two[1].tobytes()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
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
    kw = dict(weight=rng.uniform(0.5, 2, 9), reduction=reduction, label_smoothing=0.1,
              grad_output=g)
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
        return (lambda: xent.cross_entropy_with_grad(x, t, weight=buf[0], out=buf),
                lambda: xent.cross_entropy_with_grad(x, t, weight=w))
    if case == "ce_grad_output":  # grad_output is the first n entries of out
        g = rng.uniform(-1, 1, size=n)
        buf = np.empty((n, c))
        buf.reshape(-1)[:n] = g
        return (lambda: xent.cross_entropy_with_grad(x, t, reduction="none",
                                                     grad_output=buf.reshape(-1)[:n], out=buf),
                lambda: xent.cross_entropy_with_grad(x, t, reduction="none", grad_output=g))
    p, y = rng.uniform(size=(300, 7)), rng.uniform(size=(300, 7))
    w_full = rng.uniform(0.5, 2.0, size=(300, 7))
    buf = np.empty((301, 7))
    buf[:-1] = w_full  # an elementwise weight one row behind out
    return (lambda: xent.binary_cross_entropy_with_grad(p, y, weight=buf[:-1], out=buf[1:]),
            lambda: xent.binary_cross_entropy_with_grad(p, y, weight=w_full))


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
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(expected[0]),
                                  err_msg="loss")


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
                    xent.cross_entropy_with_grad(x, target, weight=w, reduction=reduction,
                                                 label_smoothing=eps, grad_output=g,
                                                 check=True)
    big = rng.standard_normal((5000, 4)).astype(np.float32)  # checked on a sample of rows
    xent.cross_entropy_with_grad(big, rng.integers(0, 4, size=5000), check=True)
