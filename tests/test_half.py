"""float16 and bfloat16 logits, read directly and computed in float32.

``logsumexp`` and ``cross_entropy`` with class indices widen one block of rows at a time into
per-thread float32 scratch; they must give exactly what the float32 kernels give on the
logits converted to float32 first (which is how every other function computes them), on every
kernel variant and thread count.
"""

import numpy as np
import pytest

import xent
from xent import _kernels

ml_dtypes = pytest.importorskip("ml_dtypes")
HALVES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]


def same_bits(a, b):
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    return np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8)
    )


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_every_bit_pattern_widens_exactly(isa, dtype):
    bits = np.arange(65536, dtype=np.uint16)
    got = np.empty(bits.size, np.float32)
    _kernels.widen_half(bits, dtype.name == "bfloat16", got)
    expected = bits.view(dtype).astype(np.float32)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    assert same_bits(got[~nan], expected[~nan])
    # a NaN keeps its sign and payload
    assert np.array_equal(
        got[nan].view(np.uint32) >> 13 << 13, expected[nan].view(np.uint32) >> 13 << 13
    )


def logits(dtype, shape, seed=0, scale=3.0):
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    flat = x.reshape(-1)
    flat[7::97] = np.array(-np.inf).astype(dtype)  # some -inf logits
    return x


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("n, c", [(300, 1), (300, 10), (257, 64), (130, 1000), (5, 40000)])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"label_smoothing": 0.2},
        {"weight": "w", "ignore_index": 2},
    ],
    ids=["plain", "smoothing", "weight-ignore"],
)
def test_cross_entropy_equals_float32_path(isa, dtype, n, c, options):
    x = logits(dtype, (n, c))
    target = np.random.default_rng(1).integers(0, c, n)
    opts = dict(options)
    if opts.get("weight") == "w":
        opts["weight"] = np.random.default_rng(2).uniform(0.5, 2, c)
    x32 = x.astype(np.float32)
    for reduction in ("none", "mean", "sum"):
        got = xent.cross_entropy(x, target, reduction=reduction, **opts)
        want = np.asarray(xent.cross_entropy(x32, target, reduction=reduction, **opts))
        assert np.asarray(got).dtype == dtype
        assert same_bits(got, want.astype(dtype)), reduction


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("shape", [(300, 10), (4, 33, 100), (3, 40000)])
def test_logsumexp_equals_float32_path(isa, dtype, shape):
    x = logits(dtype, shape)
    for axis in (-1, 0):
        got = xent.logsumexp(x, axis=axis)
        want = xent.logsumexp(x.astype(np.float32), axis=axis).astype(dtype)
        assert same_bits(got, want)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_strided_and_threaded(dtype):
    x = logits(dtype, (2000, 300))[::3, ::2]  # rows and classes both strided
    target = np.random.default_rng(3).integers(0, 150, x.shape[0])
    one = xent.cross_entropy(x, target, reduction="sum", num_threads=1)
    two = xent.cross_entropy(x, target, reduction="sum", num_threads=2)
    assert same_bits(one, two)
    assert same_bits(
        one, xent.cross_entropy(x.astype(np.float32), target, reduction="sum").astype(dtype)
    )


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_against_reference(dtype):
    """Within the half dtype's rounding of the float64 reference, check mode included."""
    x = logits(dtype, (64, 500), scale=5.0)
    target = np.random.default_rng(4).integers(0, 500, 64)
    got = xent.cross_entropy(x, target, reduction="none", check=True)
    ref = xent.reference.cross_entropy(x.astype(np.float64), target, reduction="none")
    rtol = 2.0**-8 if dtype.name == "bfloat16" else 2.0**-11  # half an ulp of the result
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=rtol, atol=0)
    lse = xent.logsumexp(x, check=True)
    np.testing.assert_allclose(
        lse.astype(np.float64), xent.reference.logsumexp(x.astype(np.float64)), rtol=rtol
    )


def test_bfloat16_everywhere_else_converts():
    x = logits(np.dtype(ml_dtypes.bfloat16), (8, 20))
    p = xent.softmax(x)
    assert p.dtype == x.dtype
    np.testing.assert_allclose(
        p.astype(np.float64), xent.reference.softmax(x.astype(np.float64)), rtol=2.0**-8, atol=1e-30
    )
    loss, grad = xent.cross_entropy_with_grad(x, np.arange(8))
    assert grad.dtype == x.dtype


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_bad_label_is_named(dtype):
    x = logits(dtype, (50, 10))
    target = np.zeros(50, np.int64)
    target[31] = 10
    with pytest.raises(IndexError, match=r"target\[31\] = 10 is out of range"):
        xent.cross_entropy(x, target)


def test_input_is_not_modified():
    x = logits(np.dtype(np.float16), (100, 50))
    before = x.copy()
    xent.cross_entropy(x, np.zeros(100, np.int64))
    xent.logsumexp(x)
    assert same_bits(x, before)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_rounding_to_half_matches_numpy_bit_for_bit(dtype):
    """xent's float32 -> half rounding (for half outputs) gives numpy's / ml_dtypes' bits."""
    rng = np.random.default_rng(5)
    bits = np.concatenate(
        [
            rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32),
            np.arange(0x33000000, 0x33000000 + 2**20, dtype=np.uint32),  # float16 subnormals
            np.arange(0x387F0000, 0x38810000, dtype=np.uint32),  # the normal boundary
            np.arange(0x477FE000 - 2**14, 0x477FE000 + 2**14, dtype=np.uint32),  # near 65504
            np.array(
                [0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0, 0x80000000],
                dtype=np.uint32,
            ),
        ]
    )
    x = bits.view(np.float32)
    got = np.empty(x.size, np.uint16)
    _kernels.narrow_half(x, dtype.name == "bfloat16", got, 2)
    with np.errstate(all="ignore"):
        assert np.array_equal(got, x.astype(dtype).view(np.uint16))


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("layout", ["c", "fortran"])
def test_half_gradients_and_softmax_equal_rounded_float32(dtype, layout):
    x = logits(dtype, (300, 40))
    x = np.asfortranarray(x) if layout == "fortran" else x
    target = np.random.default_rng(6).integers(0, 40, 300)
    loss, grad = xent.cross_entropy_with_grad(x, target)
    loss32, grad32 = xent.cross_entropy_with_grad(x.astype(np.float32), target)
    assert grad.dtype == dtype and same_bits(grad, grad32.astype(dtype))
    assert same_bits(xent.softmax(x), xent.softmax(x.astype(np.float32)).astype(dtype))
    out = np.empty_like(x)
    xent.log_softmax(x, out=out)
    assert same_bits(out, xent.log_softmax(x.astype(np.float32)).astype(dtype))


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("n, c", [(300, 10), (70, 1000), (9, 5000), (4, 40000)])
@pytest.mark.parametrize(
    "options",
    [{}, {"label_smoothing": 0.2}, {"weight": "w", "ignore_index": 2}],
    ids=["plain", "smoothing", "weight-ignore"],
)
@pytest.mark.parametrize("where", ["new", "in-place"])
def test_half_gradient_read_directly_equals_rounded_float32(isa, dtype, n, c, options, where):
    """The half gradient, computed a few rows (or a chunk of a long row) at a time, has the
    float32 path's bits rounded to the half dtype, in place too, with per-row grad_output."""
    x = logits(dtype, (n, c))
    rng = np.random.default_rng(7)
    target = rng.integers(0, c, n)
    target[1] = 2  # ignored in the weight-ignore case
    opts = dict(options)
    if opts.get("weight") == "w":
        opts["weight"] = rng.uniform(0.5, 2, c)
    x32 = x.astype(np.float32)
    for reduction, grad_output in (("mean", 0.75), ("none", rng.uniform(-1, 2, n))):
        kwargs = dict(opts, reduction=reduction, grad_output=grad_output)
        want_loss, want_grad = xent.cross_entropy_with_grad(x32, target, **kwargs)
        source = x.copy()
        out = source if where == "in-place" else None
        loss, grad = xent.cross_entropy_with_grad(source, target, out=out, **kwargs)
        assert grad.dtype == dtype and (grad is source) == (where == "in-place")
        assert same_bits(grad, want_grad.astype(dtype))
        forward = xent.cross_entropy(x, target, reduction=reduction, **opts)
        assert same_bits(loss, forward)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_half_gradient_threads_agree(dtype):
    x = logits(dtype, (3000, 300))
    target = np.random.default_rng(8).integers(0, 300, 3000)
    one = xent.cross_entropy_with_grad(x, target, num_threads=1)
    two = xent.cross_entropy_with_grad(x, target, num_threads=2)
    assert same_bits(one[0], two[0]) and same_bits(one[1], two[1])


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("c", [100, 20000])
def test_half_gradient_allocates_no_float32_copy(dtype, c):
    """Peak traced memory: the half gradient itself (new) or next to nothing (in place), not
    the float32 copies of the logits and gradient (four times the logits' size)."""
    import tracemalloc

    x = logits(dtype, (4_000_000 // c, c))
    target = np.random.default_rng(9).integers(0, c, x.shape[0])
    for out in (None, x):
        tracemalloc.start()
        try:
            xent.cross_entropy_with_grad(x, target, out=out, num_threads=2)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        limit = (x.nbytes if out is None else 0) + x.nbytes // 4
        assert peak < limit, (out is None, peak, x.nbytes)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("shape, axis", [((50, 10), -1), ((6, 5000), -1), ((3000, 4), 0)])
@pytest.mark.parametrize("func", ["softmax", "log_softmax"])
def test_half_transforms_read_directly_equal_rounded_float32(isa, dtype, shape, axis, func):
    """softmax and log_softmax of half logits, computed a chunk at a time into the half
    output (in place too), have the float32 path's bits rounded."""
    x = logits(dtype, shape)
    x[1] = np.array(-np.inf).astype(dtype)  # an all -inf row (or column)
    want = getattr(xent, func)(x.astype(np.float32), axis=axis).astype(dtype)
    got = getattr(xent, func)(x, axis=axis)
    assert got.dtype == dtype and same_bits(got, want)
    inplace = x.copy()
    assert getattr(xent, func)(inplace, axis=axis, out=inplace) is inplace
    assert same_bits(inplace, want)


@pytest.mark.parametrize("classes", [7, 64, 1000, 40000])
def test_float16_nans_keep_the_widened_rows_bits(isa, classes):
    # float16 rows are widened by AVX-512's conversion alone for the log-sum-exp, which quiets
    # a signalling NaN; a row whose state comes out NaN is done again with the exact widening:
    # the results must be those of the rows widened to float32 first, bit for bit (NaN
    # payloads, signalling or quiet, of either sign; infinities beside them)
    rng = np.random.default_rng(classes)
    x = (rng.standard_normal((40, classes)) * 3).astype(np.float16)
    bits = x.view(np.uint16)
    rows = np.arange(0, 40, 3)
    cols = rng.integers(0, classes, rows.size)
    patterns = np.array([0x7C01, 0xFC05, 0x7D23, 0x7E00, 0xFE11, 0x7C00, 0xFC00], np.uint16)
    bits[rows, cols] = patterns[np.arange(rows.size) % patterns.size]
    target = rng.integers(0, classes, 40)
    wide = x.astype(np.float32)
    with np.errstate(all="ignore"):
        for f in (
            lambda v: xent.cross_entropy(v, target, reduction="none"),
            lambda v: xent.logsumexp(v, axis=-1),
        ):
            got = f(x)
            want = f(wide).astype(got.dtype)
            assert np.isnan(got).any() and np.isfinite(got).any()
            assert got.tobytes() == want.tobytes()
