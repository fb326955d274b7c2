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
    if x.strides[0] == c * <Py_ssize_t>sizeof(uint16_t):   # contiguous rows: one vector loop
        kern.widen_half(&x[r0, 0], (r1 - r0) * c, bfloat, buf)
        return
    for i in range(r0, r1):
        kern.widen_half(&x[i, 0], c, bfloat, buf + (i - r0) * c)


cdef enum:
    # Short rows (up to XENT_SMALL_ROW, which the float32 kernels take several at a time) are
    # widened many at a time into this many floats (64 KiB), which stay in L2 while the
    # float32 kernels read them. Longer rows are widened a chunk at a time inside the row
    # kernels (row_lse_half, row_softmax_grad_half), or, with label smoothing (which reads a
    # row once more), widened whole, a few rows at a time. Each block of rows costs a call of
    # the float32 driver and the flush of its exact sums: with 4096 floats (16 KiB, in L1)
    # 1M x 10 float16 rows took 10.2-11.1 ms, with 16384 8.2-8.3 ms (bfloat16 1M x 64:
    # 33.4-34.3 against 29.2-29.5 ms; 65536 floats gave no more; two threads, medians of
    # interleaved processes, Intel Xeon).
    HALF_ROWS_FLOATS = 16384


cdef inline bint _half_by_rows(Py_ssize_t c, double smoothing) noexcept nogil:
    """Whether rows are widened whole into the scratch (else a chunk at a time)."""
    return c <= XENT_SMALL_ROW or smoothing != 0


cdef inline Py_ssize_t _half_sub_rows(Py_ssize_t c) noexcept nogil:
    """Rows widened at once into the scratch."""
    return max(1, HALF_ROWS_FLOATS // max(c, 1))


cdef inline Py_ssize_t _half_scratch_floats(Py_ssize_t c) noexcept nogil:
    """Scratch floats per thread: a few rows, or one long row."""
    return max(<Py_ssize_t>HALF_ROWS_FLOATS, c)


cdef inline void _merge_block(xent_exact_sum *loss_out, xent_exact_sum *weight_out,
                              Py_ssize_t *bad_out, xent_exact_sum *loss,
                              xent_exact_sum *weight, Py_ssize_t bad) noexcept nogil:
    xent_exact_merge(loss_out, loss)
    xent_exact_merge(weight_out, weight)
    if bad_out[0] < 0 and bad >= 0:
        bad_out[0] = bad


cdef void _index_half_block(const uint16_t[:, :] x, bint bfloat, const intp_t[::1] target,
                            const double *w, intp_t ignore_index, double smoothing,
                            float *row_loss, Py_ssize_t r0, Py_ssize_t r1, float *buf,
                            xent_exact_sum *loss_out, xent_exact_sum *weight_out,
                            Py_ssize_t *bad_out) noexcept nogil:
    """_index_block of rows r0 .. r1 - 1 of half bits, widened a few rows (or, for long rows,
    a chunk) at a time: the same losses and sums, bit for bit, as on the float32 rows."""
    cdef Py_ssize_t c = x.shape[1], s0, s1, i, sub = _half_sub_rows(c), bad
    cdef Py_ssize_t kept = 0
    cdef xent_exact_sum loss, weight
    cdef xent_lse_state st
    cdef intp_t t
    cdef float x_t
    cdef double wt, value
    xent_exact_init(loss_out)
    xent_exact_init(weight_out)
    bad_out[0] = -1
    if _half_by_rows(c, smoothing):
        s0 = r0
        while s0 < r1:
            s1 = min(r1, s0 + sub)
            _widen_rows(x, bfloat, s0, s1, buf)
            _index_block(<const float *>buf, c * sizeof(float), c, s0, c <= XENT_SMALL_ROW,
                         target, w, ignore_index, smoothing, False, NULL, row_loss, s0, s1,
                         &loss, &weight, &bad)
            _merge_block(loss_out, weight_out, bad_out, &loss, &weight, bad)
            s0 = s1
        return
    # longer rows without smoothing: the loss is (shift - x_t) + log(sum), as in _index_block
    for i in range(r0, r1):
        t = target[i]
        if t == ignore_index:
            if row_loss != NULL:
                row_loss[i] = 0
            continue
        if t < 0 or t >= c:
            if bad_out[0] < 0:
                bad_out[0] = i
            continue
        wt = w[t] if w != NULL else 1.0
        st = xent_lse_init()
        kern.xent_k.row_lse_half_f32(&x[i, 0], c, bfloat, &st)
        kern.widen_half(&x[i, t], 1, bfloat, &x_t)
        value = (1.0 - smoothing) * wt * ((st.shift - <double>x_t) + xent_lse_log_sum(&st))
        if row_loss != NULL:
            row_loss[i] = <float>value
        xent_exact_add(loss_out, value)
        if w != NULL:
            xent_exact_add(weight_out, wt)
        else:
            kept += 1
    xent_exact_add(weight_out, <double>kept)


def index_loss_half(const uint16_t[:, :] x, bint bfloat, const intp_t[::1] target,
                    const double[::1] weight, intp_t ignore_index, double smoothing,
                    bint log_probs, float[::1] row_loss, int nthreads, bint parts=False):
    """index_loss of float16 (or, with bfloat, bfloat16) logits given as their bits.

    Short rows are widened many at a time into their thread's float32 scratch, which stays
    in L1 for the float32 kernels; longer rows a chunk at a time inside row_lse_half (whole,
    with label smoothing). The same
    bits as index_loss of the logits converted to float32, without that N x C copy. Rows
    shorter than split_row_length() only.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef int nt = _threads_for(nthreads, nblocks)
    cdef Py_ssize_t per_thread = _half_scratch_floats(c)
    cdef _Partials part = _Partials(nblocks, True)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef float *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    cdef float *scratch
    if log_probs:
        raise ValueError("index_loss_half reads logits, not log-probabilities")
    if n == 0:
        return 0.0, 0.0, -1
    scratch = _half_scratch(nt, 1, per_thread)
    try:
        with nogil:
            for b in prange(nblocks, schedule="dynamic", num_threads=nt):
                _index_half_block(x, bfloat, target, w, ignore_index, smoothing, out, b * rows,
                                  min(n, (b + 1) * rows), scratch + threadid() * per_thread,
                                  &part.exact_loss[b], &part.exact_weight[b], &part.bad[b])
    finally:
        free(scratch)
    return part.combine_parts() if parts else part.combine()


def logsumexp_rows_half(const uint16_t[:, :] x, bint bfloat, float[::1] out, int nthreads):
    """logsumexp_rows of float16 (or bfloat16) bits, widened a chunk at a time in L1."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    cdef xent_lse_state st
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            st = xent_lse_init()
            kern.xent_k.row_lse_half_f32(&x[i, 0], c, bfloat, &st)
            out[i] = <float>xent_lse_value(&st)


def transform_rows_half(const uint16_t[:, :] x, bint bfloat, bint softmax,
                        uint16_t[:, :] out, int nthreads):
    """out = log_softmax (softmax) of float16 (or bfloat16) rows x, rounded to their dtype.

    Widened a chunk at a time in L1: the bits of the float32 path rounded, without its float32
    copies of x and of the result. out may be x. Rows shorter than split_row_length().
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            kern.xent_k.row_transform_half_f32(&x[i, 0], c, bfloat, softmax, &out[i, 0])


cdef void _index_grad_half_block(const uint16_t[:, :] x, bint bfloat, const intp_t[::1] target,
                                 const double *w, double weight_total, intp_t ignore_index,
                                 double smoothing, double scale, const double[::1] grad_rows,
                                 float *row_loss, uint16_t[:, :] grad, Py_ssize_t r0,
                                 Py_ssize_t r1, float *buf, xent_exact_sum *loss_out,
                                 xent_exact_sum *weight_out) noexcept nogil:
    """_index_grad_block of rows of half bits: a few rows (a long row: a chunk) at a time are
    widened, their gradient computed in float32 in cache and narrowed into grad (which may be
    x). The same losses and gradient bits as the float32 path on the widened rows."""
    cdef Py_ssize_t c = x.shape[1], s0, s1, i, k, sub = _half_sub_rows(c)
    cdef Py_ssize_t kept = 0
    cdef xent_exact_sum loss, weight
    cdef xent_lse_state st
    cdef intp_t t
    cdef float x_t, entry
    cdef double wt, value, g, log_sum
    xent_exact_init(loss_out)
    xent_exact_init(weight_out)
    if _half_by_rows(c, smoothing):
        s0 = r0
        while s0 < r1:
            s1 = min(r1, s0 + sub)
            _widen_rows(x, bfloat, s0, s1, buf)
            _index_grad_block(<const float *>buf, c * sizeof(float), c, s0, target, w,
                              weight_total, ignore_index, smoothing, scale, grad_rows, NULL,
                              row_loss, buf, c * sizeof(float), s0, s1, &loss, &weight)
            for i in range(s0, s1):
                kern.narrow_half(buf + (i - s0) * c, c, bfloat, &grad[i, 0])
            xent_exact_merge(loss_out, &loss)
            xent_exact_merge(weight_out, &weight)
            s0 = s1
        return
    for i in range(r0, r1):
        t = target[i]
        if t == ignore_index or t < 0 or t >= c:   # out of range: raised by the caller
            for k in range(c):
                grad[i, k] = 0
            if row_loss != NULL:
                row_loss[i] = 0
            continue
        wt = w[t] if w != NULL else 1.0
        kern.widen_half(&x[i, t], 1, bfloat, &x_t)   # before grad (maybe x) is written
        st = xent_lse_init()
        kern.xent_k.row_lse_half_f32(&x[i, 0], c, bfloat, &st)
        log_sum = xent_lse_log_sum(&st)
        value = (1.0 - smoothing) * wt * ((st.shift - <double>x_t) + log_sum)
        if row_loss != NULL:
            row_loss[i] = <float>value
        xent_exact_add(loss_out, value)
        if w != NULL:
            xent_exact_add(weight_out, wt)
        else:
            kept += 1
        g = scale * _row_g(grad_rows, i)
        kern.xent_k.row_softmax_grad_half_f32(
            &x[i, 0], c, bfloat, st.shift, log_sum,
            g * ((1.0 - smoothing) * wt + smoothing / c * weight_total), w, g * smoothing / c,
            &grad[i, 0])
        entry = <float>_target_grad(g, wt, smoothing, c, weight_total, x_t, st.shift, log_sum)
        kern.narrow_half(&entry, 1, bfloat, &grad[i, t])
    xent_exact_add(weight_out, <double>kept)


def index_loss_grad_half(const uint16_t[:, :] x, bint bfloat, const intp_t[::1] target,
                         const double[::1] weight, intp_t ignore_index, double smoothing,
                         double scale, const double[::1] grad_rows, float[::1] row_loss,
                         uint16_t[:, :] grad, int nthreads):
    """index_loss_grad of float16 (or bfloat16) bits x into half bits grad (may be x).

    Memory: a few rows (or one long row) of float32 per thread, never the N x C float32 copy
    of the logits and of their gradient. The same losses and gradient bits as index_loss_grad
    on the logits converted to float32, rounded to the half dtype. Rows shorter than
    split_row_length() only; labels checked by the caller (index_weight_total).
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef int nt = _threads_for(nthreads, nblocks)
    cdef Py_ssize_t per_thread = _half_scratch_floats(c)
    cdef _Partials part = _Partials(nblocks, True)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef float *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    cdef double weight_total = _weight_total(weight, c)
    cdef float *scratch
    if n == 0:
        return 0.0, 0.0
    scratch = _half_scratch(nt, 1, per_thread)
    try:
        with nogil:
            for b in prange(nblocks, schedule="dynamic", num_threads=nt):
                _index_grad_half_block(x, bfloat, target, w, weight_total, ignore_index,
                                       smoothing, scale, grad_rows, out, grad, b * rows,
                                       min(n, (b + 1) * rows), scratch + threadid() * per_thread,
                                       &part.exact_loss[b], &part.exact_weight[b])
    finally:
        free(scratch)
    loss, weight_sum, _ = part.combine()
    return loss, weight_sum


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
