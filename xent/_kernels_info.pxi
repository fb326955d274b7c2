# Part of xent/_kernels.pyx (included there): information quantities of distributions, and
# elementwise functions.
# The shared helpers (_row, _block_rows, _Partials, kern, ...) are defined in _kernels.pyx.

# ---- information quantities ------------------------------------------------------------------

cpdef enum Dist:
    # What dist_rows computes per row.
    DIST_ENTROPY = 0
    DIST_CROSS_ENTROPY = 1
    DIST_KL = 2


def dist_rows(int kind, const floating[:, :] p, const floating[:, :] q, double[:, ::1] out,
              int nthreads):
    """Per-row sums of distributions, out[i] = (sum p, sum q, total, min p, min q).

    kind: DIST_ENTROPY (total = sum p log p; q unused, may be None), DIST_CROSS_ENTROPY
    (total = sum p log q) or DIST_KL (total = sum rel_entr(p, q)).
    """
    cdef Py_ssize_t n = p.shape[0], c = p.shape[1], i
    cdef xent_dist_sums *sums
    if n == 0:
        return
    if out.shape[1] * sizeof(double) != sizeof(xent_dist_sums):
        raise ValueError("out must have one column per field of xent_dist_sums")
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            # each row's kernel writes straight into its own row of out (the struct is five
            # doubles): no variable shared between the threads
            sums = <xent_dist_sums *>&out[i, 0]
            if kind == DIST_ENTROPY:
                kern.row_entropy(_row(p, i), c, sums)
            elif kind == DIST_CROSS_ENTROPY:
                kern.row_cross_entropy(_row(p, i), _row(q, i), c, sums)
            else:
                kern.row_kl(_row(p, i), _row(q, i), c, sums)


def softmax_entropy_rows(const floating[:, :] x, floating[::1] out, int nthreads):
    """out[i] = entropy of softmax(x[i]), in nats."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    cdef xent_lse_state st
    cdef const floating *row
    if n == 0:
        return
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            row = _row(x, i)
            st = _row_lse(row, c)
            out[i] = <floating>kern.row_softmax_entropy(row, c, st.shift,
                                                        xent_lse_log_sum(&st))


# ---- elementwise functions over (N, C) arrays -----------------------------------------------

cdef enum:
    # Long rows of elementwise work are cut into segments this long, so that one long row
    # still spreads over the threads (a fixed length: the sums keep their order).
    SEGMENT = 16384

cpdef enum Element:
    # What elementwise computes.
    ELEMENT_SELF_INFORMATION = 0
    ELEMENT_BINARY_ENTROPY = 1
    ELEMENT_BCE = 2
    ELEMENT_BCE_LOGITS = 3


cdef inline const floating *_seg(const floating[:, :] a, Py_ssize_t i,
                                 Py_ssize_t start) noexcept nogil:
    return _row(a, i) + start


cdef void _elementwise_item(int kind, const floating[:, :] x, const floating[:, :] y,
                            const floating[:, :] w, const floating[:, :] pw,
                            floating[:, :] out, floating[:, :] grad, double scale,
                            const floating[:, :] gout, Py_ssize_t r0, Py_ssize_t r1,
                            Py_ssize_t c0, Py_ssize_t c1, double *sum_out,
                            Py_ssize_t *bad_out) noexcept nogil:
    cdef Py_ssize_t i, n = c1 - c0, bad, bad_total = 0
    cdef double total = 0
    cdef floating *o
    cdef floating *gr
    for i in range(r0, r1):
        o = _out_row(out, i) + c0 if out is not None else NULL
        gr = _out_row(grad, i) + c0 if grad is not None else NULL
        bad = 0
        if kind == ELEMENT_SELF_INFORMATION:
            bad = kern.self_information_array(_seg(x, i, c0), n, scale, o)
        elif kind == ELEMENT_BINARY_ENTROPY:
            bad = kern.binary_entropy_array(_seg(x, i, c0), n, scale, o)
        elif kind == ELEMENT_BCE:
            total += kern.row_bce(_seg(x, i, c0), _seg(y, i, c0), _seg(w, i, c0),
                                  n, o, gr, scale, _seg(gout, i, c0), &bad)
        else:
            total += kern.row_bce_logits(
                _seg(x, i, c0), _seg(y, i, c0), _seg(w, i, c0), _seg(pw, i, c0), n, o, gr,
                scale, _seg(gout, i, c0), &bad)
        bad_total += bad
    sum_out[0] = total
    bad_out[0] = bad_total


def elementwise(int kind, const floating[:, :] x, const floating[:, :] y,
                const floating[:, :] w, const floating[:, :] pw, floating[:, :] out,
                floating[:, :] grad, double scale, const floating[:, :] gout, int nthreads):
    """An elementwise function over (N, C) arrays with contiguous rows (any row stride, 0 too).

    ELEMENT_SELF_INFORMATION, ELEMENT_BINARY_ENTROPY: out = f(x) * scale.
    ELEMENT_BCE, ELEMENT_BCE_LOGITS: losses of x against y with weights w (and pos_weight pw),
    into out unless None; gradient scale * gout * d loss / d x into grad unless None.
    y, w, pw, gout are unused (may be None) where the function has no use for them; else all
    must be given (pass broadcast ones for absent weights).
    Returns (sum of the losses, count of entries outside their domain).
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b, rb, seg
    cdef Py_ssize_t nseg = (c + SEGMENT - 1) // SEGMENT if c > 0 else 1
    cdef Py_ssize_t rows = _block_rows(c) if nseg == 1 else 1
    cdef Py_ssize_t nblocks = ((n + rows - 1) // rows) * nseg
    cdef _Partials part = _Partials(nblocks)
    cdef Py_ssize_t bad = 0
    if n == 0 or c == 0:
        return 0.0, 0
    with nogil:
        for b in prange(nblocks, schedule="dynamic",
                        num_threads=_threads_for(nthreads, nblocks)):
            rb = b // nseg
            seg = b % nseg
            _elementwise_item(kind, x, y, w, pw, out, grad, scale, gout, rb * rows,
                              min(n, (rb + 1) * rows), seg * SEGMENT,
                              min(c, (seg + 1) * SEGMENT), &part.loss[b], &part.bad[b])
    for b in range(nblocks):
        bad += part.bad[b]
    return part.combine()[0], bad
