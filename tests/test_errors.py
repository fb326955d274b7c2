"""Bad input gets a clear exception naming the argument, shape or value; never a crash."""

import numpy as np
import pytest

import xent

RNG = np.random.default_rng(7)
X = RNG.standard_normal((5, 4)).astype(np.float32)
T = np.array([0, 1, 2, 3, 0])


@pytest.mark.parametrize("fn", [xent.logsumexp, xent.log_softmax, xent.softmax])
@pytest.mark.parametrize(
    "bad, kind",
    [
        (np.array([["a", "b"]]), "<U1"),
        (np.array([[1.0, None]], dtype=object), "object"),
    ],
)
def test_rowwise_refuse_non_floating(fn, bad, kind):
    with pytest.raises(TypeError, match=f"x must be float16, bfloat16, float32 or float64.*{kind}"):
        fn(bad)


@pytest.mark.parametrize("fn", [xent.logsumexp, xent.log_softmax, xent.softmax])
def test_rowwise_complex_refused(fn):
    # integers, bools and 0-d input are taken as SciPy takes them (tests/test_scipy_dropin.py)
    with pytest.raises(TypeError, match="x is complex.*complex64"):
        fn(np.ones((2, 3), dtype=np.complex64))


@pytest.mark.parametrize("fn", [xent.logsumexp, xent.log_softmax, xent.softmax])
def test_rowwise_zero_dim_and_axis(fn):
    with pytest.raises(np.exceptions.AxisError):
        fn(np.float32(1.0), axis=1)
    with pytest.raises(np.exceptions.AxisError):
        fn(X, axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        fn(X, axis=1.0)


def test_cross_entropy_logits_dtype_and_shape():
    with pytest.raises(
        TypeError, match="logits must be float16, bfloat16, float32 or float64.*int64"
    ):
        xent.cross_entropy(np.ones((5, 4), dtype=np.int64), T)
    with pytest.raises(ValueError, match=r"logits has shape \(5, 0\): the class axis"):
        xent.cross_entropy(np.ones((5, 0), dtype=np.float32), T)
    with pytest.raises(ValueError, match="at least one dimension"):
        xent.cross_entropy(np.float32(3), np.int64(0))


@pytest.mark.parametrize("fn", [xent.cross_entropy, xent.nll_loss])
def test_label_out_of_range_names_row_and_value(fn):
    bad = T.copy()
    bad[3] = 4
    with pytest.raises(IndexError, match=r"target\[3\] = 4 is out of range.*\[0, 4\)"):
        fn(X, bad)
    bad[3] = -1
    with pytest.raises(IndexError, match=r"target\[3\] = -1 is out of range"):
        fn(X, bad)
    # the first bad row is named, whatever the threads
    bad = T.copy()
    bad[[1, 4]] = [9, 7]
    for threads in (1, 2):
        with pytest.raises(IndexError, match=r"target\[1\] = 9"):
            fn(X, bad, num_threads=threads)


def test_label_out_of_range_multi_axis_and_huge():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float64)
    t = np.zeros((2, 3), dtype=np.int64)
    t[1, 2] = 2**40
    with pytest.raises(IndexError, match=r"target\[1, 2\] = 1099511627776 is out of range"):
        xent.cross_entropy(x, t)
    t = np.zeros((2, 3), dtype=np.uint64)
    t[0, 1] = 2**64 - 1
    with pytest.raises(IndexError, match=r"target\[0, 1\] = 18446744073709551615"):
        xent.cross_entropy(x, t)


def test_ignore_index_is_not_out_of_range():
    t = T.copy()
    t[2] = -100
    assert np.isfinite(xent.cross_entropy(X, t))
    t[2] = -7
    assert np.isfinite(xent.cross_entropy(X, t, ignore_index=-7))


@pytest.mark.parametrize(
    "target, exc, message",
    [
        (np.array([0, 1, 2, 3]), ValueError, r"target has shape \(4,\), expected \(5,\)"),
        (np.zeros((5, 1), dtype=np.int64), ValueError, r"target has shape \(5, 1\)"),
        (np.array([True, False, True, True, False]), TypeError, "dtype bool"),
        (np.array([0.0, 1.0, 2.0, 3.0, 0.0]), ValueError, "probability target has shape"),
        (np.array(["a"] * 5), TypeError, "integer class indices or floating probabilities"),
        (np.zeros((5, 4), dtype=np.complex128), TypeError, "dtype complex128"),
    ],
)
def test_cross_entropy_bad_target(target, exc, message):
    with pytest.raises(exc, match=message):
        xent.cross_entropy(X, target)


def test_nll_loss_refuses_probabilities():
    with pytest.raises(TypeError, match="nll_loss takes integer class indices"):
        xent.nll_loss(X, np.full((5, 4), 0.25))


@pytest.mark.parametrize(
    "weight, exc, message",
    [
        (np.ones(3), ValueError, r"weight has shape \(3,\), expected \(4,\)"),
        (np.ones((4, 1)), ValueError, r"weight has shape \(4, 1\)"),
        (np.array(["a", "b", "c", "d"]), TypeError, "weight must be a real"),
        (np.ones(4, dtype=bool), TypeError, "weight must be a real"),
    ],
)
@pytest.mark.parametrize("fn", [xent.cross_entropy, xent.nll_loss])
def test_bad_weight(fn, weight, exc, message):
    with pytest.raises(exc, match=message):
        fn(X, T, weight=weight)


@pytest.mark.parametrize(
    "value, exc",
    [
        (-0.1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("0.1", TypeError),
        (None, TypeError),
    ],
)
def test_bad_label_smoothing(value, exc):
    with pytest.raises(exc, match="label_smoothing"):
        xent.cross_entropy(X, T, label_smoothing=value)


@pytest.mark.parametrize("value", ["avg", "Mean", None, 1])
@pytest.mark.parametrize("fn", [xent.cross_entropy, xent.nll_loss])
def test_bad_reduction(fn, value):
    with pytest.raises(ValueError, match="reduction must be one of"):
        fn(X, T, reduction=value)


@pytest.mark.parametrize(
    "value, exc", [(1.0, TypeError), (True, TypeError), ("x", TypeError), (2**70, ValueError)]
)
def test_bad_ignore_index(value, exc):
    with pytest.raises(exc, match="ignore_index"):
        xent.cross_entropy(X, T, ignore_index=value)


@pytest.mark.parametrize(
    "value, exc, message",
    [
        (0, ValueError, "must not be 0"),
        (2.5, TypeError, "num_threads must be an int"),
        (True, TypeError, "num_threads must be an int"),
        ("2", TypeError, "num_threads must be an int"),
        (-1000, ValueError, "leaves no thread"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda nt: xent.cross_entropy(X, T, num_threads=nt),
        lambda nt: xent.nll_loss(X, T, num_threads=nt),
        lambda nt: xent.logsumexp(X, num_threads=nt),
        lambda nt: xent.softmax(X, num_threads=nt),
        lambda nt: xent.get_num_threads(nt),
    ],
)
def test_bad_num_threads(call, value, exc, message):
    with pytest.raises(exc, match=message):
        call(value)


def test_bad_check_flag():
    with pytest.raises(TypeError, match="check must be True, False or None"):
        xent.logsumexp(X, check="yes")


@pytest.mark.parametrize("fn", [xent.log_softmax, xent.softmax])
def test_bad_out(fn):
    with pytest.raises(ValueError, match=r"out has shape \(5, 3\), expected \(5, 4\)"):
        fn(X, out=np.empty((5, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="out has dtype float64, expected float32"):
        fn(X, out=np.empty((5, 4), dtype=np.float64))
    with pytest.raises(TypeError, match="out must be a numpy array"):
        fn(X, out=[[0.0] * 4] * 5)
    readonly = np.empty((5, 4), dtype=np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fn(X, out=readonly)


def test_errors_leave_inputs_untouched():
    x = X.copy()
    bad = T.copy()
    bad[0] = 99
    with pytest.raises(IndexError):
        xent.cross_entropy(x, bad)
    np.testing.assert_array_equal(x, X)
    assert bad[0] == 99
