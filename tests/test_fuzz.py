"""Hostile input for every public function: the reference's answer or a clear exception.

Each public function has one entry in :data:`SPECS`: how to draw a valid call (hostile
*values* included: inf, -inf, NaN, 1e308, subnormals, every layout), which arguments may be
made hostile and of what kind, and how to compute the reference's answer. Every drawn call,
with none or one argument made hostile (a wrong dtype, shape, value or option), must either

* return what :mod:`xent.reference` returns on the same values, within
  ``xent._check.TOLERANCES`` (scaled by the size of the terms a sum adds, see
  :func:`assert_matches`), in the input's dtype, without warnings and without modifying its
  inputs; or
* raise TypeError, ValueError or IndexError whose message names the argument made hostile.

Anything else (a crash, OverflowError, a RuntimeWarning, a wrong number) fails.

``XENT_FUZZ_EXAMPLES`` sets the examples per function (default 150: the whole file runs in
about half a minute); ``tools/fuzz.sh`` runs a long campaign and prints what the calls did
(``XENT_FUZZ_REPORT=FILE`` writes those counts as JSON). Adding a public function is one
``Spec`` in :data:`SPECS`.
"""

import collections
import json
import math
import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import xent
from xent import reference as ref
from xent._check import TOLERANCES

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
COMPUTE = {F16: F32, F32: F32, F64: F64}
INF, NAN = math.inf, math.nan
EXAMPLES = int(os.environ.get("XENT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
ERRORS = (TypeError, ValueError, IndexError)

#: What the calls did, per function: returned / raised <type> / hostile argument kinds.
OUTCOMES = collections.defaultdict(collections.Counter)

#: Values no sane input has, in float64 (cast to the array's dtype: 1e308 is inf in float32).
HOSTILE_VALUES = [
    INF,
    -INF,
    NAN,
    1e308,
    -1e308,
    1e30,
    -1e30,
    5e-324,
    -5e-324,
    1e-310,
    1e-40,
    0.0,
    -0.0,
    65504.0,
]
INT_DTYPES = [
    np.dtype(t)
    for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
]
LAYOUTS = ["c", "c", "fortran", "reversed", "step", "class_step", "byteswapped", "readonly"]


# ---- arrays ---------------------------------------------------------------------------------


def relayout(a, kind):
    """An array equal to ``a`` (values, shape) laid out in memory as ``kind`` says."""
    a = np.asarray(a)
    if a.ndim == 0 or kind == "c":
        return a.copy()
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "reversed":  # negative strides on every axis
        flipped = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        return flipped[(slice(None, None, -1),) * a.ndim]
    if kind == "step":  # every other entry of the first axis, NaN / max between them
        pad = NAN if a.dtype.kind == "f" else np.iinfo(a.dtype).max
        big = np.full((2 * a.shape[0],) + a.shape[1:], pad, dtype=a.dtype)
        big[::2] = a
        return big[::2]
    if kind == "class_step":  # stride 2 on the last axis
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if kind == "byteswapped":
        return a.astype(a.dtype.newbyteorder())
    if kind == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    raise AssertionError(kind)


@st.composite
def batch_shapes(draw):
    """() .. two axes, empty batches included, now and then a batch of hundreds of rows."""
    kind = draw(st.sampled_from(["none", "small", "small", "two", "empty", "many"]))
    if kind == "none":
        return ()
    if kind == "empty":
        return draw(st.sampled_from([(0,), (0, 3), (3, 0)]))
    if kind == "many":
        return (draw(st.integers(100, 700)),)
    if kind == "two":
        return (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return (draw(st.integers(1, 6)),)


def n_classes_strategy(batch):
    """C of 1, small, or (for a small batch) huge."""
    small = st.integers(1, 40)
    if int(np.prod(batch)) <= 4:
        return st.one_of(st.just(1), small, small, st.sampled_from([1000, 70000]))
    return st.one_of(st.just(1), small, small)


@st.composite
def float_arrays(draw, shape, unit=False, dtype=None, hostile=None, layout=True):
    """An array of ``shape`` (dtype float16/32/64 unless given): finite values (in [0, 1]
    if ``unit``) with, if ``hostile``, some entries or whole rows from HOSTILE_VALUES."""
    dtype = dtype or draw(st.sampled_from([F16, F32, F32, F64, F64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if unit:
        values = rng.uniform(0, 1, shape)
        values[rng.uniform(size=shape) < 0.1] = 0.0
        values[rng.uniform(size=shape) < 0.1] = 1.0
    else:
        values = rng.standard_normal(shape) * draw(st.sampled_from([1.0, 10.0, 100.0]))
    if hostile is None:
        hostile = draw(st.booleans())
    if hostile and values.size:
        flat = values.reshape(-1)
        for _ in range(draw(st.integers(1, 4))):
            flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(HOSTILE_VALUES))
        if values.ndim and draw(st.booleans()):  # one whole row of one value
            rows = values.reshape(-1, values.shape[-1])
            rows[draw(st.integers(0, rows.shape[0] - 1))] = draw(
                st.sampled_from([INF, -INF, NAN, 1e308, 0.0])
            )
    with np.errstate(over="ignore"):
        a = values.astype(dtype)
    return relayout(a, draw(st.sampled_from(LAYOUTS))) if layout else a


@st.composite
def probability_rows(draw, shape, dtype=None):
    """Distributions along the last axis (rows summing to 1 in float64), zeros included."""
    dtype = dtype or draw(st.sampled_from([F16, F32, F64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = rng.exponential(size=shape)
    p[rng.uniform(size=shape) < 0.2] = 0.0
    if p.size and p.shape[-1]:
        p[..., 0] += 1e-3  # no all-zero row
        p /= p.sum(axis=-1, keepdims=True)
    return relayout(p.astype(dtype), draw(st.sampled_from(LAYOUTS)))


@st.composite
def class_labels(draw, batch, n_classes, ignore_index):
    """Valid class indices of any integer dtype, some equal to ``ignore_index`` if it fits."""
    dtype = draw(st.sampled_from(INT_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = rng.integers(0, min(n_classes, np.iinfo(dtype).max + 1), batch)
    info = np.iinfo(dtype)
    if info.min <= ignore_index <= info.max and t.size and draw(st.booleans()):
        t[rng.uniform(size=batch) < 0.3] = ignore_index
        if draw(st.booleans()):
            t[...] = ignore_index  # every row ignored
    return relayout(
        t.astype(dtype), draw(st.sampled_from(["c", "step", "reversed", "byteswapped", "readonly"]))
    )


# ---- hostile arguments ----------------------------------------------------------------------


def wrong_dtype(a):
    """``a``'s values in a dtype no float input takes."""
    kind = np.random.default_rng(a.size).integers(0, 5)
    with np.errstate(all="ignore"):
        if kind == 0:
            return np.asarray(a).astype(np.int32)
        if kind == 1:
            return np.asarray(a) > 0
        if kind == 2:
            return np.asarray(a).astype(np.complex64)
        if kind == 3:
            return np.asarray(a).astype(object)
        return np.full(np.shape(a), "x")


@st.composite
def hostile_float_array(draw, a, allow_0d=False):
    """A replacement for the float array ``a``: wrong dtype, wrong number of axes, an empty
    class axis or a nested list."""
    a = np.asarray(a)
    choice = draw(
        st.sampled_from(["dtype", "dtype", "0d", "empty", "extra_axis", "list", "drop_axis"])
    )
    if choice == "dtype":
        return wrong_dtype(a)
    if choice == "0d" and not allow_0d:
        return a.dtype.type(1.5)
    if choice == "empty" and a.ndim:
        return np.empty(a.shape[:-1] + (0,), dtype=a.dtype)
    if choice == "extra_axis":
        return a[..., None]
    if choice == "drop_axis" and a.ndim and a.shape[-1]:
        return a[..., 0]
    return np.asarray(a, dtype=np.float64).tolist()


@st.composite
def hostile_labels(draw, t, n_classes):
    t = np.asarray(t)
    choice = draw(
        st.sampled_from(
            ["high", "negative", "huge", "float", "bool", "shape", "object", "uint_huge"]
        )
    )
    if choice in ("high", "negative", "huge") and t.size:
        with np.errstate(invalid="ignore"):  # hostile labels may be NaN floats
            bad = t.astype(np.int64)
        value = {"high": n_classes, "negative": -1, "huge": 2**40}[choice]
        bad.reshape(-1)[draw(st.integers(0, t.size - 1))] = value
        return bad
    if choice == "uint_huge" and t.size:
        with np.errstate(invalid="ignore"):  # hostile labels may be inf or NaN floats
            bad = t.astype(np.uint64)
        bad.reshape(-1)[-1] = 2**63 + 5
        return bad
    if choice == "float":
        return t.astype(np.float64)
    if choice == "bool":
        return t.astype(bool)
    if choice == "object":
        return t.astype(object)
    return np.zeros(t.shape + (2,), dtype=np.int64)


@st.composite
def hostile_same_shape(draw, a, unit):
    """For an operand of ``a``'s shape: wrong shape, wrong dtype, or (if ``unit``) a value
    outside [0, 1]."""
    a = np.asarray(a)
    choice = draw(st.sampled_from(["shape", "dtype", "value", "value"]))
    if choice == "shape":
        return np.zeros(a.shape + (2,))
    if choice == "dtype" or not unit or a.size == 0:
        return np.full(a.shape, 1 + 1j) if a.size else np.zeros(a.shape, dtype=object)
    bad = np.array(a, dtype=np.float64)
    bad.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(
        st.sampled_from([-0.5, 1.5, NAN, INF, -INF, -1e-300])
    )
    return bad


OPTION_VALUES = {
    "reduction": ["avg", "MEAN", None, 1, b"mean", ""],
    "label_smoothing": [-0.1, NAN, 1.5, INF, "0.1", None, True, 1 + 0j],
    "num_threads": [0, 2.5, "2", True, -1000, 2**40, 2**31, -(2**63), 1e3],
    "axis": [2.0, 5, -5, None, True, "0", (0, 1)],
    # xent.info's distributions take axis=None (the whole array, as SciPy's entropy), and an
    # array or tuple in axis's place is SciPy's positional qk: neither is hostile there
    "dist_axis": [2.0, 5, -5, True, "0"],
    "ignore_index": [2**70, -(2**70), 1.5, True, "x", None],
    "base": [0, 1, -2, NAN, INF, "2", True, 1 + 1j],
    "normalize": ["no", "yes", 2, None, 0.5],
    "keepdims": ["no", 2, None, 0.5],
    "check": ["yes", 2],
    "topk": [
        0,
        -1,
        2.5,
        "1",
        (),
        [],
        (1, 0),
        (3, -2),
        (1.0,),
        True,
        (1, True),
        None,
        np.float64(2),
    ],
    "chunk_rows": [0, -1, 2.5, "2", True, np.float32(3), -(2**70)],
    "softcap": [0, -1.0, NAN, INF, "30", True, 1j],
}


@st.composite
def hostile_weight(draw, shape):
    choice = draw(st.sampled_from(["shape", "dtype", "object", "scalar"]))
    if choice == "shape":
        return np.ones(tuple(s + 1 for s in shape) or (2,))
    if choice == "dtype":
        return np.full(shape, 1j)
    if choice == "object":
        return np.ones(shape, dtype=object) if shape else "1"
    return "heavy"


@st.composite
def hostile_out(draw, x, grad=False):
    x = np.asarray(x)
    choice = draw(st.sampled_from(["shape", "dtype", "readonly", "list", "overlap"]))
    dtype = x.dtype.newbyteorder("=") if x.dtype.kind == "f" else F64
    if choice == "shape":
        return np.empty(x.shape + (1,), dtype=dtype)
    if choice == "dtype":
        return np.empty(x.shape, dtype=F16 if dtype != F16 else F64)
    if choice == "readonly":
        out = np.empty(x.shape, dtype=dtype)
        out.flags.writeable = False
        return out
    if choice == "overlap" and grad:
        return "overlap"  # resolved by the spec: the target's own memory
    return np.zeros(x.shape).tolist()


# ---- comparing against the reference ----------------------------------------------------------


def assert_matches(got, expected, dtype, atol_scale=1.0, what="result"):
    """``got`` (of ``dtype``) equals the float64 ``expected`` within TOLERANCES[dtype].

    NaN must meet NaN and an infinity the same infinity. A finite value may differ by
    ``atol * atol_scale + rtol * |expected|``: ``atol_scale`` is the sum of the magnitudes
    of the terms a result adds (a sum's error is relative to them, not to the result), inf
    where they overflow (then anything goes: the exact answer is beyond float64).
    """
    got = np.asarray(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    rtol, atol = TOLERANCES[dtype]
    with np.errstate(all="ignore"):
        want = expected.astype(dtype).astype(np.float64)
        g = got.astype(np.float64)
        scale = np.broadcast_to(np.asarray(atol_scale, dtype=np.float64), g.shape)
        bound = atol * scale + rtol * np.abs(want)
        ok = (
            (g == want)
            | (np.isnan(g) & np.isnan(want))
            | (np.abs(g - want) <= bound)
            | np.isinf(scale)
            | np.isnan(scale)
        )
        # rounding to dtype: a value within rtol of the largest finite may round either way
        top = float(np.finfo(dtype).max) * (1 - rtol)
        ok |= (np.abs(expected) >= top) & (np.abs(g) >= top) & (np.sign(g) == np.sign(want))
    if not ok.all():
        i = np.unravel_index(int(np.argmax(~ok)), ok.shape) if ok.ndim else ()
        raise AssertionError(
            f"{what}: {int((~ok).sum())} of {ok.size} values differ from xent.reference; "
            f"first at {i}: got {g[i]!r}, reference {expected[i]!r} (bound {bound[i]!r})"
        )


def f64(a):
    """The values of a float array as float64 (float16 and float32 upcast exactly)."""
    return np.asarray(a).astype(np.float64)


def in_compute(a, x_dtype):
    """An operand as xent computes it: cast to the compute dtype of the input."""
    with np.errstate(over="ignore"):
        return np.asarray(a).astype(COMPUTE[np.dtype(x_dtype).newbyteorder("=")])


def native(dtype):
    return np.dtype(dtype).newbyteorder("=")


def reduce_bound(reduction, row_scale, row_loss, denominator, dtype):
    """atol_scale of a loss: per row its own; for a sum, the rows' bounds added up (each row
    is off by at most atol * scale + rtol * |row|), over the denominator for a mean."""
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    with np.errstate(all="ignore"):
        row_scale = np.broadcast_to(np.asarray(row_scale, dtype=np.float64), np.shape(row_loss))
        if reduction == "none":
            return np.maximum(row_scale, 1.0)
        scale = np.sum(row_scale) + rtol / atol * np.sum(np.abs(row_loss))
        if reduction == "mean":
            scale = scale / abs(denominator) if denominator != 0 else INF
        return max(scale, 1.0)


# ---- the specs --------------------------------------------------------------------------------


class Spec:
    """One public function: ``draw`` a valid call, ``hostile`` kinds of its arguments,
    ``expect`` compares a result against the reference."""

    def __init__(self, name, fn, draw, expect, hostile, positional=()):
        self.name, self.fn, self.draw, self.expect = name, fn, draw, expect
        self.hostile, self.positional = hostile, positional

    def call(self, kw):
        kw = dict(kw)
        args = [kw.pop(p) for p in self.positional]
        return self.fn(*args, **kw)


def threads_option(draw):
    return draw(st.sampled_from([None, None, 1, 2, -1, 1000, np.int64(2)]))


# -- logsumexp, log_softmax, softmax


@st.composite
def axis_call(draw, with_out=False, keepdims=False):
    batch = draw(batch_shapes())
    shape = batch + (draw(n_classes_strategy(batch)),)
    x = draw(float_arrays(shape))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    x = np.moveaxis(x, -1, axis)
    kw = dict(x=x, axis=axis, num_threads=threads_option(draw))
    if keepdims:
        kw["keepdims"] = draw(st.sampled_from([False, True, np.True_]))
    if with_out:
        kind = draw(st.sampled_from([None, None, "new", "fortran", "inplace"]))
        if kind == "new":
            kw["out"] = np.full(x.shape, NAN, dtype=native(x.dtype))
        elif kind == "fortran":
            kw["out"] = np.asfortranarray(np.full(x.shape, NAN, dtype=native(x.dtype)))
        elif kind == "inplace" and x.flags.writeable and x.dtype.isnative:
            kw["out"] = kw["x"]
    return kw


def scipy_dtype(x):
    """The result dtype of logsumexp, softmax, log_softmax: SciPy's, integers and bools
    promoted to float64."""
    return np.dtype(np.float64) if x.dtype.kind in "iub" else native(x.dtype)


def expect_logsumexp(kw, got):
    want = ref.logsumexp(f64(kw["x"]), axis=kw["axis"], keepdims=bool(kw["keepdims"]))
    assert_matches(got, want, scipy_dtype(kw["x"]))


def rowwise_expect(reference_fn):
    def expect(kw, got):
        x = kw["x"]
        assert_matches(got, reference_fn(f64(x), axis=kw["axis"]), scipy_dtype(x))

    return expect


# -- losses of class indices or probabilities


@st.composite
def loss_call(draw, probabilities=None, nll=False, grad=False):
    batch = draw(batch_shapes())
    n_classes = draw(n_classes_strategy(batch))
    x = draw(float_arrays(batch + (n_classes,)))
    if probabilities is None:
        probabilities = not nll and draw(st.integers(0, 3)) == 0
    ignore = draw(st.sampled_from([-100, -100, -1, 0, n_classes - 1]))
    kw = dict(
        logits=x,
        weight=None,
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        num_threads=threads_option(draw),
    )
    if probabilities:
        kw["target"] = draw(st.one_of(probability_rows(x.shape), float_arrays(x.shape, unit=True)))
        ignore = min(ignore, -1)
    else:
        kw["target"] = draw(class_labels(batch, n_classes, ignore))
    if ignore != -100 or draw(st.booleans()):
        kw["ignore_index"] = ignore
    if draw(st.booleans()):
        w = draw(st.sampled_from(["positive", "hostile", "int"]))
        if w == "positive":
            kw["weight"] = draw(float_arrays((n_classes,), unit=True, hostile=False)) * 3
        elif w == "int":
            kw["weight"] = np.arange(n_classes, dtype=np.int32) % 4
        else:
            kw["weight"] = draw(float_arrays((n_classes,)))
    if not nll:
        kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1, 1.0, 5e-324]))
    if grad:
        if kw["reduction"] == "none":
            kw["grad_output"] = draw(st.sampled_from([None, "rows"]))
            if kw["grad_output"] == "rows":
                kw["grad_output"] = draw(float_arrays(batch, hostile=False, dtype=F64))
        else:
            kw["grad_output"] = draw(st.sampled_from([None, 2.0, -0.5, np.float32(3)]))
        if draw(st.booleans()) and x.dtype.isnative and x.flags.writeable:
            kw["out"] = draw(st.sampled_from([x, np.empty_like(x)]))
    if nll:
        kw["log_probs"] = kw.pop("logits")
    return kw


def _loss_reference(kw, nll=False):
    """(reference row losses, per-row atol scale, mean's denominator, reference kwargs)."""
    x = kw["log_probs" if nll else "logits"]
    dtype = native(x.dtype)
    t = np.asarray(kw["target"])
    options = dict(
        weight=None if kw.get("weight") is None else f64(kw["weight"]),
        ignore_index=kw.get("ignore_index", -100),
    )
    if not nll:
        options["label_smoothing"] = kw.get("label_smoothing", 0.0)
    n_classes = x.shape[-1]
    w = np.ones(n_classes) if options["weight"] is None else options["weight"]
    eps = options.get("label_smoothing", 0.0)
    with np.errstate(all="ignore"):
        if t.dtype.kind == "f":
            p = f64(in_compute(t, dtype))
            lost = (p == 0) & (f64(t) != 0)  # kept as the smallest subnormal, see _api
            p[lost] = np.copysign(float(np.finfo(COMPUTE[dtype]).smallest_subnormal), f64(t)[lost])
            target = p
            q = (1 - eps) * p + eps / n_classes
            row_scale = np.sum(np.abs(w * q), axis=-1)
            denominator = int(np.prod(x.shape[:-1]))
        else:
            target = t.astype(np.int64)
            kept = target != options["ignore_index"]
            tw = np.where(kept, w[np.where(kept, target, 0)], 0.0)
            row_scale = np.where(
                kept, (1 - eps) * np.abs(tw) + eps / n_classes * np.sum(np.abs(w)), 0.0
            )
            denominator = np.sum(tw)
        fn = ref.nll_loss if nll else ref.cross_entropy
        rows = fn(f64(x), target, reduction="none", **options)
    return rows, row_scale, denominator, target, options


def expect_loss(kw, got, nll=False, name="loss"):
    x = kw["log_probs" if nll else "logits"]
    reduction = kw["reduction"]
    rows, row_scale, denominator, target, options = _loss_reference(kw, nll)
    fn = ref.nll_loss if nll else ref.cross_entropy
    with np.errstate(all="ignore"):
        want = fn(f64(x), target, reduction=reduction, **options)
    if nll:  # -w x: relative to the terms, whatever the size of x
        row_scale = np.zeros(np.shape(rows))
    assert_matches(
        got,
        want,
        native(x.dtype),
        reduce_bound(reduction, row_scale, rows, denominator, native(x.dtype)),
        what=name,
    )


def expect_loss_grad(kw, got):
    loss, grad = got
    before = kw["_before"]  # the logits before the call (out may be the logits)
    kw_before = dict(kw, logits=before)
    expect_loss(kw_before, loss)
    rows, row_scale, denominator, target, options = _loss_reference(kw_before)
    g = kw.get("grad_output")
    with np.errstate(all="ignore"):
        want = ref.cross_entropy_grad(
            f64(before), target, reduction=kw["reduction"], grad_output=g, **options
        )
        factor = np.abs(np.asarray(1.0 if g is None else g, dtype=np.float64))
        if kw["reduction"] == "mean":
            factor = factor / abs(denominator) if denominator != 0 else np.float64(INF)
        unit = np.broadcast_to(factor, np.shape(before)[:-1])[..., None]
        scale = unit * np.maximum(np.asarray(row_scale)[..., None], 1.0) * 2
    assert grad is kw["out"] if kw.get("out") is not None else True
    assert_matches(grad, want, native(before.dtype), scale, what="gradient")


# -- per-row gradient and diagonal Hessian (gradient boosting)


def grad_hess_call(binary):
    """A valid call of cross_entropy_grad_hess (class indices) or of
    binary_cross_entropy_with_logits_grad_hess: a loss call without reduction or smoothing,
    with a sample_weight sometimes."""
    draw_call = binary_call(True) if binary else loss_call(probabilities=False)

    @st.composite
    def call(draw):
        kw = draw(draw_call)
        for k in ("reduction", "label_smoothing"):
            kw.pop(k, None)
        x = kw["logits"]
        batch = np.shape(x)[:1] if binary else np.shape(x)[:-1]
        if draw(st.booleans()) and (not binary or np.ndim(x)):
            kw["sample_weight"] = draw(float_arrays(batch, hostile=False, dtype=F64))
        return kw

    return call()


def grad_hess_expect(binary):
    def expect(kw, got):
        x = kw["_before"]
        dtype = native(x.dtype)
        with np.errstate(all="ignore"):
            if binary:
                ops = {
                    k: f64(in_compute(kw[k], dtype))
                    for k in ("weight", "pos_weight")
                    if kw.get(k) is not None
                }
                want = ref.binary_cross_entropy_with_logits_grad_hess(
                    f64(x),
                    f64(in_compute(kw["target"], dtype)),
                    sample_weight=kw.get("sample_weight"),
                    **ops,
                )
                scale = np.abs(ops.get("weight", 1.0)) * np.maximum(
                    np.abs(ops.get("pos_weight", 1.0)), 1
                )
            else:
                weight = None if kw.get("weight") is None else f64(kw["weight"])
                want = ref.cross_entropy_grad_hess(
                    f64(x),
                    np.asarray(kw["target"]).astype(np.int64),
                    weight=weight,
                    ignore_index=kw.get("ignore_index", -100),
                    sample_weight=kw.get("sample_weight"),
                )
                scale = np.max(np.abs(weight)) if weight is not None and weight.size else 1.0
            if kw.get("sample_weight") is not None:
                sw = np.abs(f64(kw["sample_weight"]))
                sw = sw.reshape(sw.shape + (1,) * (np.ndim(x) - sw.ndim))
                scale = scale * sw
            scale = np.broadcast_to(scale, np.shape(x)) * 2
        assert_matches(got[0], want[0], dtype, scale, what="gradient")
        assert_matches(got[1], want[1], dtype, scale, what="hessian")

    return expect


# -- binary cross-entropy


@st.composite
def binary_call(draw, logits, grad=False):
    shape = draw(
        st.one_of(st.just(()), batch_shapes().map(lambda b: b + (3,)), st.just((5,)), st.just((0,)))
    )
    x = draw(float_arrays(shape, unit=not logits))
    kw = dict(
        target=draw(float_arrays(shape, unit=True, hostile=False)),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        num_threads=threads_option(draw),
    )
    kw["logits" if logits else "probs"] = x
    if draw(st.booleans()) and shape:
        kw["weight"] = draw(float_arrays(shape[-1:], hostile=False))
    if logits and draw(st.booleans()) and shape:
        kw["pos_weight"] = np.abs(draw(float_arrays(shape[-1:], hostile=False)))
    if grad:
        if kw["reduction"] == "none" and draw(st.booleans()):
            kw["grad_output"] = draw(float_arrays(shape, hostile=False, dtype=F64))
        elif kw["reduction"] != "none":
            kw["grad_output"] = draw(st.sampled_from([None, 0.5, -2.0]))
        if draw(st.booleans()) and x.dtype.isnative and x.flags.writeable and x.ndim:
            kw["out"] = draw(st.sampled_from([x, np.empty_like(x)]))
    return kw


def binary_expect(logits, grad=False):
    def expect(kw, got):
        x = kw["_before"]
        dtype = native(x.dtype)
        with np.errstate(all="ignore"):
            ops = {
                k: f64(in_compute(kw[k], dtype))
                for k in ("target", "weight", "pos_weight")
                if kw.get(k) is not None
            }
            fn = ref.binary_cross_entropy_with_logits if logits else ref.binary_cross_entropy
            rows = fn(f64(x), reduction="none", **ops)
            want = fn(f64(x), reduction=kw["reduction"], **ops)
        w = np.abs(ops.get("weight", 1.0)) * np.maximum(np.abs(ops.get("pos_weight", 1.0)), 1)
        row_scale = np.broadcast_to(w, np.shape(x)) * (100 if not logits else 1)
        loss = got[0] if grad else got
        assert_matches(
            loss,
            want,
            dtype,
            reduce_bound(kw["reduction"], row_scale, rows, np.size(x), dtype),
            what="loss",
        )
        if not grad:
            return
        g = kw.get("grad_output")
        gfn = ref.binary_cross_entropy_with_logits_grad if logits else ref.binary_cross_entropy_grad
        with np.errstate(all="ignore"):
            want_grad = gfn(f64(x), reduction=kw["reduction"], grad_output=g, **ops)
            factor = np.abs(np.asarray(1.0 if g is None else g, dtype=np.float64))
            if kw["reduction"] == "mean":
                factor = factor / np.size(x) if np.size(x) else np.float64(INF)
            # probs: the gradient divides by max(x (1 - x), 1e-12), up to 1e12 x the loss's
            scale = factor * np.maximum(row_scale, 1) * (1 if logits else 1e12)
        assert_matches(got[1], want_grad, dtype, scale, what="gradient")

    return expect


# -- information quantities


@st.composite
def dist_call(draw, two=False):
    batch = draw(batch_shapes())
    shape = batch + (draw(n_classes_strategy(batch)),)
    normalize = draw(st.sampled_from([False, False, True, np.True_]))
    if normalize and draw(st.booleans()):
        p = np.abs(draw(float_arrays(shape)))
    else:
        p = draw(probability_rows(shape))
    axis = draw(st.integers(-p.ndim, p.ndim - 1))
    kw = dict(
        p=np.moveaxis(p, -1, axis),
        axis=axis,
        normalize=normalize,
        base=draw(st.sampled_from([None, 2, 10.0, np.e, 0.5])),
        num_threads=threads_option(draw),
    )
    if two:
        kw["q"] = np.moveaxis(draw(probability_rows(shape)), -1, axis)
    return kw


def dist_expect(reference_fn, two=False):
    def expect(kw, got):
        p = kw["p"]
        dtype = native(p.dtype)
        args = [f64(in_compute(p, dtype))]
        if two:
            dtype = np.result_type(dtype, native(kw["q"].dtype))
            args = [f64(in_compute(p, dtype)), f64(in_compute(kw["q"], dtype))]
        with np.errstate(all="ignore"):
            want = reference_fn(
                *args, axis=kw["axis"], base=kw["base"], normalize=bool(kw["normalize"])
            )
        n_classes = np.size(p) if kw["axis"] is None else np.shape(p)[kw["axis"]]
        scale = max(1.0, math.log(n_classes + 1)) * 4
        assert_matches(got, want, dtype, scale)

    return expect


@st.composite
def elementwise_info_call(draw):
    shape = draw(st.one_of(st.just(()), batch_shapes().map(lambda b: b + (4,))))
    return dict(
        p=draw(float_arrays(shape, unit=True)),
        base=draw(st.sampled_from([None, 2, 10.0, 0.5])),
        num_threads=threads_option(draw),
    )


def elementwise_info_expect(reference_fn):
    def expect(kw, got):
        dtype = native(kw["p"].dtype)
        with np.errstate(all="ignore"):
            want = reference_fn(f64(kw["p"]), base=kw["base"])
        assert_matches(got, want, dtype)

    return expect


@st.composite
def entropy_logits_call(draw):
    kw = draw(axis_call())
    kw["logits"] = kw.pop("x")
    kw["base"] = draw(st.sampled_from([None, 2, 10.0]))
    return kw


def expect_entropy_logits(kw, got):
    x = kw["logits"]
    with np.errstate(all="ignore"):
        want = ref.entropy_from_logits(f64(x), axis=kw["axis"], base=kw["base"])
    n_classes = np.size(x) if kw["axis"] is None else np.shape(x)[kw["axis"]]
    scale = max(1.0, math.log(n_classes + 1)) * 4
    assert_matches(got, want, native(x.dtype), scale)


@st.composite
def perplexity_call(draw):
    kw = draw(loss_call())
    del kw["reduction"]
    return kw


def expect_perplexity(kw, got):
    dtype = native(kw["logits"].dtype)
    rows, row_scale, denominator, target, options = _loss_reference(kw)
    with np.errstate(all="ignore"):
        mean = ref.cross_entropy(f64(kw["logits"]), target, **options)
        want = np.exp(mean).astype(dtype)
    if np.isfinite(mean) and (want == 0 or np.isinf(want)):  # exp beyond the dtype's range
        assert got == want and got.dtype == dtype, (got, want)
        return
    if np.isfinite(mean) and abs(want) < np.finfo(dtype).tiny:
        # a subnormal result is held to its absolute resolution, one subnormal step (its log
        # moves by up to step / value: 0.03 for exp(-100.85) in float32), plus the mean's own
        # error, well under 1% of the value
        exact = math.exp(mean)
        step = float(np.finfo(dtype).smallest_subnormal)
        assert got.dtype == dtype and abs(float(got) - exact) <= step + 0.01 * exact, (got, exact)
        return
    # exp(mean): compared as the mean, log(perplexity), whose error is absolute
    with np.errstate(all="ignore"):
        log_got = np.log(np.asarray(got, dtype=np.float64)).astype(got.dtype)
    expect_loss(dict(kw, reduction="mean"), log_got, name="log(perplexity)")


@st.composite
def threads_call(draw):
    return dict(num_threads=draw(st.sampled_from([None, 1, 2, 3, -1, 1000, np.int8(2)])))


def expect_threads(kw, got):
    n = kw["num_threads"]
    assert isinstance(got, int) and got >= 1
    if xent._kernels.has_openmp() and n is not None and n > 0:
        assert got == min(n, xent._threads.available_cpus())  # above the CPUs: lowered


# -- evaluate


@st.composite
def evaluate_call(draw):
    """Arrays of any layout and label dtype; top-k tuples with k up to beyond C; chunks of
    a few rows (many chunks) or the default (one)."""
    batch = draw(batch_shapes())
    n_classes = draw(n_classes_strategy(batch))
    x = draw(float_arrays(batch + (n_classes,), layout=False))
    offset = draw(st.sampled_from([None, None, None, 1e4, 1e30, 1e300, 1.7e308, -1e30, -1.7e308]))
    if offset is not None and x.size:  # huge logits: one class per row, some, or all
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        share = draw(st.sampled_from(["one", 0.2, 1.0]))
        if share == "one":
            moved = np.arange(n_classes) == rng.integers(0, n_classes, batch + (1,))
        else:
            moved = rng.uniform(size=x.shape) < share
        with np.errstate(all="ignore"):
            x = np.where(moved, f64(x) + offset, f64(x)).astype(x.dtype)
    x = relayout(x, draw(st.sampled_from(LAYOUTS)))
    ignore = draw(st.sampled_from([-100, -100, -1, 0, n_classes - 1]))
    kw = dict(
        logits=x,
        labels=draw(class_labels(batch, n_classes, ignore)),
        num_threads=threads_option(draw),
    )
    if ignore != -100 or draw(st.booleans()):
        kw["ignore_index"] = ignore
    k = st.integers(1, n_classes + 3)
    topk = draw(
        st.one_of(
            st.none(),
            k,
            k.map(np.int64),
            st.lists(k, min_size=1, max_size=4).map(tuple),
            st.lists(k, min_size=1, max_size=3),
        )
    )
    if topk is not None:
        kw["topk"] = topk
    chunk = draw(st.sampled_from([None, None, "few", "some"]))
    if chunk is not None:
        kw["chunk_rows"] = draw(st.integers(1, 3) if chunk == "few" else st.integers(4, 300))
    if draw(st.booleans()):
        w = draw(st.sampled_from(["positive", "hostile", "int"]))
        if w == "positive":
            kw["weight"] = draw(float_arrays((n_classes,), unit=True, hostile=False)) * 3
        elif w == "int":
            kw["weight"] = np.arange(n_classes, dtype=np.int32) % 4
        else:
            kw["weight"] = draw(float_arrays((n_classes,)))
    return kw


def same_report(a, b):
    """Two reports hold the same bits (NaN equal to NaN)."""
    da, db = a.as_dict(), b.as_dict()
    return da.keys() == db.keys() and all(
        (x == y or (x != x and y != y)) and type(x) is type(y)
        for x, y in zip(da.values(), db.values())
    )


def expect_evaluate(kw, got):
    x = kw["logits"]
    dtype = COMPUTE[native(x.dtype)]  # metrics are float64 sums of rows computed in this
    topk = kw.get("topk", (1, 5))
    ks = tuple(sorted({int(k) for k in (np.atleast_1d(topk))}))
    options = dict(weight=kw.get("weight"), ignore_index=kw.get("ignore_index", -100))
    with np.errstate(all="ignore"):
        want = ref.evaluate(
            f64(x),
            kw["labels"],
            topk=ks,
            weight=None if options["weight"] is None else f64(options["weight"]),
            ignore_index=options["ignore_index"],
        )
    assert isinstance(got, xent.EvaluationReport), type(got)
    # counts and accuracies: ranks compare the same values (xent's compute dtype holds the
    # input exactly), so they are exact
    assert (got.count, got.ignored) == (want["count"], want["ignored"]), got
    assert type(got.count) is int and type(got.ignored) is int
    assert got.topks == ks, (got.topks, ks)
    for name, value in [("accuracy", got.accuracy)] + [
        (f"top{k}_accuracy", acc) for k, acc in got.topk_accuracy
    ]:
        assert value == want[name] or (math.isnan(value) and math.isnan(want[name])), (
            f"{name}: got {value!r}, reference {want[name]!r}"
        )
    # loss: the weighted mean of the rows' losses, bounded as cross_entropy's mean
    loss_kw = dict(options, logits=x, target=kw["labels"], reduction="mean")
    rows, row_scale, denominator, _, _ = _loss_reference(loss_kw)
    bound = reduce_bound("mean", row_scale, rows, denominator, dtype)
    with np.errstate(all="ignore"):
        assert_matches(np.float64(got.loss).astype(dtype), want["loss"], dtype, bound, what="loss")
        # perplexity: exp of the float64 loss, compared with the reference as its log
        assert same_value(got.perplexity, float(np.exp(np.float64(got.loss)))), got
        log_ppl = np.log(np.float64(got.perplexity))
    if got.perplexity in (0.0, INF) or want["perplexity"] in (0.0, INF):
        # exp beyond float64 (a loss above 709.8 or below -745): within the loss's bound
        # of that limit either side will do, so only the sign is checked
        assert (
            abs(want["loss"]) > 700
            and (got.loss > 0) == (want["loss"] > 0)
            and (got.perplexity != 0 or got.loss < 0)
        ), (got, want)
    else:
        assert_matches(log_ppl.astype(dtype), want["loss"], dtype, bound, what="log(perplexity)")
    # entropy: mean over the counted rows of entropy_from_logits, within its bound
    scale = max(1.0, math.log(np.shape(x)[-1] + 1)) * 4
    with np.errstate(all="ignore"):
        assert_matches(
            np.float64(got.entropy).astype(dtype), want["entropy"], dtype, scale, what="entropy"
        )
    # the chunking and thread count change no bit
    other = dict(kw, chunk_rows=None if kw.get("chunk_rows") else 2, num_threads=1)
    other = {k: v for k, v in other.items() if not k.startswith("_")}
    again = xent.evaluate(other.pop("logits"), other.pop("labels"), **other)
    assert same_report(got, again), (got, again)


def same_value(a, b):
    return a == b or (a != a and b != b)


# -- compare


@st.composite
def compare_call(draw):
    """Two models' logits of one dtype and shape (the candidate with hostile entries or
    not), labels or none, chunks of a few rows or the default."""
    batch = draw(batch_shapes())
    n_classes = draw(n_classes_strategy(batch))
    dtype = draw(st.sampled_from([F16, F32, F64]))
    ref_logits = draw(float_arrays(batch + (n_classes,), dtype=dtype, hostile=False))
    kw = dict(
        ref=ref_logits,
        cand=draw(float_arrays(batch + (n_classes,), dtype=dtype)),
        num_threads=threads_option(draw),
    )
    if draw(st.booleans()):
        ignore = draw(st.sampled_from([-100, 0]))
        kw["labels"] = draw(class_labels(batch, n_classes, ignore))
        kw["ignore_index"] = ignore
    chunk = draw(st.sampled_from([None, "few"]))
    if chunk is not None:
        kw["chunk_rows"] = draw(st.integers(1, 3))
    return kw


def expect_compare(kw, got):
    with np.errstate(all="ignore"):
        want = ref.compare(
            f64(kw["ref"]),
            f64(kw["cand"]),
            kw.get("labels"),
            ignore_index=kw.get("ignore_index", -100),
        )
    assert isinstance(got, xent.ComparisonReport), type(got)
    assert (got.count, got.ignored) == (want["count"], want["ignored"])
    assert got.top1_agreement == want["top1_agreement"] or (
        math.isnan(got.top1_agreement) and math.isnan(want["top1_agreement"])
    )
    tol = {F16: 1e-3, F32: 1e-3, F64: 1e-9}[native(kw["ref"].dtype)]
    for name in ("kl", "js"):
        a, b = getattr(got, name), want[name]
        # q_i = exp(-1e30) is 0 in the reference (KL inf), while xent's p_i d_i keeps the
        # finite 1e30-sized KL: both say "enormous"
        huge = b == INF and a > 1e20
        assert (a != a and b != b) or a == b or abs(a - b) <= tol * (1 + abs(b)) or huge, (
            name,
            a,
            b,
        )
    other = dict(kw, chunk_rows=None if kw.get("chunk_rows") else 2, num_threads=1)
    other = {k: v for k, v in other.items() if not k.startswith("_")}
    again = xent.compare(other.pop("ref"), other.pop("cand"), **other)
    assert same_report(got, again), (got, again)


ROWWISE_HOSTILE = {
    "x": "float_array",
    "axis": "axis",
    "num_threads": "num_threads",
    "out": "out",
    "check": "check",
}
# -- linear cross-entropy (hidden @ weight.T + bias, never formed by xent)


@st.composite
def linear_call(draw, grad=False):
    batch = draw(batch_shapes())
    vocab = draw(n_classes_strategy(batch))
    if vocab > 1000:
        vocab = 1000 + draw(st.integers(0, 600))  # a few tiles, not 70000 x H
    width = draw(st.sampled_from([0, 1, 3, 8, 33]))
    dtype = draw(st.sampled_from([F16, F32, F32, F64, F64]))
    ignore = draw(st.sampled_from([-100, -100, -1, 0, vocab - 1]))
    kw = dict(
        hidden=draw(float_arrays(batch + (width,), dtype=dtype)),
        weight=draw(float_arrays((vocab, width), dtype=dtype)),
        target=draw(class_labels(batch, vocab, ignore)),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        label_smoothing=draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
        num_threads=threads_option(draw),
    )
    if ignore != -100 or draw(st.booleans()):
        kw["ignore_index"] = ignore
    if draw(st.booleans()):
        kw["bias"] = draw(float_arrays((vocab,), dtype=dtype))
    if draw(st.booleans()):
        kw["softcap"] = draw(st.sampled_from([30.0, 1.0, 1e-3]))
    if grad:
        if kw["reduction"] == "none":
            if draw(st.booleans()):
                kw["grad_output"] = draw(float_arrays(batch, hostile=False, dtype=F64))
        else:
            kw["grad_output"] = draw(st.sampled_from([None, 2.0, -0.5]))
    return kw


def linear_dtype(h, w):
    """The dtype of a linear loss: the inputs' if they share one, else the wider compute one."""
    dh, dw = native(h.dtype), native(w.dtype)
    return dh if dh == dw else np.result_type(COMPUTE[dh], COMPUTE[dw])


def _linear_reference(kw):
    """(reference row losses, per-row atol scale, mean's denominator, logits as computed).

    xent forms the logits in the inputs' compute dtype (as PyTorch does): the reference gets
    the inputs in that dtype, and each row may be off by the rounding of a dot product of H
    terms, relative to the largest |h||W| sum of the row. Where that overflows, or a value is
    not finite, anything goes (the scale is inf).
    """
    h, w = np.asarray(kw["hidden"]), np.asarray(kw["weight"])
    dtype = linear_dtype(h, w)
    compute = np.result_type(COMPUTE[native(h.dtype)], COMPUTE[native(w.dtype)])
    width, vocab = w.shape[1], w.shape[0]
    n_rows = int(np.prod(h.shape[:-1], dtype=np.int64))
    with np.errstate(over="ignore"):
        h64 = f64(h.astype(compute)).reshape(n_rows, width)
        w64 = f64(w.astype(compute))
    b = kw.get("bias")
    with np.errstate(over="ignore"):
        b64 = None if b is None else f64(np.asarray(b).astype(compute))
    t = np.asarray(kw["target"]).astype(np.int64).reshape(-1)
    ignore = kw.get("ignore_index", -100)
    with np.errstate(all="ignore"):
        magnitude = np.abs(h64) @ np.abs(w64).T + (0 if b64 is None else np.abs(b64))
        row_mag = magnitude.max(axis=1) if vocab else np.zeros(len(t))
        u = float(np.finfo(compute).eps)
        rtol, atol = TOLERANCES[np.dtype(dtype)]
        bad = ~np.isfinite(row_mag) | (row_mag > float(np.finfo(compute).max) / 4)
        scale = np.where(bad, INF, 1.0 + 8 * (width + 2) * u * row_mag / atol)
        rows = ref.linear_cross_entropy(
            h64,
            w64,
            t,
            bias=b64,
            ignore_index=ignore,
            reduction="none",
            label_smoothing=kw["label_smoothing"],
            softcap=kw.get("softcap"),
        )
        kept = t != ignore
        scale = np.where(kept, scale, 1.0)
    return rows, scale, int(kept.sum()), (h64, w64, b64, t)


def expect_linear(kw, got, name="loss"):
    h = np.asarray(kw["hidden"])
    dtype = linear_dtype(h, np.asarray(kw["weight"]))
    rows, scale, denominator, _ = _linear_reference(kw)
    batch = h.shape[:-1]
    reduction = kw["reduction"]
    with np.errstate(all="ignore"):
        if reduction == "none":
            want = rows.reshape(batch)
        elif reduction == "sum":
            want = np.sum(rows)
        else:
            want = np.sum(rows) / denominator if denominator else NAN
    assert_matches(
        got,
        want,
        dtype,
        reduce_bound(reduction, scale.reshape(batch), rows.reshape(batch), denominator, dtype),
        what=name,
    )


def expect_linear_grad(kw, got):
    expect_linear(kw, got[0])
    assert np.array_equal(
        got[0],
        xent.linear_cross_entropy(
            **{k: v for k, v in kw.items() if k not in ("grad_output", "_before")}
        ),
        equal_nan=True,
    ), "the loss differs from linear_cross_entropy's"
    h, w = np.asarray(kw["hidden"]), np.asarray(kw["weight"])
    dtype = linear_dtype(h, w)
    rows, scale, denominator, (h64, w64, b64, t) = _linear_reference(kw)
    with np.errstate(all="ignore"):
        want = ref.linear_cross_entropy_grad(
            h64,
            w64,
            t,
            bias=b64,
            ignore_index=kw.get("ignore_index", -100),
            reduction=kw["reduction"],
            label_smoothing=kw["label_smoothing"],
            softcap=kw.get("softcap"),
            grad_output=None
            if kw.get("grad_output") is None
            else np.asarray(kw["grad_output"], dtype=np.float64).reshape(-1),
        )
        g = np.abs(
            np.asarray(
                1.0 if kw.get("grad_output") is None else kw["grad_output"], dtype=np.float64
            )
        ).reshape(-1)
        factor = g / denominator if kw["reduction"] == "mean" and denominator else g
        if kw["reduction"] == "mean" and not denominator:
            factor = np.float64(INF)
        # Each row's gradient is factor * (softmax - onehot) mixed through W (or h): off by
        # its logits' error times the largest |W| (|h|) entries, summed over the vocabulary.
        row_unit = np.broadcast_to(factor, scale.shape) * scale
        inputs = [h64, w64] + ([] if b64 is None else [b64])
        if not all(np.isfinite(a).all() for a in inputs):
            # Non-finite inputs: which gradient entries become NaN (0 x inf in a product
            # with an ignored row) is not pinned down; the loss above is.
            row_unit = np.full(scale.shape, INF)
        wmax = np.abs(w64).max(initial=0.0) * max(w.shape[0], 1)
        gh_scale = (row_unit * max(wmax, 1.0) * 4)[:, None]
        gw_scale = np.sum(row_unit * np.maximum(np.abs(h64).max(axis=1, initial=0.0), 1.0)) * 4
    names = ("grad_hidden", "grad_weight", "grad_bias")
    expected_len = 3 + (kw.get("bias") is not None)
    assert len(got) == expected_len
    assert_matches(
        got[1],
        want[0].reshape(h.shape),
        dtype,
        np.broadcast_to(gh_scale.reshape(h.shape[:-1] + (1,)), h.shape),
        what=names[0],
    )
    assert_matches(got[2], want[1], dtype, gw_scale, what=names[1])
    if expected_len == 4:
        assert_matches(got[3], want[2], dtype, gw_scale, what=names[2])


LINEAR_HOSTILE = {
    "hidden": "float_array",
    "weight": "float_array",
    "target": "labels",
    "ignore_index": "ignore_index",
    "reduction": "reduction",
    "label_smoothing": "label_smoothing",
    "num_threads": "num_threads",
    "softcap": "softcap",
}

# -- divergences between a student's and a teacher's logits (xent.divergence)


@st.composite
def divergence_call(draw, family, grad=False):
    batch = draw(batch_shapes())
    n_classes = draw(n_classes_strategy(batch))
    x = draw(float_arrays(batch + (n_classes,), hostile=False))
    kw = dict(
        logits=x,
        teacher=draw(float_arrays(x.shape, dtype=x.dtype, hostile=False)),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        temperature=draw(st.sampled_from([1.0, 2.0, 0.5])),
        num_threads=threads_option(draw),
    )
    if family == "kl":
        kw["direction"] = draw(st.sampled_from(["forward", "reverse"]))
    if family == "js":
        kw["beta"] = draw(st.sampled_from([0.0, 0.3, 0.5, 1.0]))
    if grad:
        if kw["reduction"] == "none":
            kw["grad_output"] = draw(st.sampled_from([None, "rows"]))
            if kw["grad_output"] == "rows":
                kw["grad_output"] = draw(float_arrays(batch, hostile=False, dtype=F64))
        else:
            kw["grad_output"] = draw(st.sampled_from([None, 2.0, -0.5]))
        if draw(st.booleans()) and x.dtype.isnative and x.flags.writeable:
            kw["out"] = draw(st.sampled_from([x, np.empty_like(x)]))
    return kw


def divergence_expect(reference_fn, grad=False):
    def expect(kw, got):
        x = kw["_before"]
        dtype = native(x.dtype)
        options = {
            k: v
            for k, v in kw.items()
            if k in ("reduction", "temperature", "direction", "beta", "grad_output")
        }
        with np.errstate(all="ignore"):
            want = reference_fn(f64(x), f64(kw["teacher"]), **options)
        # the terms a row adds are up to |scaled logits| in size (the log-ratios)
        size = (
            np.max(np.abs(f64(x)), initial=0) + np.max(np.abs(f64(kw["teacher"])), initial=0)
        ) / kw["temperature"]
        factor = kw["temperature"] ** 2
        rows = max(int(np.prod(x.shape[:-1])), 1)
        scale = 4 * factor * (1 + size) * (rows if kw["reduction"] == "sum" else 1)
        if not grad:
            assert_matches(got, want, dtype, scale, what="divergence")
            return
        assert_matches(got[0], want[0], dtype, scale, what="divergence")
        g = np.abs(
            np.asarray(
                1.0 if kw.get("grad_output") is None else kw["grad_output"], dtype=np.float64
            )
        )
        unit = np.max(g, initial=0) * factor / kw["temperature"]
        if kw["reduction"] == "mean":
            unit = unit / rows
        assert got[1] is kw["out"] if kw.get("out") is not None else True
        want_grad = want[1]
        if reference_fn is ref.tv_distance_logits_with_grad and want_grad.size:
            # sign(Q - P) of a near tie may round either way in the input's precision: the
            # rows holding one are only bounded (|grad| <= unit), not compared
            with np.errstate(all="ignore"):
                lq = ref.log_softmax(f64(x) / kw["temperature"])
                lp = ref.log_softmax(f64(kw["teacher"]) / kw["temperature"])
                near = np.abs(np.exp(lq) - np.exp(lp)) <= 1e-2 * np.maximum(np.exp(lq), np.exp(lp))
            rows_near = np.any(near & (np.exp(lq) > 0), axis=-1)
            assert np.all(np.abs(f64(got[1]))[rows_near] <= 2 * unit + 1e-30)
            want_grad = np.where(rows_near[..., None], f64(got[1]), want_grad)
        assert_matches(
            got[1], want_grad, dtype, 4 * max(unit, 1e-300) * (1 + size), what="gradient"
        )

    return expect


DIVERGENCE_HOSTILE = {
    "teacher": "float_array",
    "reduction": "reduction",
    "num_threads": "num_threads",
    "check": "check",
    "logits": None,
    "student": None,
}
DIVERGENCE_SPECS = [
    Spec(
        name,
        getattr(xent, name),
        divergence_call(family, grad=name.endswith("grad")),
        divergence_expect(getattr(ref, name), grad=name.endswith("grad")),
        # (out= made hostile would use a "target" these functions do not take: see
        # test_divergence.py for out= overlapping the teacher)
        dict(
            DIVERGENCE_HOSTILE, **({"grad_output": "grad_output"} if name.endswith("grad") else {})
        ),
        positional=("logits", "teacher"),
    )
    for family, base in [
        ("kl", "kl_divergence_logits"),
        ("js", "js_divergence_logits"),
        ("tv", "tv_distance_logits"),
    ]
    for name in (base, base + "_with_grad")
]


LOSS_HOSTILE = {
    "logits": "float_array",
    "target": "labels",
    "weight": "weight",
    "ignore_index": "ignore_index",
    "reduction": "reduction",
    "label_smoothing": "label_smoothing",
    "num_threads": "num_threads",
    "check": "check",
}
BINARY_HOSTILE = {
    "target": "unit_operand",
    "weight": "operand",
    "reduction": "reduction",
    "num_threads": "num_threads",
    "check": "check",
}
DIST_HOSTILE = {
    "p": "dist",
    "axis": "dist_axis",
    "base": "base",
    "normalize": "normalize",
    "num_threads": "num_threads",
    "check": "check",
}

SPECS = [
    Spec(
        "logsumexp",
        xent.logsumexp,
        axis_call(keepdims=True),
        expect_logsumexp,
        dict(ROWWISE_HOSTILE, keepdims="keepdims", out=None),
        positional=("x",),
    ),
    Spec(
        "log_softmax",
        xent.log_softmax,
        axis_call(with_out=True),
        rowwise_expect(ref.log_softmax),
        ROWWISE_HOSTILE,
        positional=("x",),
    ),
    Spec(
        "softmax",
        xent.softmax,
        axis_call(with_out=True),
        rowwise_expect(ref.softmax),
        ROWWISE_HOSTILE,
        positional=("x",),
    ),
    Spec(
        "cross_entropy",
        xent.cross_entropy,
        loss_call(),
        expect_loss,
        LOSS_HOSTILE,
        positional=("logits", "target"),
    ),
    Spec(
        "cross_entropy_with_grad",
        xent.cross_entropy_with_grad,
        loss_call(grad=True),
        expect_loss_grad,
        dict(LOSS_HOSTILE, grad_output="grad_output", out="grad_out"),
        positional=("logits", "target"),
    ),
    Spec(
        "nll_loss",
        xent.nll_loss,
        loss_call(nll=True),
        lambda kw, got: expect_loss(kw, got, nll=True),
        {
            **{k: v for k, v in LOSS_HOSTILE.items() if k not in ("logits", "label_smoothing")},
            "log_probs": "float_array",
        },
        positional=("log_probs", "target"),
    ),
    Spec(
        "binary_cross_entropy",
        xent.binary_cross_entropy,
        binary_call(False),
        binary_expect(False),
        dict(BINARY_HOSTILE, probs="unit_array"),
        positional=("probs", "target"),
    ),
    Spec(
        "binary_cross_entropy_with_grad",
        xent.binary_cross_entropy_with_grad,
        binary_call(False, grad=True),
        binary_expect(False, grad=True),
        dict(BINARY_HOSTILE, probs="unit_array", grad_output="grad_output", out="grad_out"),
        positional=("probs", "target"),
    ),
    Spec(
        "binary_cross_entropy_with_logits",
        xent.binary_cross_entropy_with_logits,
        binary_call(True),
        binary_expect(True),
        dict(BINARY_HOSTILE, logits="elementwise_array", pos_weight="operand"),
        positional=("logits", "target"),
    ),
    Spec(
        "binary_cross_entropy_with_logits_with_grad",
        xent.binary_cross_entropy_with_logits_with_grad,
        binary_call(True, grad=True),
        binary_expect(True, grad=True),
        dict(
            BINARY_HOSTILE,
            logits="elementwise_array",
            pos_weight="operand",
            grad_output="grad_output",
            out="grad_out",
        ),
        positional=("logits", "target"),
    ),
    Spec(
        "cross_entropy_grad_hess",
        xent.cross_entropy_grad_hess,
        grad_hess_call(False),
        grad_hess_expect(False),
        {k: v for k, v in LOSS_HOSTILE.items() if k not in ("reduction", "label_smoothing")},
        positional=("logits", "target"),
    ),
    Spec(
        "binary_cross_entropy_with_logits_grad_hess",
        xent.binary_cross_entropy_with_logits_grad_hess,
        grad_hess_call(True),
        grad_hess_expect(True),
        {
            **{k: v for k, v in BINARY_HOSTILE.items() if k != "reduction"},
            "logits": "elementwise_array",
            "pos_weight": "operand",
        },
        positional=("logits", "target"),
    ),
    Spec(
        "info.entropy",
        xent.info.entropy,
        dist_call(),
        dist_expect(ref.entropy),
        DIST_HOSTILE,
        positional=("p",),
    ),
    Spec(
        "info.cross_entropy",
        xent.info.cross_entropy,
        dist_call(two=True),
        dist_expect(ref.cross_entropy_dist, two=True),
        dict(DIST_HOSTILE, q="dist"),
        positional=("p", "q"),
    ),
    Spec(
        "info.kl_divergence",
        xent.info.kl_divergence,
        dist_call(two=True),
        dist_expect(ref.kl_divergence, two=True),
        dict(DIST_HOSTILE, q="dist"),
        positional=("p", "q"),
    ),
    Spec(
        "info.self_information",
        xent.info.self_information,
        elementwise_info_call(),
        elementwise_info_expect(ref.self_information),
        dict(p="unit_array", base="base", num_threads="num_threads"),
        positional=("p",),
    ),
    Spec(
        "info.binary_entropy",
        xent.info.binary_entropy,
        elementwise_info_call(),
        elementwise_info_expect(ref.binary_entropy),
        dict(p="unit_array", base="base", num_threads="num_threads"),
        positional=("p",),
    ),
    Spec(
        "info.entropy_from_logits",
        xent.info.entropy_from_logits,
        entropy_logits_call(),
        expect_entropy_logits,
        dict(
            {k: v for k, v in ROWWISE_HOSTILE.items() if k not in ("x", "out")},
            logits="float_array",
            base="base",
        ),
        positional=("logits",),
    ),
    Spec(
        "info.perplexity",
        xent.info.perplexity,
        perplexity_call(),
        expect_perplexity,
        {k: v for k, v in LOSS_HOSTILE.items() if k != "reduction"},
        positional=("logits", "target"),
    ),
    Spec(
        "evaluate",
        xent.evaluate,
        evaluate_call(),
        expect_evaluate,
        dict(
            logits="float_array",
            labels="labels",
            weight="weight",
            topk="topk",
            ignore_index="ignore_index",
            chunk_rows="chunk_rows",
            num_threads="num_threads",
        ),
        positional=("logits", "labels"),
    ),
    Spec(
        "compare",
        xent.compare,
        compare_call(),
        expect_compare,
        dict(
            ref="float_array",
            ignore_index="ignore_index",
            chunk_rows="chunk_rows",
            num_threads="num_threads",
        ),
        positional=("ref", "cand"),
    ),
    Spec(
        "linear_cross_entropy",
        xent.linear_cross_entropy,
        linear_call(),
        expect_linear,
        LINEAR_HOSTILE,
        positional=("hidden", "weight", "target"),
    ),
    Spec(
        "linear_cross_entropy_with_grad",
        xent.linear_cross_entropy_with_grad,
        linear_call(grad=True),
        expect_linear_grad,
        dict(LINEAR_HOSTILE, grad_output="grad_output"),
        positional=("hidden", "weight", "target"),
    ),
    Spec(
        "get_num_threads",
        xent.get_num_threads,
        threads_call(),
        expect_threads,
        dict(num_threads="num_threads"),
    ),
    *DIVERGENCE_SPECS,
]


def test_every_public_function_has_a_spec():
    """A public function added later fails here until it gets its Spec."""
    public = {
        n
        for n in xent.__all__
        if callable(getattr(xent, n)) and not isinstance(getattr(xent, n), type)
    }
    public |= {f"info.{n}" for n in xent.info.__all__ if callable(getattr(xent.info, n))}
    public -= {"show_config"}  # prints the configuration: no input to fuzz
    assert public <= {s.name for s in SPECS}, public - {s.name for s in SPECS}


# ---- the run ----------------------------------------------------------------------------------


@st.composite
def hostile_argument(draw, spec, kw):
    """(kwargs with one argument made hostile, names the error message may use)."""
    names = [n for n, kind in spec.hostile.items() if kind is not None]
    name = draw(st.sampled_from(names))
    kind = spec.hostile[name]
    kw = dict(kw)
    current = kw.get(name)
    accept = {name}
    if kind in OPTION_VALUES or kind in ("num_threads", "reduction", "check"):
        kw[name] = draw(st.sampled_from(OPTION_VALUES[kind]))
    elif kind == "float_array":
        kw[name] = draw(hostile_float_array(current))
        accept |= {"target", "labels", "axis", "out", "weight"}  # its shape no longer fits
    elif kind in ("unit_array", "elementwise_array", "dist"):
        if kind != "elementwise_array" and draw(st.booleans()) and np.size(current):
            kw[name] = draw(hostile_same_shape(current, unit=True))
        else:
            kw[name] = draw(hostile_float_array(current, allow_0d=kind != "dist"))
        # out too: a list in place of a float16 array is read as float64, which out is not
        accept |= {"target", "q", "p", "axis", "weight", "pos_weight", "out"}
        accept.discard("weight") if kind == "dist" else None
    elif kind == "labels":
        x = kw.get("logits", kw.get("log_probs"))
        n_classes = np.shape(x)[-1] if x is not None else np.shape(kw["weight"])[0]
        kw[name] = draw(hostile_labels(current, n_classes))
    elif kind in ("operand", "unit_operand"):
        x = kw.get("logits", kw.get("probs"))
        kw[name] = draw(hostile_same_shape(x, unit=kind == "unit_operand"))
    elif kind == "weight":
        x = kw.get("logits", kw.get("log_probs"))
        kw[name] = draw(hostile_weight((np.shape(x)[-1],)))
    elif kind == "grad_output":
        x = kw.get("logits", kw.get("probs", kw.get("hidden")))
        kw[name] = draw(
            st.sampled_from([np.ones(np.shape(x) + (3,)), "1", 1j, np.ones(2, dtype=object)])
        )
    elif kind in ("out", "grad_out"):
        x = kw.get("x", kw.get("logits", kw.get("probs")))
        out = draw(hostile_out(x, grad=kind == "grad_out"))
        kw["out"] = kw["target"] if isinstance(out, str) else out
        if isinstance(out, str) and (
            not isinstance(kw["target"], np.ndarray)
            or kw["target"].shape != np.shape(x)
            or kw["target"].dtype != np.asarray(x).dtype
        ):
            kw["out"] = np.empty(np.shape(x) + (1,))
        name = "out"
        accept = {"out"}
    else:
        raise AssertionError(kind)
    return kw, accept


ARRAY_ARGS = {
    "x",
    "logits",
    "log_probs",
    "probs",
    "p",
    "q",
    "target",
    "labels",
    "weight",
    "pos_weight",
    "grad_output",
    "ref",
    "cand",
}


def snapshot(kw):
    return {k: np.array(v, copy=True) for k, v in kw.items() if isinstance(v, np.ndarray)}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    path = os.environ.get("XENT_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({k: dict(v) for k, v in OUTCOMES.items()}, f, indent=1, sort_keys=True)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_fuzz(spec):
    counts = OUTCOMES[spec.name]

    @FUZZ
    @given(data=st.data())
    def run(data):
        kw = data.draw(spec.draw, label="valid call")
        accept = None
        if data.draw(st.integers(0, 2), label="hostile") == 0:
            valid_kw = kw
            kw, accept = data.draw(hostile_argument(spec, kw), label="hostile call")
        before = snapshot(kw)
        counts["calls"] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                got = spec.call(kw)
            except ERRORS as e:
                counts[f"raised {type(e).__name__}"] += 1
                message = str(e)
                if accept is None:  # a valid call with a hostile value (a NaN probability)
                    assert isinstance(e, (ValueError, IndexError)), (
                        f"a valid call raised {type(e).__name__}: {message}"
                    )
                    accept = set(spec.hostile) | {"target", "probs", "logits", "p", "q"}
                elif not any(re.search(rf"\b{re.escape(n)}\b", message) for n in accept):
                    # the error the call had before the argument was made hostile is fine
                    try:
                        spec.call(valid_kw)
                    except ERRORS:
                        accept = {message}
                assert any(
                    n == message or re.search(rf"\b{re.escape(n)}\b", message) for n in accept
                ), f"{type(e).__name__}: {message!r} names none of {sorted(accept)}"
                return
        counts["returned" + (" (hostile argument)" if accept else "")] += 1
        for k, v in before.items():  # inputs untouched, unless written as out=
            if kw.get("out") is not kw[k]:
                np.testing.assert_array_equal(kw[k], v, err_msg=f"{k} was modified")
        kw = {k: np.asarray(v) if k in ARRAY_ARGS and v is not None else v for k, v in kw.items()}
        x_name = (
            next(n for n in ("x", "logits", "log_probs", "probs", "p", "hidden", "ref") if n in kw)
            if spec.name != "get_num_threads"
            else None
        )
        if x_name is not None:
            kw = dict(kw, _before=before.get(x_name, kw[x_name]))
            if kw.get("out") is kw[x_name]:  # in place: the reference sees the old values
                kw[x_name] = kw["_before"]
        spec.expect(kw, got)

    run()


# ---- a second thread writes the inputs during the calls -----------------------------------------
#
# The caller's arrays may change while xent reads them (another thread of theirs writes them
# while the GIL is released). The promise: an error, or a result of some state of the inputs,
# never a crash. Every spec's valid calls run while a thread rewrites every input array (not
# out=) between its drawn values and a mutant: floats with NaN, infinities and 1e308 sprinkled
# in; integer labels shuffled (still valid) or, in the second run, set out of range after
# they were checked. The calls run in a child interpreter: a crash ends it with a signal, and
# the test reports which (with the Python stack, from faulthandler).

CONCURRENT_EXAMPLES = int(os.environ.get("XENT_FUZZ_CONCURRENT_EXAMPLES", "25"))


def concurrent_mutant(a, rng, labels_out_of_range):
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
        m = np.array(a, copy=True)
        flat = m.reshape(-1)
        if flat.size:
            idx = rng.integers(0, flat.size, max(1, flat.size // 3))
            flat[idx] = rng.choice(np.array([NAN, INF, -INF, 1e308, -1e308, 0.0]), len(idx)).astype(
                m.dtype
            )
        return m
    if a.dtype.kind in "iu":
        if labels_out_of_range:
            info = np.iinfo(a.dtype)
            return np.where(rng.random(a.shape) < 0.5, info.max, info.min).astype(a.dtype)
        return rng.permutation(a.reshape(-1)).reshape(a.shape).astype(a.dtype)
    return None


def run_concurrent_writers(labels_out_of_range, examples=CONCURRENT_EXAMPLES):
    """Every spec's valid calls while a thread rewrites their inputs; AssertionError on an
    outcome that is neither a result nor a clear error (a crash ends the process)."""
    import sys
    import threading

    sys.setswitchinterval(1e-6)  # switch threads as often as possible: between the checks
    outcomes = collections.Counter()
    for spec in SPECS:
        if spec.name != "get_num_threads":
            concurrent_spec(spec, examples, labels_out_of_range, outcomes, threading)
    return outcomes


def concurrent_spec(spec, examples, labels_out_of_range, outcomes, threading):
    """Run one spec's calls under a concurrent writer (see run_concurrent_writers)."""

    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(data=st.data())
    def run(data):
        kw = data.draw(spec.draw, label="valid call")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        pairs = []
        for name, value in kw.items():
            if (
                name != "out"
                and isinstance(value, np.ndarray)
                and value.flags.writeable
                and value is not kw.get("out")
            ):
                mutant = concurrent_mutant(value, rng, labels_out_of_range)
                if mutant is not None:
                    pairs.append((value, np.array(value, copy=True), mutant))
        stop = threading.Event()

        def write():
            while not stop.is_set():
                for target, original, mutant in pairs:
                    np.copyto(target, mutant)
                    np.copyto(target, original)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # mutated values warn where they warn
                for _ in range(3):
                    try:
                        spec.call(kw)
                        outcomes[f"{spec.name}: returned"] += 1
                    except ERRORS as e:
                        outcomes[f"{spec.name}: raised {type(e).__name__}"] += 1
        finally:
            stop.set()
            writer.join()

    run()


@pytest.mark.parametrize("labels", ["in range", "out of range"])
def test_fuzz_concurrent_writer(labels):
    import signal
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--concurrent", labels],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=os.path.dirname(__file__),
    )
    if proc.returncode < 0:
        raise AssertionError(
            f"the child died of {signal.Signals(-proc.returncode).name} with "
            f"a writer thread changing the inputs ({labels} labels):\n"
            f"{proc.stderr[-4000:]}"
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "returned" in proc.stdout, proc.stdout


# ---- calls under process limits, from several threads at once ----------------------------------
#
# Under an address limit a little above what the process uses (ulimit -v) or a task limit with
# almost no task left (ulimit -u), every spec's valid calls run from three Python threads at
# once, with num_threads up to 1000 and oversubscription allowed: the OpenMP runtime ends the
# process if a team's thread fails to start, so each call's team must be checked against the
# limits and started before another call takes what it counted on. Each call must return the
# bits of the same call on one thread or raise a clear error (MemoryError included: the
# address space may really be full); the child must not end.

LIMIT_EXAMPLES = int(os.environ.get("XENT_FUZZ_LIMIT_EXAMPLES", "8"))


def set_limit(kind):
    """Set a tight limit of ``kind`` ("as" or "nproc") on this process."""
    import resource

    def status(field):
        with open("/proc/self/status") as f:
            return int(dict(line.split(":", 1) for line in f)[field].split()[0])

    if kind == "as":
        limit = (status("VmSize") << 10) + (400 << 20)  # room for the calls, not for 64 stacks
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    else:
        if os.getuid() == 0:  # RLIMIT_NPROC does not apply to root
            os.setgid(65534)
            os.setuid(65534)
        limit = status("Threads") + 4  # the two callers and two more threads
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


def run_under_limits(kind, examples=LIMIT_EXAMPLES):
    """Every spec's valid calls from three threads at once under a limit (see above)."""
    import threading

    outcomes = collections.Counter()
    set_limit(kind)
    for spec in SPECS:
        if spec.name != "get_num_threads":
            limited_spec(spec, examples, outcomes, threading)
    return outcomes


def limited_spec(spec, examples, outcomes, threading):
    """Run one spec's calls from three threads at once (see run_under_limits)."""

    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(data=st.data())
    def run(data):
        kw = data.draw(spec.draw, label="valid call")
        if "num_threads" in kw:
            kw = dict(kw, num_threads=data.draw(st.sampled_from([2, 64, 1000])))
        answers = [None] * 3

        def call(i):
            try:
                answers[i] = ("returned", spec.call(kw))
            except (*ERRORS, MemoryError) as e:
                answers[i] = (f"raised {type(e).__name__}", e)

        started = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # values warn where they warn
            for i in (1, 2):
                t = threading.Thread(target=call, args=(i,))
                try:
                    t.start()
                    started.append(t)
                except RuntimeError:  # the limit holds for this test's own threads too
                    pass
            call(0)
            for t in started:
                t.join()
        # The answer of one thread (which starts no thread) is what every team must give:
        # results never depend on the thread count. Accuracy against the reference is
        # test_fuzz's question; here it is the limits'.
        one = None
        if "out" not in kw:  # out=: three writers race on it
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    one = ("returned", spec.call(dict(kw, num_threads=1)))
            except (*ERRORS, MemoryError) as e:
                one = (f"raised {type(e).__name__}", e)
        for answer in answers:
            if answer is None:
                continue
            outcomes[f"{spec.name}: {answer[0]}"] += 1
            if answer[0] == "returned" and one is not None and one[0] == "returned":
                assert same_bits(answer[1], one[1]), (spec.name, kw.get("num_threads"))

    run()


def same_bits(a, b):
    """Two results hold the same bits: arrays, numbers (NaN equal to NaN), reports, and
    tuples, lists and dicts of them."""
    import dataclasses

    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        return all(same_bits(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (tuple, list)) and type(a) is type(b):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    return a is b or a == b or (a != a and b != b)


@pytest.mark.parametrize("kind", ["as", "nproc"])
def test_fuzz_under_limits(kind, tmp_path):
    import signal
    import subprocess
    import sys

    os.chmod(tmp_path, 0o755)  # the child may run as another user
    env = dict(os.environ, XENT_ALLOW_OVERSUBSCRIBE="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--limits", kind],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env=env,
    )
    if proc.returncode < 0:
        raise AssertionError(
            f"the child died of {signal.Signals(-proc.returncode).name} under a "
            f"{kind} limit:\n{proc.stderr[-4000:]}"
        )
    assert "Thread creation failed" not in proc.stderr
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "returned" in proc.stdout, proc.stdout


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--limits"]:
        import faulthandler

        faulthandler.enable()
        counts = run_under_limits(sys.argv[2])
        print(json.dumps(dict(sorted(counts.items())), indent=1))
    if sys.argv[1:2] == ["--concurrent"]:
        import faulthandler

        faulthandler.enable()  # the Python stack of a crash, on stderr
        counts = run_concurrent_writers(labels_out_of_range=sys.argv[2] == "out of range")
        print(json.dumps(dict(sorted(counts.items())), indent=1))
