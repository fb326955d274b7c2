# Part of xent/_kernels.pyx (included there): float16 and bfloat16 logits, widened a block at a
# time.
# The shared helpers (_row, _block_rows, _Partials, kern, ...) are defined in _kernels.pyx.

# ---- float16 and bfloat16 logits ------------------------------------------------------------

def split_row_length():
    """Rows at least this long are split among threads; the half drivers take shorter ones."""
    return SPLIT_ROW


cdef float *_half_scratch(int nthreads, Py_ssize_t rows, Py_ssize_t c) except NULL:
    """Room for one block of float32 rows per thread; free() it."""
    cdef float *scratch = <float *>malloc(max(nthreads * rows * c, 1) * sizeof(float))
    if scratch == NULL:
        raise MemoryError("xent: cannot allocate the per-thread float32 scratch")
    return scratch


cdef inline void _widen_rows(const uint16_t[:, :] x, bint bfloat, Py_ssize_t r0, Py_ssize_t r1,
                             float *buf) noexcept nogil:
    """Rows r0 .. r1 - 1 of float16 (or bfloat16) bits, as float32 rows packed into buf."""
    cdef Py_ssize_t i, c = x.shape[1]
    for i in range(r0, r1):
        kern.widen_half(&x[i, 0], c, bfloat, buf + (i - r0) * c)


def index_loss_half(const uint16_t[:, :] x, bint bfloat, const intp_t[::1] target,
                    const double[::1] weight, intp_t ignore_index, double smoothing,
                    bint log_probs, float[::1] row_loss, int nthreads):
    """index_loss of float16 (or, with bfloat, bfloat16) logits given as their bits.

    Each block of rows is widened into its thread's float32 scratch, where it stays in cache
    for the float32 kernels: the same bits as index_loss of the logits converted to float32,
    without that N x C copy. Rows shorter than split_row_length() only.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b, r0, r1
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef int nt = _threads_for(nthreads, nblocks)
    cdef _Partials part = _Partials(nblocks, True)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef float *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    cdef float *scratch
    cdef float *buf
    if log_probs:
        raise ValueError("index_loss_half reads logits, not log-probabilities")
    if n == 0:
        return 0.0, 0.0, -1
    scratch = _half_scratch(nt, rows, c)
    try:
        with nogil:
            for b in prange(nblocks, schedule="dynamic", num_threads=nt):
                buf = scratch + threadid() * rows * c
                r0 = b * rows
                r1 = min(n, r0 + rows)
                _widen_rows(x, bfloat, r0, r1, buf)
                _index_block(<const float *>buf, c * sizeof(float), c, r0, c <= XENT_SMALL_ROW,
                             target, w, ignore_index, smoothing, False, NULL, out, r0, r1,
                             &part.exact_loss[b], &part.exact_weight[b], &part.bad[b])
    finally:
        free(scratch)
    return part.combine()


def logsumexp_rows_half(const uint16_t[:, :] x, bint bfloat, float[::1] out, int nthreads):
    """logsumexp_rows of float16 (or bfloat16) bits, widened a block at a time (see above)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b, i, r0, r1
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef int nt = _threads_for(nthreads, nblocks)
    cdef float *scratch = _half_scratch(nt, rows, c)
    cdef float *buf
    cdef xent_lse_state st
    try:
        with nogil:
            for b in prange(nblocks, schedule="dynamic", num_threads=nt):
                buf = scratch + threadid() * rows * c
                r0 = b * rows
                r1 = min(n, r0 + rows)
                _widen_rows(x, bfloat, r0, r1, buf)
                for i in range(r0, r1):
                    st = _row_lse(<const float *>(buf + (i - r0) * c), c)
                    out[i] = <float>xent_lse_value(&st)
    finally:
        free(scratch)


def widen_half_rows(const uint16_t[:, :] x, bint bfloat, float[:, ::1] out, int nthreads):
    """out = float16 (or bfloat16) rows x, widened to float32, in parallel blocks of rows."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    if n == 0 or c == 0:
        return
    with nogil:
        for b in prange(nblocks, schedule="static", num_threads=_threads_for(nthreads, nblocks)):
            _widen_rows(x, bfloat, b * rows, min(n, (b + 1) * rows), &out[b * rows, 0])


def narrow_half(const float[::1] x, bint bfloat, uint16_t[::1] out, int nthreads):
    """out = float32 x rounded to float16 (or bfloat16) bits, in parallel segments."""
    cdef Py_ssize_t n = x.shape[0], s, nseg = (n + SEGMENT - 1) // SEGMENT
    with nogil:
        for s in prange(nseg, schedule="static", num_threads=_threads_for(nthreads, nseg)):
            kern.narrow_half(&x[0] + s * SEGMENT, min(SEGMENT, n - s * SEGMENT), bfloat,
                             &out[0] + s * SEGMENT)


def widen_half(const uint16_t[::1] h, bint bfloat, float[::1] out):
    """out = float16 (or bfloat16) bits h, widened to float32 (for tests)."""
    with nogil:
        kern.widen_half(&h[0], h.shape[0], bfloat, &out[0])
