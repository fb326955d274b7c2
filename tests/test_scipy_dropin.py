"""xent's logsumexp, softmax and log_softmax called as SciPy's: same arguments, same numbers.

The cases are the behaviours SciPy's own tests pin down (weights b, negative ones with
return_sign, several axes, 0-d input, lists and integers), checked against scipy.special
on the same inputs.
"""

import numpy as np
import pytest
import scipy.special as sc

import xent

RNG = np.random.default_rng(13)
A = RNG.standard_normal((3, 4, 5)) * 3


def same(got, want, rtol=1e-14):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (2, 0), (0, 1, 2), ()])
@pytest.mark.parametrize("keepdims", [False, True])
def test_axes_like_scipy(axis, keepdims):
    same(
        xent.logsumexp(A, axis=axis, keepdims=keepdims),
        sc.logsumexp(A, axis=axis, keepdims=keepdims),
    )
    if axis != ():
        same(xent.softmax(A, axis=axis), sc.softmax(A, axis=axis))
        same(xent.log_softmax(A, axis=axis), sc.log_softmax(A, axis=axis), rtol=1e-13)


@pytest.mark.parametrize(
    "x", [3.0, [1.0, 2.0, 3.0], [[1, 2], [3, 4]], np.int32(5), np.arange(6).reshape(2, 3)]
)
def test_scalars_lists_and_integers(x):
    got = xent.logsumexp(x, axis=None)
    want = sc.logsumexp(x)
    same(got, want)
    assert np.asarray(got).dtype == np.float64
    same(xent.softmax(x, axis=None), sc.softmax(x))
    same(xent.log_softmax(x, axis=None), sc.log_softmax(x))


def test_zero_d_keeps_its_dtype():
    assert xent.logsumexp(np.float32(2.5)) == np.float32(2.5)
    assert xent.softmax(np.float32(2.5)) == 1
    assert xent.log_softmax(np.float64(2.5)) == 0


@pytest.mark.parametrize(
    "b",
    [
        np.array([1.0, 2.0, 0.5, 3.0, 1.0]),
        np.array([1.0, -2.0, 0.5, 3.0, -1.0]),
        np.array([0.0, 0.0, 1.0, 0.0, 0.0]),
        np.array([[1.0], [-1.0], [2.0]])[:, :, None],  # broadcast over the last axes
    ],
)
@pytest.mark.parametrize("axis", [None, -1, (0, 2)])
def test_weights_and_sign_like_scipy(b, axis):
    got, got_sign = xent.logsumexp(A, axis=axis, b=b, return_sign=True)
    want, want_sign = sc.logsumexp(A, axis=axis, b=b, return_sign=True)
    same(got, want, rtol=1e-13)
    same(got_sign, want_sign)
    with np.errstate(invalid="ignore"):
        want_plain = sc.logsumexp(A, axis=axis, b=b)
    same(xent.logsumexp(A, axis=axis, b=b), want_plain, rtol=1e-13)


@pytest.mark.parametrize(
    "a, b",
    [
        ([1.0, 1.0], [1.0, -1.0]),  # an exact cancellation: -inf, sign 0
        ([np.inf, 1.0], [0.0, 1.0]),  # b = 0 leaves the inf out
        ([np.inf, 1.0], [1.0, 1.0]),
        ([np.inf, np.inf], [1.0, -1.0]),  # inf - inf
        ([np.nan, 1.0], [1.0, 1.0]),
        ([-np.inf, -np.inf], [1.0, 1.0]),
        ([0.0, -40.0], [1.0, -1.0]),  # log(1 - e^-40), to the last bit
    ],
)
def test_weight_edges_like_scipy(a, b):
    got = xent.logsumexp(np.array(a), b=np.array(b), return_sign=True)
    want = sc.logsumexp(np.array(a), b=np.array(b), return_sign=True)
    same(got[0], want[0])
    same(got[1], want[1])


def test_small_results_beat_nothing():
    """Where SciPy is exact, so is xent: logsumexp([0, -40])."""
    assert xent.logsumexp([0.0, -40.0], axis=None) == sc.logsumexp([0.0, -40.0])


def test_complex_and_bad_axes_refused():
    with pytest.raises(TypeError, match="x is complex"):
        xent.logsumexp(np.ones(3, dtype=complex))
    with pytest.raises(TypeError, match="b is complex"):
        xent.logsumexp(np.ones(3), b=np.ones(3, dtype=complex))
    with pytest.raises(ValueError, match="repeats an axis"):
        xent.logsumexp(A, axis=(0, 0))
    with pytest.raises(np.exceptions.AxisError):
        xent.softmax(A, axis=(0, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        xent.logsumexp(A, b=np.ones(4))


def test_earlier_positional_keepdims_still_works():
    assert xent.logsumexp(A, -1, True).shape == (3, 4, 1)


def test_info_entropy_like_scipy_stats():
    import scipy.stats

    pk = RNG.random((4, 6)) + 0.01
    qk = RNG.random((4, 6)) + 0.01
    # SciPy's positional form and defaults (axis 0, normalised)
    same(xent.info.entropy(pk, qk), scipy.stats.entropy(pk, qk), rtol=1e-13)
    same(xent.info.entropy(pk, qk, 2.0, 1), scipy.stats.entropy(pk, qk, 2.0, 1), rtol=1e-13)
    # keywords, broadcasting pk (one distribution) against several qk
    same(
        xent.info.entropy(pk[0], qk=qk, axis=-1, normalize=True),
        scipy.stats.entropy(pk[0], qk, axis=-1),
        rtol=1e-13,
    )
    same(
        xent.info.entropy(pk, axis=-1, normalize=True), scipy.stats.entropy(pk, axis=-1), rtol=1e-13
    )
    with pytest.raises(ValueError, match="does not broadcast"):
        xent.info.entropy(pk, qk=np.ones(5))


@pytest.mark.parametrize("shape", [(1, 3, 0), (0, 3, 2), (2, 0, 4)])
def test_several_axes_of_an_empty_array(shape):
    """Reducing axes of an array with an empty axis elsewhere: the merged length is spelled
    out (a reshape to -1 is ambiguous there); shapes and values as numpy's reductions give."""
    x = np.zeros(shape)
    assert xent.softmax(x, axis=(0, 1)).shape == shape
    assert xent.log_softmax(x, axis=(0, 1)).shape == shape
    lse = xent.logsumexp(x, axis=(0, 1))
    empty_reduced = shape[0] * shape[1] == 0
    expected = np.full(shape[2:], -np.inf if empty_reduced else np.log(shape[0] * shape[1]))
    np.testing.assert_array_equal(lse, expected)


@pytest.mark.parametrize(
    "x_dtype, b_dtype",
    [
        (np.float32, np.int32),  # numpy promotes these to float64, and so does SciPy
        (np.int32, np.float32),
        (np.float16, np.float16),  # stays float16 (computed in float32)
        (np.int8, np.float16),
        (np.float32, np.int8),
        (np.int64, np.int64),  # integers only: float64
        (np.bool_, np.float32),
    ],
)
def test_weighted_result_dtype_like_scipy(x_dtype, b_dtype):
    """The result of logsumexp(x, b=b) has the dtype SciPy gives: x's and b's promoted."""
    x = np.array([1, 0] if x_dtype is np.bool_ else [2, 1], dtype=x_dtype)
    b = np.array([1, -1], dtype=b_dtype)
    got = xent.logsumexp(x, b=b, axis=None)
    want = sc.logsumexp(x, b=b)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    tolerance = {np.float16: 2e-3, np.float32: 2e-7}.get(np.asarray(want).dtype.type, 1e-15)
    exact = float(np.log(np.exp(float(x[0])) * float(b[0]) + np.exp(float(x[1])) * float(b[1])))
    np.testing.assert_allclose(float(got), exact, rtol=tolerance)


@pytest.mark.parametrize(
    "a, b",
    [
        ([0.0, 1e-300], [1.0, -1.0]),  # 1 - e^(1e-300): negative, log|.| = log(1e-300)
        ([1e-300, 0.0], [1.0, -1.0]),
        ([1.0, 1.0 + 2.0**-40], [1.0, -1.0]),
        ([5.0, 5.0 - 1e-9], [-1.0, 1.0]),
        ([0.0, -40.0], [1.0, -1.0]),
        ([3.0, 2.0], [1.0, -0.5]),
    ],
)
def test_weighted_near_cancellation_keeps_its_digits(a, b):
    """When the positive and negative weights' sums nearly cancel, the difference is
    log|e^p - e^n| = max + log(-expm1(-|p - n|)); SciPy rounds e^1e-300 to 1 and returns
    -inf with sign 0 for the first rows, xent the exact value (mpmath at 1200 bits: the
    cancellation of 1 against 1 + 1e-300 needs about 1000)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(1200):  # not mpmath.mp.prec: other tests share the context
        total = sum(mpmath.mpf(w) * mpmath.exp(mpmath.mpf(v)) for v, w in zip(a, b))
        exact = float(mpmath.log(abs(total)))
    got, sign = xent.logsumexp(np.array(a), b=np.array(b), return_sign=True)
    assert sign == (1.0 if total > 0 else -1.0)
    assert abs(got - exact) <= 4 * np.spacing(abs(exact)), (got, exact)


def test_info_entropy_axis_none_like_scipy():
    """axis=None: every entry one distribution, as scipy.stats.entropy(..., axis=None)."""
    import scipy.stats

    pk = RNG.random((3, 5)) + 0.01
    qk = RNG.random((3, 5)) + 0.01
    same(
        xent.info.entropy(pk, axis=None, normalize=True),
        scipy.stats.entropy(pk, axis=None),
        rtol=1e-13,
    )
    same(
        xent.info.entropy(pk, axis=None, normalize=True, qk=qk),
        scipy.stats.entropy(pk, qk, axis=None),
        rtol=1e-13,
    )
    same(
        xent.info.entropy(pk, qk=qk[:1], axis=None, normalize=True),
        scipy.stats.entropy(pk, np.broadcast_to(qk[:1], pk.shape), axis=None),
        rtol=1e-13,
    )


@pytest.mark.parametrize(
    "a, b, axis, want, want_sign",
    [
        # a row of -inf gives -inf with sign 0, beside an ordinary row
        (
            [[-np.inf, -np.inf], [0.0, 1.0]],
            [1.0, -1.0],
            -1,
            [-np.inf, 1 + np.log1p(-np.exp(-1))],
            [0.0, -1.0],
        ),
        # a row whose weights are all 0 is an empty sum
        ([[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [1.0, 0.0]], -1, [-np.inf, 3.0], [0.0, 1.0]),
        # a 0-d x broadcast against b: e^2 - 3 e^2 = -2 e^2
        (2.0, [1.0, -3.0], None, 2 + np.log(2.0), -1.0),
        # +inf with a negative weight: -inf's sum, sign -1
        ([np.inf, 0.0], [-1.0, 1.0], None, np.inf, -1.0),
        # integers: float64; 3 e^1 ... as exact sums
        ([3, 1, 2], [1, -1, 2], None, np.log(np.exp(3) - np.exp(1) + 2 * np.exp(2)), 1.0),
        # empty axes: -inf with sign 0 (SciPy gives -1 for an empty sum)
        (np.zeros((2, 0)), np.ones((2, 0)), -1, [-np.inf, -np.inf], [0.0, 0.0]),
        # a scalar weight over several axes
        (
            np.arange(6.0).reshape(2, 3),
            -2.0,
            (0, 1),
            np.log(2 * np.exp(np.arange(6.0)).sum()),
            -1.0,
        ),
    ],
)
def test_weight_rows_and_shapes(a, b, axis, want, want_sign):
    """Rows of -inf, weights of 0, 0-d and empty input, integers, tuples of axes: the value
    and sign of log|sum b e^a|, within 2 ulp of numpy's direct sum (exact enough here)."""
    got, sign = xent.logsumexp(a, axis=axis, b=b, return_sign=True)
    np.testing.assert_allclose(got, want, rtol=4.5e-16, atol=0)
    np.testing.assert_array_equal(sign, want_sign)
    assert np.asarray(got).dtype == np.float64


def test_weighted_negative_weight_on_the_max():
    """A negative weight on the largest entry with a positive total (SciPy's gh-22903 case):
    a value, not NaN, without return_sign; within 4 ulp of the exact value (mpmath),
    though the subtraction's condition number is about 12.8: the terms are summed in
    double-double and exactly, not as two rounded log-sum-exps."""
    mpmath = pytest.importorskip("mpmath")
    a = np.array([3.06409428, 0.37251854, 3.87471931])
    b = np.array([1.88190708, 2.84174795, -0.85016884])
    with mpmath.workprec(200):
        exact = float(
            mpmath.log(sum(mpmath.mpf(w) * mpmath.exp(mpmath.mpf(v)) for v, w in zip(a, b)))
        )
    got = xent.logsumexp(a, b=b, axis=None)
    assert abs(got - exact) <= 4 * np.spacing(exact)
    b[0] = -3.85016884  # now the total is negative: NaN without return_sign, as SciPy's
    assert np.isnan(xent.logsumexp(a, b=b, axis=None))


def test_inputs_are_not_written():
    a, b = np.array([5.0, 4.0]), np.array([3.0, -2.0])
    xent.logsumexp(a, axis=None)
    xent.logsumexp(a, axis=None, b=b, return_sign=True)
    np.testing.assert_array_equal(a, [5.0, 4.0])
    np.testing.assert_array_equal(b, [3.0, -2.0])
