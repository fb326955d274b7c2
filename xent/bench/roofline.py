"""The machine's limits for ``xent bench``'s roofline view: read bandwidth, read + write
bandwidth and the GEMM rate, each measured in the same process as the runs it judges.

A kernel that reads its logits once cannot beat a plain read of the same bytes: the time of
that read over the kernel's time is the fraction of the read bandwidth the kernel reaches
("62% of read bw"). The probe reads the very array the kernel reads, interleaved with the
other runs, so the fraction compares like with like whether the array comes from DRAM or, where
it fits, from the cache. The in-place gradient reads and writes its array once: its limit is
an in-place copy of the array. The fused linear head's work is GEMMs: its time is given in
units of one GEMM of the same shape, on the BLAS the linear head calls.
"""

import contextlib

import numpy as np

from .. import _kernels
from .measure import medians_of, time_interleaved

#: Name of the read probe in the interleaved runs (and the JSON's timings).
READ_PROBE = "read probe"
#: Name of the in-place read + write probe.
READ_WRITE_PROBE = "read+write probe"
#: Name of the GEMM in the linear section's interleaved runs.
GEMM = "gemm"
#: The header's array that fits in any cache of a CPU running this (bytes)...
CACHE_PROBE_BYTES = 4 << 20
#: Reads of that array in one timed run.
CACHE_PROBE_READS = 16
#: ... and the largest array it reads for the DRAM bandwidth (bytes; four times the last-level
#: cache where that is smaller).
DRAM_PROBE_MAX_BYTES = 1 << 30
DRAM_PROBE_MIN_BYTES = 256 << 20


def probe_view(array):
    """A 1-D float32 or float64 view of ``array``'s bytes, which the probes can read.

    float32 and float64 arrays are seen as they are (the probe's sum is theirs); a half
    precision array (2 bytes an element) is seen as float64 over its first multiple of 8 bytes:
    the same bytes read, and a bfloat16 or float16 pair of standard normal values never makes a
    float64 inf, NaN or subnormal that could slow the additions.

    Parameters
    ----------
    array : numpy.ndarray
        C-contiguous.

    Returns
    -------
    numpy.ndarray
        1-D, float32 or float64, sharing ``array``'s memory.
    """
    if not array.flags.c_contiguous:
        raise ValueError("the probes read a C-contiguous array")
    flat = array.reshape(-1)
    if flat.dtype in (np.float32, np.float64):
        return flat
    raw = flat.view(np.uint8)
    usable = raw.size - raw.size % 8
    return raw[:usable].view(np.float64)


def read_probe(array, threads):
    """A call of no argument that reads ``array`` once on ``threads`` threads; returns its sum.

    The read is split among the threads as the row drivers split their blocks.
    """
    view = probe_view(array)
    return lambda: _kernels.read_sum(view, threads)


def read_write_probe(array, threads):
    """A call that reads and writes back ``array`` once, in place (it is left unchanged)."""
    view = probe_view(array)
    return lambda: _kernels.copy_array(view, view, threads)


def fraction(probe_seconds, seconds):
    """The fraction of a limit a run reaches: the probe's time over the run's (1 = at it)."""
    return probe_seconds / seconds


def format_fraction(value):
    """``"62%"``; above the limit as it is (``"104%"``), never hidden."""
    return f"{value * 100:.0f}%"


def format_gemms(value):
    """A time in units of one GEMM: ``"1.04x"``."""
    return f"{value:.2f}x"


# --------------------------------------------------------------------------------------------
# The header's limits


def last_level_cache_bytes():
    """Size of the largest CPU cache the kernel reports (sysfs), or None."""
    sizes = []
    for index in range(8):
        path = f"/sys/devices/system/cpu/cpu0/cache/index{index}/size"
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        try:
            sizes.append(int(text.rstrip("KMGkmg")) * scale)
        except ValueError:
            continue
    return max(sizes) if sizes else None


def dram_probe_bytes(cache_bytes):
    """Bytes of the header's DRAM probe: four times the cache, within the bounds above."""
    if cache_bytes is None:
        return DRAM_PROBE_MAX_BYTES
    return int(min(DRAM_PROBE_MAX_BYTES, max(DRAM_PROBE_MIN_BYTES, 4 * cache_bytes)))


def measure_memory_limits(threads, repeat):
    """Read bandwidth from DRAM and from the cache, and in-place read + write bandwidth.

    Arrays of float32 ones (every page touched before the timing); medians of ``repeat``
    interleaved runs.

    Returns
    -------
    dict
        ``read_dram_gb_per_s``, ``read_cache_gb_per_s``, ``read_write_gb_per_s`` (bytes read
        plus bytes written per second, on the DRAM array), the array sizes, the cache size,
        the timings, and ``sums_agree``: whether each probe's sum equals the number of ones.
    """
    cache_bytes = last_level_cache_bytes()
    dram_bytes = dram_probe_bytes(cache_bytes)
    big = np.ones(dram_bytes // 4, dtype=np.float32)
    small = np.ones(CACHE_PROBE_BYTES // 4, dtype=np.float32)
    read_small = read_probe(small, threads)

    def read_cache():  # a read of 4 MiB takes well under a millisecond: time several
        return [read_small() for _ in range(CACHE_PROBE_READS)][-1]

    calls = {
        "read_dram": read_probe(big, threads),
        "read_cache": read_cache,
        "read_write": read_write_probe(big, threads),
    }
    for call in calls.values():
        call()  # warm-up: threads started, the small array in the cache
    timings, results = time_interleaved(calls, max(3, repeat))
    medians = medians_of(timings)
    # sums of ones are exact in float32 lanes up to 2**24 per lane: far beyond a probe's share
    expected = {"read_dram": big.size, "read_cache": small.size, "read_write": big.size}
    return {
        "read_dram_gb_per_s": big.nbytes / medians["read_dram"] / 1e9,
        "read_cache_gb_per_s": CACHE_PROBE_READS * small.nbytes / medians["read_cache"] / 1e9,
        "read_write_gb_per_s": 2 * big.nbytes / medians["read_write"] / 1e9,
        "dram_probe_bytes": big.nbytes,
        "cache_probe_bytes": small.nbytes,
        "last_level_cache_bytes": cache_bytes,
        "timings": timings,
        "sums_agree": all(results[name] == expected[name] for name in calls),
    }


def blas_description():
    """Which BLAS the linear head's gemms run on (xent.linear.blas_info): the library, its
    OpenBLAS version and the kernels it picked for this CPU."""
    import scipy

    try:
        from .. import _blas

        return f"{_blas.info()['description']} (scipy {scipy.__version__})"
    except Exception:  # a private helper: a change of it must not end the benchmark
        return f"scipy {scipy.__version__}"


@contextlib.contextmanager
def blas_threads(threads):
    """Run the body with scipy's OpenBLAS on ``threads`` threads (as many as xent's), then
    restore its count; where its controls cannot be found the BLAS keeps its own count."""
    try:
        from .. import _blas

        controls = _blas._find_controls()
    except Exception:  # a private helper: a change of it must not end the benchmark
        controls = []
    saved = [(control, control.get()) for control in controls]
    for control in controls:
        control.set(threads)
    try:
        yield
    finally:
        for control, value in saved:
            control.set(value)


def gemm_call(hidden, weight):
    """One GEMM ``hidden @ weight.T`` by the BLAS the linear head calls (xent.linear.blas_info),
    into a buffer allocated once: a call of no argument returning the product (N x V).

    An OpenBLAS xent identified is called through its own ``cblas_?gemm`` (row-major, no
    copy); scipy's BLAS otherwise through scipy's wrappers, which are Fortran-ordered: the
    C-ordered (N, H) and (V, H) arrays are the Fortran-ordered transposes, so no copy is made
    either, and the product is written Fortran-ordered (N, V).
    """
    from .. import _blas

    try:
        library = _blas.chosen()
    except Exception:  # a private helper: a change of it must not end the benchmark
        library = None
    if library is not None:
        return _cblas_gemm_call(library, hidden, weight)
    from scipy.linalg import blas

    gemm = blas.sgemm if hidden.dtype == np.float32 else blas.dgemm
    out = np.zeros((hidden.shape[0], weight.shape[0]), dtype=hidden.dtype, order="F")
    a, b = hidden.T, weight.T  # Fortran-ordered (H, N) and (H, V)

    def run():
        return gemm(1.0, a, b, beta=0.0, c=out, trans_a=1, overwrite_c=1)

    return run


def _cblas_gemm_call(library, hidden, weight):
    """gemm_call through an OpenBLAS's cblas_sgemm / cblas_dgemm (ctypes)."""
    import ctypes

    hidden, weight = np.ascontiguousarray(hidden), np.ascontiguousarray(weight)
    (n, h), v = hidden.shape, weight.shape[0]
    real = ctypes.c_float if hidden.dtype == np.float32 else ctypes.c_double
    index = ctypes.c_int64 if library.ilp64 else ctypes.c_int
    gemm = library.symbol("cblas_sgemm" if hidden.dtype == np.float32 else "cblas_dgemm")
    gemm.restype = None
    gemm.argtypes = (
        [ctypes.c_int] * 3
        + [index] * 3
        + [real, ctypes.c_void_p, index, ctypes.c_void_p, index, real, ctypes.c_void_p, index]
    )
    out = np.zeros((n, v), dtype=hidden.dtype)
    # CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112
    args = (
        101,
        111,
        112,
        n,
        v,
        h,
        1.0,
        hidden.ctypes.data,
        h,
        weight.ctypes.data,
        h,
        0.0,
        out.ctypes.data,
        v,
    )

    def run():
        gemm(*args)
        return out

    run.operands = (hidden, weight)  # alive as long as the call: args has only their addresses

    return run


def gemm_gflops(rows, hidden, vocab, seconds):
    """GFLOP/s of a GEMM of that shape done in ``seconds`` (2 N H V flops)."""
    return 2.0 * rows * hidden * vocab / seconds / 1e9
