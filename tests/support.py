"""Helpers shared by the test modules: seeds, comparisons with their tolerances, array
layouts, input makers and the PyTorch oracles.

pytest's default import mode ("prepend") puts ``tests/`` on ``sys.path`` (it has no
``__init__.py``), so a test module imports them as ``from support import relayout``. Fixtures
live in ``conftest.py``; tests/README.md says which module tests what.

Every comparison here takes its tolerance from the caller: the reason for a tolerance belongs
to the test that measures it (see each module's docstring); what the helper documents is how
the tolerance is applied.
"""

import warnings
import zlib

import numpy as np
from hypothesis import HealthCheck, settings

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
#: The dtypes the kernels compute in (float16 is computed in float32: see test_half.py).
FLOAT_DTYPES = [F32, F64]
#: Every integer dtype a class-index target may have.
INT_DTYPES = [
    np.dtype(t)
    for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
]
REDUCTIONS = ["none", "mean", "sum"]
SMOOTHINGS = [0.0, 0.1, 1.0]

#: rtol of the information quantities (test_info.py) and binary losses (test_binary.py),
#: relative to the scale of a row or element: a few float32 ulps of the sum of the magnitudes
#: of the terms (those modules' docstrings derive it and quote the measured errors).
SCALE_RTOL = {F32: 1e-6, F64: 1e-12}
#: Loss tolerance of cross_entropy as test_against_reference.py derives it: an absolute few
#: ulps of 1 per unit of the row's coefficients (log(sum exp) in the input precision).
CE_LOSS_TOL = {F32: 2e-6, F64: 1e-12}
#: rtol = atol of a gradient divided by its row's gradient scale (``assert_grad_close``).
GRAD_TOL = {F32: 1e-5, F64: 1e-12}
#: A few subnormal spacings: the absolute floor of a result that is subnormal.
SUBNORMAL_FLOOR = {
    F32: 8 * float(np.finfo(F32).smallest_subnormal),
    F64: 8 * float(np.finfo(F64).smallest_subnormal),
}


def hypothesis_settings(max_examples):
    """Hypothesis settings of the property tests: ``max_examples`` per test, no deadline (an
    example's time depends on its size and the machine's load, not on correctness), and no
    health check for function-scoped fixtures (``isa`` and ``dtype`` hold for every example
    of a test), slow or large data."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# ---- seeds ----------------------------------------------------------------------------------


def seed_of(*parts):
    """A seed for ``np.random.default_rng`` from a test's parameters.

    The same in every process and on every run (``hash()`` of a string is salted per process),
    so a failure found with one parameter combination is reproduced by re-running it.
    """
    return zlib.crc32(repr(parts).encode())


# ---- comparisons ----------------------------------------------------------------------------


def _raise_worst(got, want, bound, what):
    """Fail naming how many of the finite values exceed ``bound`` and the worst one."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(got - want) <= bound)
    if bad.any():
        i = int(np.flatnonzero(bad)[np.argmax((np.abs(got - want) / bound)[bad])])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} {what} differ beyond the tolerance; worst "
            f"at finite position {i}: got {got[i]!r}, expected {want[i]!r}, |diff| "
            f"{abs(got[i] - want[i]):.3g} > bound {bound[i]:.3g}"
        )


def assert_close(got, expected, dtype, rtol, atol=0.0, *, round_expected=True):
    """``got`` (a result that must have ``dtype``) against a float64 oracle ``expected``.

    Asserts the dtype and the shape of ``got`` (no broadcasting), that NaN meets NaN and an
    infinity the same infinity, and for finite values
    ``|got - expected| <= atol + rtol * |expected|``, ``atol`` a scalar or one bound per
    element.

    With ``round_expected`` (the default) the oracle is first rounded to ``dtype``, so that the
    tolerance measures the kernel's error and not the unavoidable rounding of the result
    (an oracle beyond the dtype's range becomes the infinity the kernel must return too).
    ``round_expected=False`` compares with the float64 oracle as it is, as for a peer library
    (SciPy, PyTorch) whose result already has ``dtype``.
    """
    got = np.asarray(got)
    assert got.dtype == dtype, f"result dtype {got.dtype}, expected {dtype}"
    if round_expected:
        with np.errstate(over="ignore"):
            want = np.asarray(expected, dtype=np.float64).astype(dtype)
    else:
        want = np.asarray(expected)
    assert got.shape == want.shape, f"result shape {got.shape}, expected {want.shape}"
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    if np.ndim(atol) == 0:
        np.testing.assert_allclose(got64, want64, rtol=rtol, atol=float(atol), equal_nan=True)
        return
    finite = np.isfinite(want64)
    np.testing.assert_array_equal(
        got64[~finite], want64[~finite], err_msg="non-finite results differ"
    )
    bound = np.broadcast_to(np.asarray(atol, dtype=np.float64), want.shape)[finite]
    bound = bound + rtol * np.abs(want64[finite])
    _raise_worst(got64[finite], want64[finite], bound, f"finite values (rtol={rtol:g})")


def assert_within(got, expected, dtype, bound, shape=None):
    """``got`` (of ``dtype``, and of ``shape`` if given) against the float64 ``expected``:
    non-finite values must be equal, finite ones within the absolute ``bound`` (a scalar or one
    per element) of each other: ``|got - expected| <= bound``.

    The caller builds ``bound`` from the scale of each value (see test_info.py); the oracle is
    not rounded to ``dtype``.
    """
    got = np.asarray(got)
    assert got.dtype == dtype, f"result dtype {got.dtype}, expected {dtype}"
    expected = np.asarray(expected, dtype=np.float64)
    if shape is not None:
        assert got.shape == shape, f"result shape {got.shape}, expected {shape}"
    assert got.shape == expected.shape, f"shape {got.shape} vs oracle's {expected.shape}"
    g = got.astype(np.float64)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(
        g[~finite], expected[~finite], err_msg="non-finite results differ"
    )
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), expected.shape)[finite]
    _raise_worst(g[finite], expected[finite], b, "values")


def assert_grad_close(got, expected, unit, dtype):
    """A gradient (of ``dtype``, the shape of ``expected``) against a float64 oracle, compared
    as ``grad / unit`` with rtol = atol = ``GRAD_TOL[dtype]``:
    ``|got - expected| <= GRAD_TOL * (unit + |expected|) + SUBNORMAL_FLOOR``.

    ``unit`` is the row's (element's) gradient scale, ``|g| * c``: ``g`` the incoming factor
    of the row (``grad_output / N`` for a mean, ``grad_output[i]`` for "none"), ``c`` the sum
    of the row's loss coefficients (the weights). ``grad / unit`` is O(1), computed from a
    float32 softmax / sigmoid (a few ulps) with one or two float32 roundings: 1e-5 (float32;
    measured <= 1e-7 for cross-entropy, 2.5e-7 for BCE with logits) or 1e-12 (float64),
    absolute and relative (relative for PyTorch's 1e12-sized BCE gradient at probabilities 0
    and 1). A unit that is 0 or not finite counts as 1. A gradient scaled below the dtype's
    range by a tiny grad_output underflows: the oracle is rounded to the dtype first (so it is
    0 on both sides), and a few subnormal spacings are allowed.
    """
    got = np.asarray(got)
    assert got.dtype == dtype, f"gradient dtype {got.dtype}, expected {dtype}"
    assert got.shape == np.shape(expected), (got.shape, np.shape(expected))
    with np.errstate(over="ignore"):
        want = np.asarray(expected, dtype=np.float64).astype(dtype).astype(np.float64)
    unit = np.broadcast_to(np.asarray(unit, dtype=np.float64), got.shape)
    unit = np.where(np.isfinite(unit) & (unit > 0), unit, 1.0)
    assert_within(
        got, want, dtype, GRAD_TOL[dtype] * (unit + np.abs(want)) + SUBNORMAL_FLOOR[dtype]
    )


def assert_scalar_or_array(got, batch_shape, dtype):
    """A reduced result is a NumPy scalar of ``dtype``; an unreduced one an array of
    ``batch_shape``."""
    if batch_shape == ():
        assert isinstance(got, np.generic) and got.dtype == dtype, type(got)
    else:
        assert isinstance(got, np.ndarray) and got.shape == batch_shape


def assert_allclose_nan(actual, expected, rtol=1e-12, atol=0.0):
    """``np.testing.assert_allclose`` with NaN equal to NaN: ``|actual - expected| <= atol +
    rtol * |expected|`` elementwise, shapes broadcast, dtype not checked.

    For the float64 reference (``xent.reference``) against SciPy or PyTorch in float64, where
    the default rtol of 1e-12 is a few thousand ulps of float64.
    """
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def no_warnings(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, failing on any warning it emits (even one a filter ignores)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def snapshot(*arrays):
    """Bytes, dtype and shape of each array (None stays None), for ``assert_unchanged``."""
    return [
        None if a is None else (np.asarray(a).tobytes(), np.asarray(a).dtype, np.shape(a))
        for a in arrays
    ]


def assert_unchanged(arrays, before):
    """Assert that no array of ``arrays`` changed bytes, dtype or shape since ``snapshot``."""
    for a, b in zip(arrays, before):
        if a is not None:
            assert (np.asarray(a).tobytes(), np.asarray(a).dtype, np.shape(a)) == b, (
                "xent modified an input"
            )


# ---- memory layouts -------------------------------------------------------------------------

#: The layouts ``relayout`` makes, each a way of laying out an array a kernel must read.
LAYOUTS = [
    "c",
    "fortran",
    "row_step",
    "col_slice",
    "both_strided",
    "neg_rows",
    "neg_cols",
    "byteswapped",
    "readonly",
]


def _pad_value(dtype):
    """What the memory around a strided view holds: NaN, or an out-of-range label."""
    return np.nan if dtype.kind == "f" else np.iinfo(dtype).max


def relayout(a, kind):
    """An array equal to ``a`` (shape, values, and dtype up to byte order) laid out in memory
    as ``kind`` says (one of ``LAYOUTS``).

    Memory outside the view holds NaN / an out-of-range label, so a kernel reading it shows.
    A 0-d array is copied whatever the kind.
    """
    a = np.asarray(a)
    if a.ndim == 0 or kind == "c":
        return a.copy()
    pad = _pad_value(a.dtype)
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "row_step":  # every other entry of the first axis
        big = np.full((2 * a.shape[0],) + a.shape[1:], pad, dtype=a.dtype)
        big[::2] = a
        return big[::2]
    if kind == "col_slice":  # x[..., 1:-1]: the row stride is not C
        big = np.full(a.shape[:-1] + (a.shape[-1] + 2,), pad, dtype=a.dtype)
        big[..., 1:-1] = a
        return big[..., 1:-1]
    if kind == "both_strided" and a.ndim == 1:  # a single row: stride 3 on the class axis
        big = np.full(3 * a.shape[0], pad, dtype=a.dtype)
        big[::3] = a
        return big[::3]
    if kind == "both_strided":
        big = np.full((2 * a.shape[0],) + a.shape[1:-1] + (a.shape[-1] + 3,), pad, dtype=a.dtype)
        big[::2, ..., 2:-1] = a
        return big[::2, ..., 2:-1]
    if kind == "neg_rows":
        return np.ascontiguousarray(a[::-1])[::-1]
    if kind == "neg_cols":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if kind == "byteswapped":  # non-native byte order (results are native)
        return a.astype(a.dtype.newbyteorder())
    if kind == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    raise AssertionError(f"unknown layout {kind!r}")


# ---- inputs ---------------------------------------------------------------------------------


def logits(rng, shape, dtype=F64):
    """Normal logits of standard deviation 3 (softmax neither uniform nor one-hot)."""
    return (rng.standard_normal(shape) * 3.0).astype(dtype)


def class_weight(rng, n_classes, weighted, dtype=F64):
    """A per-class weight in [0.2, 2), or None when not ``weighted``."""
    return rng.uniform(0.2, 2.0, size=n_classes).astype(dtype) if weighted else None


def class_targets(rng, batch_shape, n_classes, ignore_index):
    """int64 class indices in [0, n_classes) with some rows, not all, ignored.

    Every third row (from row 0) holds ``ignore_index``, and row 1 a class other than
    ``ignore_index`` (so a class next to an ignored one occurs). A single row is never ignored:
    a test of all rows ignored makes its own targets.
    """
    t = rng.integers(0, n_classes, size=batch_shape)
    flat = t.reshape(-1)  # a view: writes reach t
    if flat.size > 1:
        flat[::3] = ignore_index
        flat[1] = (ignore_index + 1) % n_classes if ignore_index >= 0 else 0
    elif ignore_index >= 0:
        flat[0] = (ignore_index + 1) % n_classes
    return t


def prob_targets(rng, shape, normalised, dtype=F64):
    """Non-negative targets over the last axis, with some exact zeros (every third row's
    class 1); rows sum to 1 when ``normalised``, else to about 1.5 * C (arbitrary masses)."""
    p = rng.uniform(0.0, 1.0, size=shape)
    p.reshape(-1, shape[-1])[::3, 1] = 0.0
    if normalised:
        p /= p.sum(axis=-1, keepdims=True)
    else:
        p *= 3.0
    return p.astype(dtype)


def classifier_outputs(n, c, dtype=np.float32, seed=0, *, scale=2.0, margin=1.5, ignore_every=0):
    """``(logits, labels)`` of ``n`` rows and ``c`` classes as a classifier better than chance
    would give: normal logits times ``scale``, the label's logit raised by ``margin`` (so the
    accuracies and ranks are neither 0 nor 1), and every ``ignore_every``-th label -100
    (ignored) when it is not 0."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * scale).astype(dtype)
    t = rng.integers(0, c, n)
    x[np.arange(n), t] += margin
    if ignore_every:
        t[::ignore_every] = -100
    return x, t


# ---- PyTorch oracles ------------------------------------------------------------------------


def classes_to_dim1(torch, a):
    """``a`` as a tensor with the classes (last axis of ``a``) where PyTorch wants them: dim 1
    of an input of more than 2 dims, the last dim otherwise."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return torch.movedim(t, -1, 1) if a.ndim > 2 else t


def torch_cross_entropy(torch, x, target, weight=None, **kwargs):
    """``torch.nn.functional.cross_entropy`` on NumPy arrays with the classes on the last axis
    (class indices or probabilities), computed in the arrays' dtype; a NumPy result."""
    tt = (
        classes_to_dim1(torch, target)
        if target.dtype.kind == "f"
        else torch.from_numpy(np.asarray(target, dtype=np.int64))
    )
    wt = None if weight is None else torch.from_numpy(np.asarray(weight))
    return torch.nn.functional.cross_entropy(
        classes_to_dim1(torch, x), tt, weight=wt, **kwargs
    ).numpy()


def torch_nll_loss(torch, log_probs, target, weight=None, **kwargs):
    """``torch.nn.functional.nll_loss`` on NumPy arrays with the classes on the last axis."""
    wt = None if weight is None else torch.from_numpy(np.asarray(weight))
    return torch.nn.functional.nll_loss(
        classes_to_dim1(torch, log_probs),
        torch.from_numpy(np.asarray(target, dtype=np.int64)),
        weight=wt,
        **kwargs,
    ).numpy()


def torch_cross_entropy_with_grad(torch, x, target, weight=None, grad_output=None, **kwargs):
    """PyTorch's cross-entropy of the float64 ``x`` and its autograd gradient, both NumPy and
    float64, the classes on the last axis: ``(loss, d(loss . grad_output) / dx)`` with
    ``grad_output`` None meaning ones."""
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    xin = torch.movedim(xt, -1, 1) if xt.ndim > 2 else xt
    target = np.asarray(target)
    if target.dtype.kind == "f":
        tt = torch.tensor(target, dtype=torch.float64)
        tt = torch.movedim(tt, -1, 1) if tt.ndim > 2 else tt
    else:
        tt = torch.tensor(target.astype(np.int64))
    wt = None if weight is None else torch.tensor(np.asarray(weight, dtype=np.float64))
    loss = torch.nn.functional.cross_entropy(xin, tt, weight=wt, **kwargs)
    incoming = (
        torch.ones_like(loss)
        if grad_output is None
        else torch.as_tensor(np.asarray(grad_output, dtype=np.float64))
    )
    loss.backward(incoming)
    return loss.detach().numpy(), xt.grad.numpy()
