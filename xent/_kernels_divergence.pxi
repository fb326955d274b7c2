# Part of xent/_kernels.pyx (included there): divergences between two rows of logits
# (distillation): KL both ways, generalised Jensen-Shannon, total variation, and their
# gradients with respect to the student's logits.
# The shared helpers (_row, _block_rows, _threads_for, kern, ...) are defined in _kernels.pyx.

# ---- divergences between a student's and a teacher's logits ----------------------------------

cdef enum:
    # the kinds of xent/src/xent_divergence.h (XENT_DIV_*)
    DIV_FORWARD_KL = 0
    DIV_REVERSE_KL = 1
    DIV_JSD = 2
    DIV_TV = 3
    DIV_SOFTMAX = 4


def divergence_kinds():
    """The kind codes divergence_rows takes, by name."""
    return {"forward": DIV_FORWARD_KL, "reverse": DIV_REVERSE_KL, "jsd": DIV_JSD,
            "tv": DIV_TV, "softmax": DIV_SOFTMAX}


cdef inline double _omega(double x) noexcept nogil:
    """x - log1p(x), by its series where the difference would cancel."""
    cdef double term = x * x, total = 0
    cdef int k
    if fabs(x) >= 0.01:
        return x - log1p(x)
    for k in range(2, 12):   # x^k / k with alternating signs: below 1e-20 x^2 by k = 11
        total += term / k if k % 2 == 0 else -term / k
        term *= x
    return total


cdef inline bint _kl_second_order(const floating *first, const floating *second, Py_ssize_t c,
                                  floating scale, double *out) noexcept nogil:
    """KL(P || Q) of P = softmax(scale first), Q = softmax(scale second) from
    row_kl_second_order's sums (xent_divergence.h), so that a small divergence of close
    distributions keeps its digits: out = {KL, c, log1p(b - a), lse_p}, with
    lse_q - lse_p = log1p(b - a) - c. False where those sums do not serve (a KL that is not
    finite, or Q's mass before P's first finite entry): the caller takes the textbook form of
    row_kl_logits."""
    cdef double st[7]
    cdef double a, b, size, loss = 0, kl_c = NAN, kl_log1p = NAN
    cdef bint near
    for attempt in range(2):
        st[0] = -INFINITY
        st[1] = st[2] = st[3] = st[4] = 0
        st[5] = kl_c
        st[6] = 0
        kern.row_kl_second_order(first, second, c, scale, st)
        a = st[4] / st[1]
        b = st[3] / st[1]
        kl_log1p = log1p(b - a)
        near = fabs(b - a) < 0.5
        # near: b >= 0 and omega(b - a) ~ (b - a)^2 / 2 small beside it
        loss = b - _omega(b - a) if near else a + kl_log1p
        size = b if near else fabs(a) + fabs(kl_log1p)
        if attempt == 1 or st[5] != st[5] or a - a != 0:
            break
        # once more with r centred (E_P[r] = 0) where c was taken far from where P has
        # its mass: there 1 + b - a = E_P[exp(-r)] is near 0 (log1p(b - a) can lose all
        # its digits) or the terms cancel; otherwise keep the first pass
        if loss - loss == 0 and b - a >= -0.5 and size <= 4 * fabs(loss):
            break
        kl_c = st[5] + a
    if not (loss - loss == 0 and st[5] == st[5] and st[6] == 0):
        return False
    out[0] = loss
    out[1] = st[5]
    out[2] = kl_log1p
    out[3] = st[0] + log(st[1])
    return True


cdef inline double _divergence_row(const floating *s, const floating *t, Py_ssize_t c,
                                   floating scale, int kind, double beta, double coef,
                                   floating *grad, double *lse) noexcept nogil:
    """One row pair: its divergence (the second read only for JSD and TV), the two
    log-sum-exps into lse[0] (student), lse[1] (teacher), and coef times the gradient into
    grad unless NULL. DIV_SOFTMAX: no divergence (0), grad = coef softmax(scale s).

    KL both ways comes from row_kl_second_order's sums (_kl_second_order), so a small
    divergence of close distributions keeps its digits, and so does its gradient. JSD and TV
    take from the same sums (P the teacher) the difference of the two log-sum-exps with its
    digits, from which their second read has log P - log Q per entry. A row those sums do not
    serve takes the textbook form of row_kl_logits."""
    cdef double st[5]
    cdef double kl[4]
    cdef double qg[2]   # what the gradient subtracts (see row_divergence)
    cdef double lse_s, lse_t, loss = 0, kl_c = NAN, kl_log1p = NAN
    # the KL's first distribution: the teacher for forward KL, JSD and TV
    cdef const floating *first = s if kind == DIV_REVERSE_KL else t
    cdef const floating *second = t if kind == DIV_REVERSE_KL else s
    qg[0] = qg[1] = 0
    if kind != DIV_SOFTMAX and _kl_second_order(first, second, c, scale, kl):
        kl_c = kl[1]
        kl_log1p = kl[2]
        if kind == DIV_REVERSE_KL:
            lse_s, lse_t = kl[3], kl[3] - kl_c + kl_log1p
            loss = qg[0] = kl[0]
        else:
            lse_t, lse_s = kl[3], kl[3] - kl_c + kl_log1p
            loss = kl[0]
        if kind == DIV_JSD or kind == DIV_TV:
            loss = kern.row_divergence(s, t, c, scale, lse_s, lse_t, kind, beta, kl_c,
                                       kl_log1p, qg if grad != NULL else NULL)
        lse[0] = lse_s
        lse[1] = lse_t
        if grad != NULL:
            kern.row_divergence_grad(s, t, c, scale, lse_s, lse_t, kind, beta, qg[0], qg[1],
                                     coef, kl_c, kl_log1p, grad)
        return loss
    st[0] = -INFINITY
    st[1] = 0
    st[2] = -INFINITY
    st[3] = 0
    st[4] = 0
    if kind == DIV_REVERSE_KL or kind == DIV_SOFTMAX:
        kern.row_kl_logits(s, t, c, scale, st)   # P = student
        lse_s = st[0] + log(st[1])
        lse_t = st[2] + log(st[3])
    else:
        kern.row_kl_logits(t, s, c, scale, st)   # P = teacher
        lse_t = st[0] + log(st[1])
        lse_s = st[2] + log(st[3])
    if kind == DIV_FORWARD_KL:
        loss = st[4] / st[1] - lse_t + lse_s
    elif kind == DIV_REVERSE_KL:
        loss = st[4] / st[1] - lse_s + lse_t
        qg[0] = loss
    elif kind == DIV_JSD or kind == DIV_TV:
        loss = kern.row_divergence(s, t, c, scale, lse_s, lse_t, kind, beta, NAN, NAN,
                                   qg if grad != NULL else NULL)
    lse[0] = lse_s
    lse[1] = lse_t
    if grad != NULL:
        kern.row_divergence_grad(s, t, c, scale, lse_s, lse_t, kind, beta, qg[0], qg[1], coef,
                                 NAN, NAN, grad)
    return loss


def divergence_rows(const floating[:, :] s, const floating[:, :] t, double scale, int kind,
                    double beta, const unsigned char[::1] skip, const double[::1] coef,
                    double[::1] row_loss, double[:, ::1] lse, floating[:, :] grad,
                    int nthreads):
    """Per row i: row_loss[i] = the divergence of the rows s[i] (student) and t[i] (teacher)
    at scale (1 / temperature), lse[i] = (logsumexp(scale s[i]), logsumexp(scale t[i])) unless
    lse is None, and grad[i] = coef[i] d divergence / d (scale s[i]) unless grad is None
    (grad may be s or t itself).

    Rows with skip[i] (unless skip is None) get loss 0, lse 0 and a zero gradient. Each row's
    results depend on that row only: the same bits on any number of threads.
    """
    cdef Py_ssize_t n = s.shape[0], c = s.shape[1], i, j
    cdef floating *g
    cdef double two[2]
    if n == 0:
        return
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            g = _out_row(grad, i) if grad is not None else NULL
            if skip is not None and skip[i]:
                row_loss[i] = 0
                if lse is not None:
                    lse[i, 0] = 0
                    lse[i, 1] = 0
                if g != NULL:
                    for j in range(c):
                        g[j] = 0
                continue
            row_loss[i] = _divergence_row(_row(s, i), _row(t, i), c, <floating>scale, kind,
                                          beta, coef[i] if coef is not None else 1.0, g, two)
            if lse is not None:
                lse[i, 0] = two[0]
                lse[i, 1] = two[1]


def divergence_rows_half(const uint16_t[:, :] s, const uint16_t[:, :] t, bint bfloat,
                         double scale, int kind, double beta, const unsigned char[::1] skip,
                         const double[::1] coef, double[::1] row_loss, double[:, ::1] lse,
                         float[:, :] grad, int nthreads):
    """divergence_rows of float16 (or, with bfloat, bfloat16) rows given as their bits: each
    row pair is widened into its thread's float32 scratch, where it stays in cache for the
    float32 kernels (no N x C copy). The gradient is written in float32."""
    cdef Py_ssize_t n = s.shape[0], c = s.shape[1], i, j
    cdef int nt = _threads_for(nthreads, n // _block_rows(c) + 1)
    cdef float *scratch
    cdef float *buf
    cdef float *g
    cdef double two[2]
    if n == 0:
        return
    scratch = _half_scratch(nt, 2, c)
    try:
        with nogil:
            for i in prange(n, schedule="dynamic", chunksize=_block_rows(c), num_threads=nt):
                buf = scratch + threadid() * 2 * c
                g = _out_row(grad, i) if grad is not None else NULL
                if skip is not None and skip[i]:
                    row_loss[i] = 0
                    if lse is not None:
                        lse[i, 0] = 0
                        lse[i, 1] = 0
                    if g != NULL:
                        for j in range(c):
                            g[j] = 0
                    continue
                kern.widen_half(&s[i, 0], c, bfloat, buf)
                kern.widen_half(&t[i, 0], c, bfloat, buf + c)
                row_loss[i] = _divergence_row(<const float *>buf, <const float *>(buf + c), c,
                                              <float>scale, kind, beta,
                                              coef[i] if coef is not None else 1.0, g, two)
                if lse is not None:
                    lse[i, 0] = two[0]
                    lse[i, 1] = two[1]
    finally:
        free(scratch)


def add_scaled_softmax(const floating[:, :] x, const double[::1] lse, const double[::1] coef,
                       floating[:, :] out, int nthreads):
    """out[i] += coef[i] softmax(x[i]), given lse[i] = logsumexp(x[i]): the gradient of a
    per-row function of the log-sum-exp (z-loss) added to a gradient already in out. out
    must not share memory with x."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i, j
    cdef const floating *row
    cdef floating *o
    cdef double l, a
    if n == 0:
        return
    with nogil:
        for i in prange(n, schedule="static", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            a = coef[i]
            if a == 0:
                continue
            row = _row(x, i)
            o = _out_row(out, i)
            l = lse[i]
            for j in range(c):
                o[j] = o[j] + <floating>(a * exp(<double>row[j] - l))
