# Part of xent/_kernels.pyx (included there): row transforms (log-sum-exp, log-softmax,
# softmax) and the vectorised exp, log and log1p.
# The shared helpers (_row, _block_rows, _Partials, kern, ...) are defined in _kernels.pyx.

# ---- row transforms --------------------------------------------------------------------------

cdef void _lse_short_block(const floating[:, :] x, floating[::1] out, Py_ssize_t r0,
                           Py_ssize_t r1) noexcept nogil:
    """out[i] = logsumexp(x[i]) for the short rows r0 .. r1 - 1 (_small_rows(x)), a group of
    rows at a time."""
    cdef xent_lse_state group[SMALL_GROUP]
    cdef Py_ssize_t g0 = r0, k, nrows
    while g0 < r1:
        nrows = min(SMALL_GROUP, r1 - g0)
        _group_lse(_row(x, g0), x.strides[0] // <Py_ssize_t>sizeof(floating), nrows,
                   x.shape[1], group)
        for k in range(nrows):
            out[g0 + k] = <floating>xent_lse_value(&group[k])
        g0 += SMALL_GROUP


def logsumexp_rows(const floating[:, :] x, floating[::1] out, int nthreads):
    """out[i] = logsumexp(x[i]) for every row (x has at least one row)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i, b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef xent_lse_state st
    cdef xent_lse_state *states
    if _split_rows(c):   # long rows: cut among the threads, as cross-entropy does
        states = _split_lse(x, nthreads)
        for i in range(n):
            out[i] = <floating>xent_lse_value(&states[i])
        free(states)
        return
    if _small_rows(x):
        # short rows a group at a time, several rows per vector, as cross_entropy takes them
        # (one call a row took 3-7x cross_entropy's time for rows of 2 to 10); the same states
        with nogil:
            for b in prange(nblocks, schedule="dynamic",
                            num_threads=_threads_for(nthreads, nblocks)):
                _lse_short_block(x, out, b * rows, min(n, (b + 1) * rows))
        return
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            st = _row_lse(_row(x, i), c)
            out[i] = <floating>xent_lse_value(&st)


def logsumexp_rows_exact(const floating[:, :] x, double[::1] out, int nthreads):
    """out[i] = logsumexp(x[i]) in double-double (row_lse_dd): for the rows whose max and
    log(sum) cancel, about twice row_lse's time an entry."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=max(1, 4096 // max(c, 1)),
                        num_threads=_threads_for(nthreads, n * c // 4096 + 1)):
            out[i] = kern.row_lse_dd(_row(x, i), c)


def logsumexp_rows_weighted(const double[:, :] x, const double[:, :] b, double[::1] out,
                            double[::1] sign, int nthreads):
    """out[i], sign[i] = log|sum b[i] exp(x[i])| and its sign, in double-double with the
    terms' sum exact (row_lse_weighted_dd); NaN (sign NaN) for the rows the caller settles by
    SciPy's rules (NaN, infinite weights, +inf, an empty sum). x and b have the same shape."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    if x.shape[0] != b.shape[0] or x.shape[1] != b.shape[1]:
        raise ValueError("x and b differ in shape")
    if n == 0:
        return
    if c == 0:
        out[:] = -INFINITY
        sign[:] = 0
        return
    if x.strides[1] != sizeof(double) or b.strides[1] != sizeof(double):
        raise ValueError("rows of x and b must be contiguous")
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=max(1, 2048 // c),
                        num_threads=_threads_for(nthreads, n * c // 2048 + 1)):
            out[i] = kern.row_lse_weighted_dd(&x[i, 0], &b[i, 0], c, &sign[i])


def log_softmax_rows(const floating[:, :] x, floating[:, :] out, int nthreads):
    """out[i] = x[i] - logsumexp(x[i]); out may be x itself."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            kern.row_log_softmax(_row(x, i), c, _out_row(out, i))


def softmax_rows(const floating[:, :] x, floating[:, :] out, int nthreads):
    """out[i] = exp(x[i] - logsumexp(x[i])); out may be x itself."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            kern.row_softmax(_row(x, i), c, _out_row(out, i))


def exp_array(const floating[::1] x, floating[::1] out):
    """out = exp(x) with the kernels' own vectorised exp (for its accuracy test)."""
    if x.shape[0]:
        kern.exp_array(&x[0], x.shape[0], &out[0])


def log_array(const floating[::1] x, floating[::1] out):
    """out = log(x) with the kernels' own vectorised log (for its accuracy test)."""
    if x.shape[0]:
        kern.log_array(&x[0], x.shape[0], &out[0])


def log1p_array(const floating[::1] x, floating[::1] out):
    """out = log1p(x) with the kernels' own vectorised log1p (for its accuracy test)."""
    if x.shape[0]:
        kern.log1p_array(&x[0], x.shape[0], &out[0])
