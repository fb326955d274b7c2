# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Cython drivers: loops over blocks of rows without the GIL, calling xent's C row kernels.

The Python layer (xent/_api.py) has already checked every shape, dtype and option; these
drivers trust their arguments. Each 2-D input has a contiguous last axis and any row stride.

Determinism: rows are grouped into blocks whose size depends only on the row length, never
on the thread count. Each block writes its own partial sums, and the partials are added in
block order after the parallel loop, so a reduced loss has the same bits on any number of
threads.
"""

cimport cython
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport exp, log
from libc.stdint cimport uint16_t
from libc.stdlib cimport free, malloc

cimport numpy as cnp

cnp.import_array()

ctypedef cnp.intp_t intp_t

from xent cimport _kernel_api as kern
from xent._kernel_types cimport (XENT_SMALL_ROW, xent_dist_sums, xent_eval_init,
                                 xent_eval_state, xent_lse_init, xent_lse_merge, xent_lse_state,
                                 xent_lse_value)
from xent._table cimport kernel_table

# The instruction set is chosen by xent._table (which owns the one compiled copy of the
# kernels) and xent._dispatch; they stay importable from here as before.
from xent._table import current_isa, has_openmp, isa_supported, openmp_max_threads, set_isa

# This extension's pointer to the one kernel table, set before any driver can run.
kern.xent_bind_table(kernel_table())

cdef enum:
    # A block holds about this many logits (or one row, if rows are longer).
    BLOCK_ELEMENTS = 32768


# ---- blocks of rows ------------------------------------------------------------------------

def block_rows(Py_ssize_t ncols):
    """Rows per block for rows of ncols entries (depends on nothing else)."""
    return _block_rows(ncols)


cdef inline Py_ssize_t _block_rows(Py_ssize_t ncols) noexcept nogil:
    if ncols >= BLOCK_ELEMENTS:
        return 1
    if ncols <= 1:
        return BLOCK_ELEMENTS
    return BLOCK_ELEMENTS // ncols


cdef enum:
    # Each thread gets at least this many blocks of work: waking a thread costs microseconds,
    # and on a busy machine a thread may wait a whole time slice for a core, so a small call
    # runs faster (and far more predictably) on fewer threads. Results do not depend on it.
    MIN_BLOCKS_PER_THREAD = 4


cdef inline Py_ssize_t _threads_for(int nthreads, Py_ssize_t nblocks) noexcept nogil:
    cdef Py_ssize_t useful = (nblocks + MIN_BLOCKS_PER_THREAD - 1) // MIN_BLOCKS_PER_THREAD
    if useful < nthreads:
        return useful if useful > 0 else 1
    return nthreads


# ---- row helpers: one fused kernel call per row ----------------------------------------------

cdef inline const floating *_row(const floating[:, :] x, Py_ssize_t i) noexcept nogil:
    return <const floating *>(<const char *>&x[0, 0] + i * x.strides[0])


cdef inline floating *_out_row(floating[:, :] out, Py_ssize_t i) noexcept nogil:
    return <floating *>(<char *>&out[0, 0] + i * out.strides[0])


cdef inline xent_lse_state _row_lse(const floating *row, Py_ssize_t n) noexcept nogil:
    # logsumexp(row) = st.shift + log(st.sum). Losses use the two parts, (shift - x_j) and
    # log(sum), rather than their rounded total, so huge logits keep their small differences.
    cdef xent_lse_state st = xent_lse_init()
    kern.row_lse(row, n, &st)
    return st


cdef inline double _row_nll_sum(const floating *row, Py_ssize_t n, const double *w,
                                xent_lse_state st) noexcept nogil:
    return kern.row_nll_sum(row, n, w, st.shift, log(st.sum))


cdef inline double _row_nll_dot(const floating *row, const floating *p, Py_ssize_t n,
                                const double *w, double a, double b, xent_lse_state st,
                                double *mass) noexcept nogil:
    return kern.row_nll_dot(row, p, n, w, a, b, st.shift, log(st.sum), mass)


# ---- drivers ---------------------------------------------------------------------------------

def logsumexp_rows(const floating[:, :] x, floating[::1] out, int nthreads):
    """out[i] = logsumexp(x[i]) for every row (x has at least one row)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    cdef xent_lse_state st
    cdef xent_lse_state *states
    if _split_rows(c):   # long rows: cut among the threads, as cross-entropy does
        states = _split_lse(x, nthreads)
        for i in range(n):
            out[i] = <floating>xent_lse_value(&states[i])
        free(states)
        return
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            st = _row_lse(_row(x, i), c)
            out[i] = <floating>xent_lse_value(&st)


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


cdef class _Partials:
    """Per-block partial sums (loss, weight) and the first bad row of each block."""
    cdef double *loss
    cdef double *weight
    cdef Py_ssize_t *bad
    cdef Py_ssize_t nblocks

    def __cinit__(self, Py_ssize_t nblocks):
        self.nblocks = nblocks
        self.loss = <double *>malloc(max(nblocks, 1) * sizeof(double))
        self.weight = <double *>malloc(max(nblocks, 1) * sizeof(double))
        self.bad = <Py_ssize_t *>malloc(max(nblocks, 1) * sizeof(Py_ssize_t))
        if self.loss == NULL or self.weight == NULL or self.bad == NULL:
            raise MemoryError("xent: cannot allocate per-block partial sums")

    def __dealloc__(self):
        free(self.loss)
        free(self.weight)
        free(self.bad)

    cdef tuple combine(self):
        """(sum of losses, sum of weights, first bad row or -1), added in block order."""
        cdef double loss = 0, weight = 0
        cdef Py_ssize_t b, bad = -1
        for b in range(self.nblocks):
            loss += self.loss[b]
            weight += self.weight[b]
            if bad < 0 and self.bad[b] >= 0:
                bad = self.bad[b]
        return loss, weight, bad


cdef enum:
    # rows_lse_small takes this many rows at a time at most (64 bytes of float lanes).
    SMALL_GROUP = 16


cdef inline bint _small_rows(const floating[:, :] x) noexcept nogil:
    """Whether rows_lse_small serves x: short rows, a row stride in whole elements."""
    return x.shape[1] <= XENT_SMALL_ROW and x.strides[0] % <Py_ssize_t>sizeof(floating) == 0


cdef inline void _group_lse(const floating *row0, Py_ssize_t stride, Py_ssize_t nrows,
                            Py_ssize_t c, xent_lse_state *st) noexcept nogil:
    """States of nrows rows (<= 64 bytes of lanes) from row0 on, by rows_lse_small.

    stride: from one row to the next, in elements.
    """
    if floating is float:
        kern.rows_lse_small(row0, stride, nrows, c, st)
    else:
        # double lanes hold 8 rows: two calls
        kern.rows_lse_small(row0, stride, min(nrows, 8), c, st)
        if nrows > 8:
            kern.rows_lse_small(row0 + 8 * stride, stride, nrows - 8, c, st + 8)


cdef enum:
    # Rows at least this long are cut into stretches of SPLIT_STRETCH entries, whose
    # log-sum-exp states are computed in parallel and merged in order: one long row then uses
    # every thread. Both lengths are fixed, so the result does not depend on the threads.
    SPLIT_ROW = 262144
    SPLIT_STRETCH = 65536


cdef inline bint _split_rows(Py_ssize_t c) noexcept nogil:
    return c >= SPLIT_ROW


cdef xent_lse_state *_split_lse(const floating[:, :] x, int nthreads) except NULL:
    """Log-sum-exp states of every row of x, long rows cut among the threads; free() them."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], item, i, s, start
    cdef Py_ssize_t nstretch = (c + SPLIT_STRETCH - 1) // SPLIT_STRETCH
    cdef xent_lse_state *parts = <xent_lse_state *>malloc(max(n * nstretch, 1) * sizeof(xent_lse_state))
    cdef xent_lse_state *states = <xent_lse_state *>malloc(max(n, 1) * sizeof(xent_lse_state))
    if parts == NULL or states == NULL:
        free(parts)
        free(states)
        raise MemoryError("xent: cannot allocate log-sum-exp states")
    with nogil:
        for item in prange(n * nstretch, schedule="dynamic",
                           num_threads=_threads_for(nthreads, n * nstretch)):
            i = item // nstretch
            start = (item % nstretch) * SPLIT_STRETCH
            parts[item] = xent_lse_init()
            kern.row_lse(_row(x, i) + start, min(SPLIT_STRETCH, c - start),
                                     &parts[item])
        for i in range(n):
            states[i] = parts[i * nstretch]
            for s in range(1, nstretch):
                xent_lse_merge(&states[i], &parts[i * nstretch + s])
    free(parts)
    return states


cdef void _index_block(const floating *x0, Py_ssize_t stride, Py_ssize_t c, Py_ssize_t first,
                       bint small, const intp_t[::1] target, const double *weight,
                       intp_t ignore_index, double smoothing, bint log_probs,
                       const xent_lse_state *states, floating *row_loss, Py_ssize_t r0,
                       Py_ssize_t r1, double *loss_out, double *weight_out,
                       Py_ssize_t *bad_out) noexcept nogil:
    """Losses of rows r0 .. r1 - 1; row i of c entries lies (i - first) * stride bytes after x0.

    small: the states of rows come from rows_lse_small (stride a whole number of elements).
    """
    cdef Py_ssize_t i, g0
    cdef intp_t t
    cdef const floating *row
    cdef xent_lse_state st
    cdef xent_lse_state group[SMALL_GROUP]
    cdef double wt, loss, loss_sum = 0, weight_sum = 0
    bad_out[0] = -1
    g0 = r0
    while g0 < r1:
        if small:   # short rows: their states a group at a time, several rows per vector
            _group_lse(<const floating *>(<const char *>x0 + (g0 - first) * stride),
                       stride // <Py_ssize_t>sizeof(floating), min(SMALL_GROUP, r1 - g0), c,
                       group)
        for i in range(g0, min(g0 + SMALL_GROUP, r1)):
            t = target[i]
            if t == ignore_index:
                if row_loss != NULL:
                    row_loss[i] = 0
                continue
            if t < 0 or t >= c:
                if bad_out[0] < 0:
                    bad_out[0] = i
                continue
            row = <const floating *>(<const char *>x0 + (i - first) * stride)
            wt = weight[t] if weight != NULL else 1.0
            if log_probs:
                loss = -wt * <double>row[t]
            else:
                if states != NULL:
                    st = states[i]
                elif small:
                    st = group[i - g0]
                else:
                    st = _row_lse(row, c)
                # PyTorch: (1 - eps) * w_t * nll_t + eps / C * sum_j w_j * nll_j with
                # nll = -log_softmax; a term whose factor is exactly 0 is left out
                # (0 * inf = NaN).
                loss = 0
                if smoothing != 1:
                    loss = (1.0 - smoothing) * wt * ((st.shift - <double>row[t]) + log(st.sum))
                if smoothing != 0:
                    loss += smoothing / c * _row_nll_sum(row, c, weight, st)
            if row_loss != NULL:
                row_loss[i] = <floating>loss
            loss_sum += loss
            weight_sum += wt
        g0 += SMALL_GROUP
    loss_out[0] = loss_sum
    weight_out[0] = weight_sum


def index_loss(const floating[:, :] x, const intp_t[::1] target, const double[::1] weight,
               intp_t ignore_index, double smoothing, bint log_probs, floating[::1] row_loss,
               int nthreads):
    """Cross-entropy of logits (or, with log_probs, NLL of log-probabilities) and class indices.

    Returns (sum of row losses, sum of the weights of the non-ignored rows, first row whose
    label is out of range or -1). Fills row_loss (ignored rows 0) unless it is None.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    # An NLL row costs one load: count its blocks in rows, not in logits.
    cdef Py_ssize_t rows = BLOCK_ELEMENTS if log_probs else _block_rows(c)
    cdef Py_ssize_t nblocks = (n + rows - 1) // rows
    cdef _Partials part = _Partials(nblocks)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef floating *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    cdef xent_lse_state *states = NULL
    cdef bint small
    if n == 0:
        return 0.0, 0.0, -1
    if not log_probs and _split_rows(c):
        states = _split_lse(x, nthreads)
    small = not log_probs and states == NULL and _small_rows(x)
    try:
        with nogil:
            for b in prange(nblocks, schedule="dynamic",
                            num_threads=_threads_for(nthreads, nblocks)):
                _index_block(_row(x, 0), x.strides[0], c, 0, small, target, w, ignore_index,
                             smoothing, log_probs, states, out, b * rows,
                             min(n, (b + 1) * rows), &part.loss[b], &part.weight[b],
                             &part.bad[b])
    finally:
        free(states)
    return part.combine()


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
    cdef _Partials part = _Partials(nblocks)
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
                             &part.loss[b], &part.weight[b], &part.bad[b])
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


# ---- evaluation: loss, rank and entropy per row, summed in an order fixed by the row index ---

cdef enum:
    # columns of evaluate_rows' values: what evaluate sums in float64
    EVAL_LOSS = 0       # w[t] * (-log_softmax(x)[t])
    EVAL_WEIGHT = 1     # w[t]
    EVAL_ENTROPY = 2    # entropy of softmax(x), nats
    EVAL_FIELDS = 3


def evaluate_fields():
    """Number of float64 columns evaluate_rows writes per row."""
    return EVAL_FIELDS


def evaluate_rows(const floating[:, :] x, const intp_t[::1] target, const double[::1] weight,
                  intp_t ignore_index, double[:, ::1] values, intp_t[::1] rank, int nthreads):
    """One read of each row: values[i] = (w[t] * loss, w[t], entropy), rank[i] = the count of
    logits not <= the target's (strictly greater, or NaN).

    Ignored rows get values 0 and rank -1. Labels must be in range (checked by the caller).
    Each row's results depend on that row only, so they are the same on any thread count.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    cdef intp_t t
    cdef const floating *row
    cdef xent_eval_state st
    cdef double wt, log_sum
    if n == 0:
        return
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            t = target[i]
            if t == ignore_index:
                values[i, EVAL_LOSS] = 0
                values[i, EVAL_WEIGHT] = 0
                values[i, EVAL_ENTROPY] = 0
                rank[i] = -1
                continue
            row = _row(x, i)
            st = xent_eval_init()
            kern.row_evaluate(row, c, row[t], &st)
            wt = weight[t] if weight is not None else 1.0
            log_sum = log(st.sum)
            # as _index_block: (shift - x_t) + log(sum), so huge logits keep their differences
            values[i, EVAL_LOSS] = wt * ((st.shift - <double>row[t]) + log_sum)
            values[i, EVAL_WEIGHT] = wt
            values[i, EVAL_ENTROPY] = log_sum - st.xlogit / st.sum
            rank[i] = st.rank


def group_sums(const double[:, ::1] values, Py_ssize_t row0, Py_ssize_t group,
               double[::1] carry, double[:, ::1] out):
    """Add rows row0, row0 + 1, ... (global indices) one by one into carry; at each multiple
    of group, write carry out as one finished group sum and restart it at 0.

    out needs len(values) // group + 1 rows; returns how many it filled. A group's sum is
    thus always the sequential sum of its rows from 0, however its rows arrive split.
    """
    cdef Py_ssize_t n = values.shape[0], nf = values.shape[1], i, f, k = 0
    with nogil:
        for i in range(n):
            for f in range(nf):
                carry[f] += values[i, f]
            if (row0 + i + 1) % group == 0:
                for f in range(nf):
                    out[k, f] = carry[f]
                    carry[f] = 0
                k += 1
    return k


def add_in_order(const double[:, ::1] rows, double[::1] total):
    """total += rows[0], then rows[1], ...: one fixed order of addition."""
    cdef Py_ssize_t i, f
    with nogil:
        for i in range(rows.shape[0]):
            for f in range(rows.shape[1]):
                total[f] += rows[i, f]


cdef void _ce_prob_block(const floating[:, :] x, const floating[:, :] p, const double *weight,
                         double smoothing, floating *row_loss, Py_ssize_t r0, Py_ssize_t r1,
                         double *loss_out) noexcept nogil:
    cdef Py_ssize_t i, c = x.shape[1]
    cdef const floating *row
    cdef xent_lse_state st
    cdef double loss, mass, loss_sum = 0
    for i in range(r0, r1):
        row = _row(x, i)
        st = _row_lse(row, c)
        loss = _row_nll_dot(row, _row(p, i), c, weight, 1.0 - smoothing, smoothing / c, st,
                            &mass)
        if row_loss != NULL:
            row_loss[i] = <floating>loss
        loss_sum += loss
    loss_out[0] = loss_sum


def probability_loss(const floating[:, :] x, const floating[:, :] p,
                       const double[::1] weight, double smoothing, floating[::1] row_loss,
                       int nthreads):
    """Cross-entropy with probability targets; returns the sum of the row losses."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef _Partials part = _Partials(nblocks)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef floating *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    if n == 0:
        return 0.0
    with nogil:
        for b in prange(nblocks, schedule="dynamic",
                        num_threads=_threads_for(nthreads, nblocks)):
            _ce_prob_block(x, p, w, smoothing, out, b * rows, min(n, (b + 1) * rows),
                           &part.loss[b])
    return part.combine()[0]


# ---- gradients of the cross-entropy ----------------------------------------------------------

def index_weight_total(const intp_t[::1] target, const double[::1] weight, intp_t ignore_index,
                       Py_ssize_t n_classes):
    """(sum of w[t] over the non-ignored rows, first out-of-range row or -1), in row order.

    The mean's denominator, needed before a gradient pass can scale its rows.
    """
    cdef Py_ssize_t i, bad = -1
    cdef intp_t t
    cdef double total = 0
    with nogil:
        for i in range(target.shape[0]):
            t = target[i]
            if t == ignore_index:
                continue
            if t < 0 or t >= n_classes:
                bad = i
                break
            total += weight[t] if weight is not None else 1.0
    return total, bad


cdef inline double _row_g(const double[::1] grad_rows, Py_ssize_t i) noexcept nogil:
    return grad_rows[i] if grad_rows is not None else 1.0


cdef void _index_grad_block(const floating[:, :] x, const intp_t[::1] target,
                            const double *weight, double weight_total, intp_t ignore_index,
                            double smoothing, double scale, const double[::1] grad_rows,
                            const xent_lse_state *states, floating *row_loss,
                            floating[:, :] grad, Py_ssize_t r0, Py_ssize_t r1,
                            double *loss_out, double *weight_out) noexcept nogil:
    cdef Py_ssize_t i, k, g0, c = x.shape[1]
    cdef intp_t t
    cdef const floating *row
    cdef floating *grow
    cdef xent_lse_state st
    cdef xent_lse_state group[SMALL_GROUP]
    # as _index_block does, so that the losses are the same, bit for bit
    cdef bint small = states == NULL and _small_rows(x)
    cdef double wt, x_t, g, p_t, loss, log_sum, loss_sum = 0, weight_sum = 0
    g0 = r0
    while g0 < r1:
        if small:
            _group_lse(_row(x, g0), x.strides[0] // <Py_ssize_t>sizeof(floating),
                       min(SMALL_GROUP, r1 - g0), c, group)
        for i in range(g0, min(g0 + SMALL_GROUP, r1)):
            t = target[i]
            grow = _out_row(grad, i)
            if t == ignore_index or t < 0 or t >= c:   # out of range: raised by the caller
                for k in range(c):
                    grow[k] = 0
                if row_loss != NULL:
                    row_loss[i] = 0
                continue
            row = _row(x, i)
            wt = weight[t] if weight != NULL else 1.0
            x_t = row[t]   # read before the gradient may overwrite the row (grad is x)
            if states != NULL:
                st = states[i]
            elif small:
                st = group[i - g0]
            else:
                st = _row_lse(row, c)
            log_sum = log(st.sum)
            loss = 0
            if smoothing != 1:
                loss = (1.0 - smoothing) * wt * ((st.shift - x_t) + log_sum)
            if smoothing != 0:
                loss += smoothing / c * _row_nll_sum(row, c, weight, st)
            if row_loss != NULL:
                row_loss[i] = <floating>loss
            loss_sum += loss
            weight_sum += wt
            # d loss / d x_k = g ((1-eps) w_t (p_k - [k = t]) + eps/C (W p_k - w_k))
            g = scale * _row_g(grad_rows, i)
            kern.row_softmax_grad(
                row, c, st.shift, log_sum,
                g * ((1.0 - smoothing) * wt + smoothing / c * weight_total), weight,
                g * smoothing / c, grow)
            # the target's entry again, in double: p_t - 1 cancels, so round once
            p_t = exp((x_t - st.shift) - log_sum)
            grow[t] = <floating>(g * ((1.0 - smoothing) * wt * (p_t - 1.0)
                                      + smoothing / c * (weight_total * p_t - wt)))
        g0 += SMALL_GROUP
    loss_out[0] = loss_sum
    weight_out[0] = weight_sum


def index_loss_grad(const floating[:, :] x, const intp_t[::1] target, const double[::1] weight,
                    intp_t ignore_index, double smoothing, double scale,
                    const double[::1] grad_rows, floating[::1] row_loss, floating[:, :] grad,
                    int nthreads):
    """Cross-entropy with class indices and its gradient with respect to the logits.

    grad (N, C) may be x itself. Row i's gradient is scaled by scale * grad_rows[i]
    (grad_rows None: 1). Labels must have been checked (index_weight_total). Returns
    (sum of row losses, sum of the weights of the non-ignored rows).
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef _Partials part = _Partials(nblocks)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef floating *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    cdef double weight_total = c
    if n == 0:
        return 0.0, 0.0
    if weight is not None:
        weight_total = 0
        for b in range(c):
            weight_total += weight[b]
    cdef xent_lse_state *states = _split_lse(x, nthreads) if _split_rows(c) else NULL
    try:
        with nogil:
            for b in prange(nblocks, schedule="dynamic",
                            num_threads=_threads_for(nthreads, nblocks)):
                _index_grad_block(x, target, w, weight_total, ignore_index, smoothing, scale,
                                  grad_rows, states, out, grad, b * rows,
                                  min(n, (b + 1) * rows), &part.loss[b], &part.weight[b])
    finally:
        free(states)
    loss, weight_sum, _ = part.combine()
    return loss, weight_sum


cdef void _prob_grad_block(const floating[:, :] x, const floating[:, :] p, const double *weight,
                           double smoothing, double scale, const double[::1] grad_rows,
                           floating *row_loss, floating[:, :] grad, Py_ssize_t r0,
                           Py_ssize_t r1, double *loss_out) noexcept nogil:
    cdef Py_ssize_t i, c = x.shape[1]
    cdef const floating *row
    cdef const floating *prow
    cdef xent_lse_state st
    cdef double loss, mass, g, loss_sum = 0
    for i in range(r0, r1):
        row = _row(x, i)
        prow = _row(p, i)
        st = _row_lse(row, c)
        loss = _row_nll_dot(row, prow, c, weight, 1.0 - smoothing, smoothing / c, st, &mass)
        if row_loss != NULL:
            row_loss[i] = <floating>loss
        loss_sum += loss
        # d loss / d x_k = g (sum_j w_j q_j p_k - w_k q_k)
        g = scale * _row_g(grad_rows, i)
        kern.row_softmax_grad_prob(row, prow, c, st.shift, log(st.sum), g * mass,
                                               g, 1.0 - smoothing, smoothing / c, weight,
                                               _out_row(grad, i))
    loss_out[0] = loss_sum


def probability_loss_grad(const floating[:, :] x, const floating[:, :] p,
                          const double[::1] weight, double smoothing, double scale,
                          const double[::1] grad_rows, floating[::1] row_loss,
                          floating[:, :] grad, int nthreads):
    """Cross-entropy with probability targets and its gradient; grad may be x (never p)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef _Partials part = _Partials(nblocks)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef floating *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    if n == 0:
        return 0.0
    with nogil:
        for b in prange(nblocks, schedule="dynamic",
                        num_threads=_threads_for(nthreads, nblocks)):
            _prob_grad_block(x, p, w, smoothing, scale, grad_rows, out, grad, b * rows,
                             min(n, (b + 1) * rows), &part.loss[b])
    return part.combine()[0]


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
                                                                    log(st.sum))


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
