"""Reliability: inputs beyond 2**31 elements, flat memory over thousands of calls (half of
them raising), and regression tests for what tests/test_fuzz.py found."""

import gc
import pathlib
import re
import math
import tracemalloc
import warnings

import numpy as np
import pytest

import xent
from xent import reference as ref

C = 2**16
ROWS = 2**15 + 2  # ROWS * C = 2**31 + 2**17 elements: the last two rows lie past 2**31


# ---- more than 2**31 elements -------------------------------------------------------------------


def _overlapping_rows(values):
    """(ROWS, C) read-only float32 view whose row r is buf[16 r : 16 r + C]: 2**31 + 2**17
    elements in 2.5 MiB. ``values`` maps buffer positions to nonzero values."""
    buf = np.zeros(16 * (ROWS - 1) + C, dtype=np.float32)
    for position, value in values.items():
        buf[position] = value
    x = np.lib.stride_tricks.as_strided(buf, shape=(ROWS, C), strides=(64, 4))
    x.flags.writeable = False
    return x


def _expected_lse(values):
    """logsumexp of each row of :func:`_overlapping_rows`: C - k zeros plus its k values."""
    start = 16 * np.arange(ROWS)
    total = np.full(ROWS, float(C))
    for position, value in values.items():
        inside = (start <= position) & (position < start + C)
        total[inside] += math.expm1(value)
    return np.log(total)


def test_more_than_2_31_elements_fast():
    """2**31 + 2**17 elements (overlapping rows of a small buffer): element counts and
    offsets past 2**31 must not wrap. The value at the very end is in the last row only."""
    last = 16 * (ROWS - 1) + C - 1
    values = {last: 20.0, 16 * (ROWS - 2): 5.0, 12345: -3.0}
    x = _overlapping_rows(values)
    want = _expected_lse(values)
    got = xent.logsumexp(x)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[-1] != got[-3]  # the last value changed the last row
    labels = np.zeros(ROWS, dtype=np.int64)
    labels[-1] = C - 1  # the logit 20.0
    row_loss = want - np.where(np.arange(ROWS) == ROWS - 1, 20.0, 0.0)
    row_loss[-2] = want[-2] - 5.0  # row ROWS - 2 starts at the 5.0
    labels[-2] = 0
    loss = xent.cross_entropy(x, labels, reduction="sum")
    np.testing.assert_allclose(loss, row_loss.sum(), rtol=1e-6)
    np.testing.assert_allclose(
        xent.cross_entropy(x, labels, reduction="none")[-2:], row_loss[-2:], rtol=1e-6, atol=2e-6
    )  # log(sum)'s error


@pytest.mark.slow
def test_more_than_2_31_elements_memmap(tmp_path):
    """A real (2**15 + 2, 2**16) float32 memory map, 8 GiB of a sparse file (free on disk),
    with nonzero rows only past element 2**31."""
    path = tmp_path / "big.f32"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(ROWS, C))
    x[-1, 7] = 30.0
    x[-2, :] = np.linspace(-1, 1, C, dtype=np.float32)
    x.flush()
    del x
    x = np.load(path, mmap_mode="r")
    got = xent.logsumexp(x)
    want = np.full(ROWS, math.log(C))
    want[-1] = math.log(C - 1 + math.exp(30.0))
    want[-2] = ref.logsumexp(np.linspace(-1, 1, C, dtype=np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    labels = np.full(ROWS, 7)
    loss = xent.cross_entropy(x, labels, reduction="none")
    np.testing.assert_allclose(loss[-1], want[-1] - 30.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss[:-2], math.log(C), rtol=1e-6)


# ---- what the fuzz suite found --------------------------------------------------------------


@pytest.mark.parametrize("count", [2**31, 2**40, 4097])
def test_huge_num_threads_is_a_value_error(count):
    """Was OverflowError from the C int of the drivers."""
    with pytest.raises(ValueError, match=f"num_threads={count}"):
        xent.cross_entropy(np.zeros((2, 3)), np.zeros(2, dtype=int), num_threads=count)
    with pytest.raises(ValueError, match="num_threads"):
        xent.get_num_threads(count)
    # above the CPUs: lowered to them; 1 in a serial build
    assert xent.get_num_threads(1000) in (min(1000, xent._threads.available_cpus()), 1)


@pytest.mark.parametrize(
    "p", [[1e308], [1e300, 3e300, 0.0], [5e-324, 5e-324], [1e-320, 3e-320, 0.0]]
)
def test_normalize_far_from_one(p):
    """Rows whose sum is huge or subnormal: sum p log p overflowed (-inf instead of 0) or
    lost its digits; they are now divided by their sum first."""
    p = np.array(p)
    q = np.linspace(1, 2, p.size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn, rf, args in [
            (xent.info.entropy, ref.entropy, (p,)),
            (xent.info.cross_entropy, ref.cross_entropy_dist, (p, q)),
            (xent.info.kl_divergence, ref.kl_divergence, (p, q)),
            (xent.info.kl_divergence, ref.kl_divergence, (q, p)),
        ]:
            np.testing.assert_allclose(
                fn(*args, normalize=True), rf(*args, normalize=True), rtol=1e-12, atol=1e-12
            )


@pytest.mark.parametrize(
    "call",
    [
        lambda v: xent.info.entropy([0.5, 0.5], normalize=v),
        lambda v: xent.info.kl_divergence([0.5, 0.5], [0.5, 0.5], normalize=v),
        lambda v: xent.logsumexp(np.ones((2, 3)), keepdims=v),
    ],
    ids=["entropy", "kl_divergence", "logsumexp"],
)
@pytest.mark.parametrize("value", ["no", 2, None, 0.5])
def test_yes_no_options_refuse_non_booleans(call, value):
    """normalize="no" used to mean yes (its truth value)."""
    with pytest.raises(TypeError, match="(normalize|keepdims) must be True or False"):
        call(value)


def test_float16_results_beyond_65504_are_inf_without_warning():
    x = np.array([[65504.0, -65504.0]], dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = xent.log_softmax(np.asfortranarray(x), out=np.asfortranarray(np.empty_like(x)))
        _, grad = xent.binary_cross_entropy_with_grad(np.float16(0), np.float16(1))
    assert got.tolist() == [[0.0, -np.inf]]
    assert grad == -np.inf  # -1 / 1e-12


@pytest.mark.parametrize(
    "fn, reference",
    [
        (
            xent.binary_cross_entropy_with_logits_with_grad,
            ref.binary_cross_entropy_with_logits_grad,
        ),
        (xent.binary_cross_entropy_with_grad, ref.binary_cross_entropy_grad),
    ],
)
def test_binary_gradient_into_fortran_out(fn, reference):
    """A Fortran-ordered out= (or input, in place) was reshaped with a copy: the gradient went
    into the copy and out came back unchanged."""
    rng = np.random.default_rng(3)
    x = np.asfortranarray(rng.uniform(0.1, 0.9, (2, 3, 4)))
    y = np.asfortranarray(rng.uniform(0, 1, x.shape))
    want = reference(x, y)
    out = np.asfortranarray(np.zeros_like(x))
    assert fn(x, y, out=out)[1] is out
    np.testing.assert_allclose(out, want, rtol=1e-12)
    assert fn(x, y, out=x)[1] is x
    np.testing.assert_allclose(x, want, rtol=1e-12)


@pytest.mark.parametrize("low, high", [(0.0, 1e308), (-1e308, 1e308), (-1e300, 1.7e308)])
def test_evaluate_entropy_when_a_later_chunk_holds_a_huge_max(low, high):
    """A float64 row's max ~1e308 above the running shift, past the kernel's first 4 KiB
    chunk: the rescaled entropy sum computed (shift jump) * (sum of exps) first, which
    overflowed (float32's jumps cannot), and 0 * inf made the entropy NaN (reference: 0)."""
    dtype = np.float64
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 3000)).astype(dtype)
    x[:, :700] = low
    x[0, 2000] = x[1, 1100] = x[2, 2999] = high
    t = np.array([2000, 3, 2999])
    got = xent.evaluate(x, t, topk=(1, 2))
    want = ref.evaluate(x.astype(np.float64), t, topk=(1, 2))
    assert got.entropy == want["entropy"] == 0.0
    np.testing.assert_allclose(got.loss, want["loss"], rtol=1e-6)
    assert (got.accuracy, got.top(2)) == (want["accuracy"], want["top2_accuracy"])


@pytest.mark.parametrize("weight", ["heavy", np.ones(3), np.full(2, 1j)])
def test_evaluate_checks_weight_of_an_empty_batch(weight):
    """A bad weight was only checked with the first chunk of rows: with no rows it passed."""
    with pytest.raises((TypeError, ValueError), match="weight"):
        xent.evaluate(
            np.empty((0, 2), dtype=np.float32), np.empty(0, dtype=np.int64), weight=weight
        )


@pytest.mark.parametrize("topk", [(), []])
def test_evaluate_refuses_an_empty_topk(topk):
    """topk=() returned a report without top-k entries; `xent eval --topk ""` refuses it."""
    with pytest.raises(ValueError, match="topk"):
        xent.evaluate(np.zeros((2, 3)), np.zeros(2, dtype=np.int64), topk=topk)


# ---- memory: no leak on success or error paths ----------------------------------------------------


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _soak_calls():
    """One round of calls: half succeed, half raise on some path (label, value, shape,
    option, out), each on arrays allocated by the call."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 50)).astype(np.float32)
    t = rng.integers(0, 50, 64)
    bad_t = t.copy()
    bad_t[40] = 50
    p = np.full((64, 50), 1 / 50)
    ok = [
        lambda: xent.cross_entropy(x, t, reduction="none"),
        lambda: xent.cross_entropy_with_grad(x, t, label_smoothing=0.1),
        lambda: xent.log_softmax(x),
        lambda: xent.binary_cross_entropy_with_logits_with_grad(x, np.abs(np.tanh(x))),
        lambda: xent.info.kl_divergence(p, p, normalize=True),
        lambda: xent.nll_loss(x, t, reduction="sum"),
    ]
    failing = [
        lambda: xent.cross_entropy(x, bad_t),  # IndexError after the kernel ran
        lambda: xent.cross_entropy_with_grad(x, bad_t),
        lambda: xent.binary_cross_entropy(np.abs(x), np.zeros_like(x)),  # value > 1
        lambda: xent.info.entropy(p * 2),  # not a distribution
        lambda: xent.softmax(x, out=np.empty((3, 3), dtype=np.float32)),
        lambda: xent.logsumexp(x, num_threads=0),
    ]
    for good, bad in zip(ok, failing):
        good()
        with pytest.raises((TypeError, ValueError, IndexError)):
            bad()


def test_thousands_of_calls_leave_memory_flat():
    """3000 calls, half raising: traced Python allocations and RSS do not grow."""
    for _ in range(20):  # warm caches, pytest's exception machinery, numpy's pools
        _soak_calls()
    gc.collect()
    tracemalloc.start()
    try:
        rss_before = _rss_bytes()
        traced_before = tracemalloc.get_traced_memory()[0]
        for _ in range(250):
            _soak_calls()
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
        rss_growth = _rss_bytes() - rss_before
    finally:
        tracemalloc.stop()
    # A leak of one small array per call would be 3000 x (>= 200 B): 600 kB.
    assert traced_growth < 64 * 1024, traced_growth
    assert rss_growth < 4 * 1024 * 1024, rss_growth


# ---- the table of non-finite, empty and all-ignored results (docs/nonfinite.md) -----------------

TABLE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "nonfinite.md"
ROW = re.compile(r"^\| `(?P<call>[^`]+)` \| `(?P<result>[^`]+)` \|$")
#: xent name -> reference name, where they differ (the *_with_grad calls are checked on xent)
REFERENCE_NAMES = {"xent.info.cross_entropy": "ref.cross_entropy_dist"}


def _table_rows():
    rows = [
        m.groupdict() for line in TABLE.read_text().splitlines() if (m := ROW.match(line.strip()))
    ]
    assert len(rows) > 40, "the table in docs/nonfinite.md was not found"
    return [pytest.param(r["call"], r["result"], id=r["call"]) for r in rows]


def _assert_same(got, want):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
        return
    np.testing.assert_array_equal(np.asarray(got, dtype=np.float64), np.asarray(want))


@pytest.mark.parametrize("call, result", _table_rows())
def test_nonfinite_table(call, result):
    namespace = dict(np=np, xent=xent, ref=ref, inf=np.inf, nan=np.nan)
    want = eval(result, namespace)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = eval(call, namespace)
    _assert_same(got, want)
    name = call.split("(")[0]
    if name.endswith("_with_grad"):
        return
    ref_name = REFERENCE_NAMES.get(
        name, name.replace("xent.info.", "ref.").replace("xent.", "ref.")
    )
    with np.errstate(all="ignore"):
        _assert_same(eval(ref_name + call[len(name) :], namespace), want)


def _misaligned(a):
    """A copy of ``a`` whose data starts one byte past an aligned address (flags.aligned False)."""
    a = np.ascontiguousarray(a)
    buf = bytearray(a.nbytes + 1)
    out = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_inputs_are_read_right(dtype):
    """Arrays at odd addresses (as Dask's unpickled buffers can be) are copied aligned before
    any kernel reads them, and give the aligned bits. UBSan found the evaluate kernel loading
    misaligned labels and logits in Dask workers; tools/sanitize.sh runs this test under it."""
    from xent import _validation

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 37)).astype(dtype)
    t = rng.integers(0, 37, 300)
    w = rng.uniform(0.5, 2, 37)
    mx, mt, mw = _misaligned(x), _misaligned(t), _misaligned(w)
    assert _validation.float_array(mx, "x").flags.aligned
    assert _validation.class_targets(mt, (300,), x.shape).flags.aligned
    assert _validation.class_weights(mw, 37).flags.aligned

    def same(a, b):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)

    assert same(xent.cross_entropy(mx, mt, weight=mw), xent.cross_entropy(x, t, weight=w))
    assert same(xent.logsumexp(mx), xent.logsumexp(x))
    assert same(xent.softmax(mx), xent.softmax(x))
    loss, grad = xent.cross_entropy_with_grad(
        mx, mt, reduction="none", grad_output=_misaligned(np.ones(300))
    )
    assert same(grad, xent.cross_entropy_with_grad(x, t, reduction="none")[1])
    assert xent.evaluate(mx, mt) == xent.evaluate(x, t)
    p = xent.softmax(x)
    assert same(xent.info.entropy(_misaligned(p)), xent.info.entropy(p))
    y = (rng.uniform(size=x.shape) > 0.5).astype(dtype)
    assert same(
        xent.binary_cross_entropy_with_logits(mx, _misaligned(y)),
        xent.binary_cross_entropy_with_logits(x, y),
    )
    h = rng.standard_normal((40, 8)).astype(dtype)
    W = rng.standard_normal((37, 8)).astype(dtype)
    assert same(
        xent.linear_cross_entropy(_misaligned(h), _misaligned(W), mt[:40]),
        xent.linear_cross_entropy(h, W, t[:40]),
    )
