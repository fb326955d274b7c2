"""Arguments built to be misread: self-overlapping out=, options the compute dtype cannot hold,
array subclasses, tensors that require grad, and check mode on values at the dtype's
resolution. Each test failed before (a wrong number, a NaN, or an error naming nothing)."""

import numpy as np
import pytest

import xent
from xent import _check, reference


# ---- out= whose elements overlap each other ----------------------------------------------


def overlapping_rows(dtype=np.float64):
    """A writeable (4, 6) view whose row i starts 3 elements after row i - 1 (rows overlap)."""
    base = np.arange(15, dtype=dtype) / 7
    return np.lib.stride_tricks.as_strided(base, (4, 6), (3 * base.itemsize, base.itemsize))


@pytest.mark.parametrize("fn", [xent.log_softmax, xent.softmax])
def test_in_place_on_self_overlapping_rows_is_refused(fn):
    x = overlapping_rows()
    before = x.copy()
    with pytest.raises(ValueError, match="out has elements that share memory with each other"):
        fn(x, out=x)
    np.testing.assert_array_equal(x, before)


def test_gradient_into_self_overlapping_out_is_refused():
    x = np.random.default_rng(0).standard_normal((4, 6))
    out = overlapping_rows()
    with pytest.raises(ValueError, match="out has elements that share memory"):
        xent.cross_entropy_with_grad(x, np.array([0, 1, 2, 3]), out=out)


def test_zero_stride_out_is_refused():
    base = np.zeros(6)
    out = np.lib.stride_tricks.as_strided(base, (3, 6), (0, 8))
    with pytest.raises(ValueError, match="out has elements that share memory"):
        xent.log_softmax(np.ones((3, 6)), out=out)


def test_self_overlapping_input_with_a_separate_out_is_fine():
    x = overlapping_rows()
    got = xent.log_softmax(x, out=np.empty((4, 6)))
    np.testing.assert_allclose(got, reference.log_softmax(np.array(x)), rtol=1e-12)


def test_out_partially_overlapping_the_input_gives_the_answer_of_the_input():
    a = np.random.default_rng(1).standard_normal((5, 6))
    x, out = a[:-1], a[1:]  # out's row i is x's row i + 1
    expected = reference.log_softmax(x.copy())
    got = xent.log_softmax(x, out=out)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "make, overlaps",
    [
        (lambda: np.zeros((3, 4)), False),
        (lambda: np.zeros((3, 4))[:, ::2], False),
        (lambda: np.zeros((3, 4)).T, False),
        (lambda: np.zeros((3, 4))[::-1], False),
        (lambda: overlapping_rows(), True),
        (lambda: np.lib.stride_tricks.as_strided(np.zeros(4), (4, 4), (8, 0)), True),
        (lambda: np.zeros((1, 4)), False),
    ],
)
def test_internal_overlap_agrees_with_numpy(make, overlaps):
    from xent._validation import out_overlaps_itself

    a = make()
    assert out_overlaps_itself(a) is overlaps
    assert bool(_distinct(a)) is not overlaps  # the same answer by brute force


def _distinct(a):
    """Whether every element of a has its own bytes, by brute force over their addresses."""
    starts = np.add.outer(
        np.zeros(1, np.int64), np.indices(a.shape).reshape(a.ndim, -1).T @ np.array(a.strides)
    ).reshape(-1)
    return len(np.unique(starts)) == a.size and (np.diff(np.sort(starts)) >= a.itemsize).all()


# ---- options the compute dtype cannot hold -----------------------------------------------


def linear_inputs(dtype=np.float32):
    rng = np.random.default_rng(2)
    return (
        rng.standard_normal((5, 4)).astype(dtype),
        rng.standard_normal((7, 4)).astype(dtype),
        rng.integers(0, 7, 5),
    )


@pytest.mark.parametrize("softcap", [1e39, 1e300, 1e-39, 1e-45])
def test_softcap_beyond_float32_is_refused(softcap):
    h, w, t = linear_inputs()
    with pytest.raises(ValueError, match=r"softcap=.* is outside the range of float32"):
        xent.linear_cross_entropy(h, w, t, softcap=softcap)


def test_large_softcap_in_float64_is_the_uncapped_loss():
    h, w, t = linear_inputs(np.float64)
    got = xent.linear_cross_entropy(h, w, t, softcap=1e39)
    expected = reference.cross_entropy(h @ w.T, t)
    assert got == pytest.approx(expected, rel=1e-12)


def test_bias_beyond_float32_is_refused():
    h, w, t = linear_inputs()
    bias = np.zeros(7)
    bias[3] = 1e39
    with pytest.raises(ValueError, match=r"bias holds 1e\+39, beyond the largest float32"):
        xent.linear_cross_entropy(h, w, t, bias=bias)


@pytest.mark.parametrize("name", ["pos_weight", "weight"])
def test_binary_weights_beyond_float32_are_refused(name):
    x = np.zeros((3, 2), np.float32)
    y = np.full((3, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match=rf"{name} holds 1e\+39, beyond the largest float32"):
        xent.binary_cross_entropy_with_logits(x, y, **{name: np.full(2, 1e39)})


def test_grad_output_beyond_float32_is_refused():
    x = np.zeros((3, 2), np.float32)
    y = np.full((3, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"grad_output holds 1e\+39"):
        xent.binary_cross_entropy_with_logits_with_grad(
            x, y, reduction="none", grad_output=np.full((3, 2), 1e39)
        )


def test_class_weight_beyond_float64_is_refused():
    x = np.zeros((2, 3))
    w = np.array([1, 1, np.longdouble("1e400")], dtype=np.longdouble)
    if np.isinf(w[2]):
        pytest.skip("long double is float64 on this platform: 1e400 cannot be made")
    with pytest.raises(ValueError, match="weight holds .*beyond the largest float64"):
        xent.cross_entropy(x, np.array([0, 1]), weight=w)


# ---- array subclasses ----------------------------------------------------------------------


def test_masked_array_is_refused_with_the_way_out():
    x = np.ma.array([0.0, 0.0, 1e20], mask=[False, False, True])
    with pytest.raises(
        TypeError,
        match=r"x is a numpy masked array.*x\.filled\(value\).*"
        r"x\.compressed\(\)",
    ):
        xent.logsumexp(x)
    # what the caller meant, either way
    assert xent.logsumexp(x.compressed()) == pytest.approx(np.log(2))


def test_masked_target_and_weight_are_refused():
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="target is a numpy masked array"):
        xent.cross_entropy(x, np.ma.array([0, 1], mask=[0, 1]))
    with pytest.raises(TypeError, match="weight is a numpy masked array"):
        xent.cross_entropy(x, np.array([0, 1]), weight=np.ma.array([1.0, 2, 3]))
    with pytest.raises(TypeError, match="logits is a numpy masked array"):
        xent.evaluate(np.ma.array(x), np.array([0, 1]))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_matrix_is_refused():
    with pytest.raises(TypeError, match=r"x is a numpy.matrix.*np.asarray\(x\)"):
        xent.log_softmax(np.matrix([[1.0, 2.0]]))


class Tagged(np.ndarray):
    """A subclass with no meaning of its own: read as its data."""


def test_plain_subclass_is_read_as_its_base_array():
    a = np.random.default_rng(3).standard_normal((4, 5))
    got = xent.log_softmax(a.view(Tagged))
    assert type(got) is np.ndarray
    np.testing.assert_allclose(got, reference.log_softmax(a), rtol=1e-12)


def test_tensor_that_requires_grad_names_the_argument_and_detach():
    torch = pytest.importorskip("torch")
    x = torch.zeros((2, 3), requires_grad=True)
    with pytest.raises(
        TypeError,
        match=r"logits is a tensor that requires grad: pass "
        r"logits\.detach\(\)",
    ):
        xent.cross_entropy(x, np.array([0, 1]))
    with pytest.raises(TypeError, match=r"logits is a tensor that requires grad"):
        xent.evaluate(x, np.array([0, 1]))
    # detached, it is read as an array
    assert xent.cross_entropy(x.detach(), np.array([0, 1])) == pytest.approx(np.log(3))


# ---- check mode at the dtype's resolution --------------------------------------------------


def test_check_mode_accepts_float16_gradients_of_a_mean_over_many_rows():
    # gradients of the mean over 200000 rows are ~1e-6: subnormal in float16 (step 6e-8)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((200_000, 4)).astype(np.float16)
    t = rng.integers(0, 4, len(x))
    loss, grad = xent.cross_entropy_with_grad(x, t, check=True)
    expected = reference.cross_entropy_grad(x.astype(np.float64), t)
    # the stored gradient is the reference rounded to float16, within one subnormal step
    assert np.abs(grad.astype(np.float64) - expected).max() <= 6e-8


def test_check_mode_binary_float16_gradients_of_a_mean():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((100_000, 4)).astype(np.float16)
    y = rng.uniform(0, 1, x.shape).astype(np.float16)
    xent.binary_cross_entropy_with_logits_with_grad(x, y, check=True)


def test_check_mode_still_catches_a_wrong_gradient():
    expected = np.full(4, 1e-6)
    with pytest.raises(_check.CheckError):
        _check.compare(
            "g", (expected + 3e-7) * 1e5, expected * 1e5, np.float16, unit=np.full(4, 1e-5)
        )
    _check.compare("g", (expected + 5e-8) * 1e5, expected * 1e5, np.float16, unit=np.full(4, 1e-5))


def test_dask_refuses_a_masked_target():
    da = pytest.importorskip("dask.array")
    import xent.dask

    x = da.from_array(np.zeros((4, 3)), chunks=2)
    with pytest.raises(TypeError, match="target is a numpy masked array"):
        xent.dask.cross_entropy(x, np.ma.array([0, 1, 2, 0], mask=[0, 1, 0, 0]))
    assert xent.dask.cross_entropy(x, np.array([0, 1, 2, 0])) == pytest.approx(np.log(3))
