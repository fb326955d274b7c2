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
from libc.math cimport INFINITY, NAN, exp, expm1, fabs, log, log1p
from libc.stdint cimport uint16_t
from libc.stdlib cimport free, malloc

cimport numpy as cnp

import numpy as np

cnp.import_array()

ctypedef cnp.intp_t intp_t

from xent cimport _kernel_api as kern
from xent._kernel_types cimport (XENT_SMALL_ROW, xent_dist_sums, xent_eval_init, xent_eval_log_sum,
                                 xent_eval_state, xent_lse_init, xent_lse_log_sum, xent_lse_merge,
                                 xent_lse_softmax_exponent,
                                 xent_lse_state, xent_lse_value, xent_exact_sum, xent_exact_init,
                                 xent_exact_add, xent_exact_merge, xent_exact_round,
                                 xent_exact_batch, xent_exact_batch_init, xent_exact_batch_add,
                                 xent_exact_batch_flush, xent_exact_parts, XENT_EXACT_WORDS,
                                 XENT_EVAL_LOSS, XENT_EVAL_WEIGHT, XENT_EVAL_ENTROPY,
                                 XENT_EVAL_LOSS_SQ, XENT_EVAL_WEIGHT_LOSS, XENT_EVAL_WEIGHT_SQ,
                                 XENT_EVAL_ENTROPY_SQ, XENT_EVAL_BRIER, XENT_EVAL_BRIER_SQ,
                                 XENT_EVAL_CONFIDENCE, XENT_EVAL_FIELDS)
from xent._table cimport kernel_table

# The instruction set is chosen by xent._table (which owns the one compiled copy of the
# kernels) and xent._dispatch; they stay importable from here as before.
from xent._table import current_isa, has_openmp, isa_supported, openmp_max_threads, set_isa

# This extension's pointer to the one kernel table, set before any driver can run.
kern.xent_bind_table(kernel_table())

cdef enum:
    # A block holds about this many logits (or one row, if rows are longer).
    BLOCK_ELEMENTS = 32768
    # A row of up to XENT_SMALL_ROW logits (the group kernels') costs about as much as 13
    # more logits: its share of its group's fixed work (one thread, float32, AMD EPYC: 10 ns
    # a row of 2, 15 of 10, 52 of 64). Its block is counted so, in whole groups of 16 rows:
    # blocks of about the same time (20 us) at every width, where a block of 32768 logits
    # was 130 us on rows of 2 (65536 x 2 ran on one thread) and a fixed 8192 logits left
    # rows of 64 with blocks so short that their setup cost 15%.
    SHORT_ROW_EXTRA = 13


# ---- blocks of rows ------------------------------------------------------------------------

def block_rows(Py_ssize_t ncols):
    """Rows per block for rows of ncols entries (depends on nothing else)."""
    return _block_rows(ncols)


cdef inline Py_ssize_t _block_rows(Py_ssize_t ncols) noexcept nogil:
    if ncols >= BLOCK_ELEMENTS:
        return 1
    if ncols <= 1:
        return BLOCK_ELEMENTS
    if ncols <= XENT_SMALL_ROW:
        return BLOCK_ELEMENTS // (ncols + SHORT_ROW_EXTRA) // 16 * 16
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
    # logsumexp(row) = st.shift + xent_lse_log_sum(&st). Losses use the two parts, (shift - x_j) and
    # log(sum), rather than their rounded total, so huge logits keep their small differences.
    cdef xent_lse_state st = xent_lse_init()
    kern.row_lse(row, n, &st)
    return st


cdef inline double _row_nll_sum(const floating *row, Py_ssize_t n, const double *w,
                                xent_lse_state st) noexcept nogil:
    return kern.row_nll_sum(row, n, w, st.shift, xent_lse_log_sum(&st))


cdef inline double _row_nll_dot(const floating *row, const floating *p, Py_ssize_t n,
                                const double *w, double a, double b, xent_lse_state st,
                                double *mass) noexcept nogil:
    return kern.row_nll_dot(row, p, n, w, a, b, st.shift, xent_lse_log_sum(&st), mass)


cdef class _Partials:
    """Per-block partial sums (loss, weight) and the first bad row of each block.

    With exact=True the blocks fill exact_loss and exact_weight (exact sums of their rows'
    values), and combine() returns the exact totals rounded once: the same bits however the
    rows are split into blocks, threads or calls. Otherwise the blocks fill loss and weight,
    added in block order.
    """
    cdef double *loss
    cdef double *weight
    cdef xent_exact_sum *exact_loss
    cdef xent_exact_sum *exact_weight
    cdef Py_ssize_t *bad
    cdef Py_ssize_t nblocks
    cdef bint exact

    def __cinit__(self, Py_ssize_t nblocks, bint exact=False):
        self.nblocks = nblocks
        self.exact = exact
        self.loss = <double *>malloc(max(nblocks, 1) * sizeof(double))
        self.weight = <double *>malloc(max(nblocks, 1) * sizeof(double))
        self.bad = <Py_ssize_t *>malloc(max(nblocks, 1) * sizeof(Py_ssize_t))
        if exact:
            self.exact_loss = <xent_exact_sum *>malloc(max(nblocks, 1) * sizeof(xent_exact_sum))
            self.exact_weight = <xent_exact_sum *>malloc(
                max(nblocks, 1) * sizeof(xent_exact_sum))
        if (self.loss == NULL or self.weight == NULL or self.bad == NULL
                or exact and (self.exact_loss == NULL or self.exact_weight == NULL)):
            raise MemoryError("xent: cannot allocate per-block partial sums")
        # Every slot starts as an empty sum and "no bad row": a driver that fills only the
        # losses (probability targets count rows, not weights) leaves the rest well defined.
        cdef Py_ssize_t b
        for b in range(max(nblocks, 1)):
            self.loss[b] = 0
            self.weight[b] = 0
            self.bad[b] = -1
            if exact:
                xent_exact_init(&self.exact_loss[b])
                xent_exact_init(&self.exact_weight[b])

    def __dealloc__(self):
        free(self.loss)
        free(self.weight)
        free(self.bad)
        free(self.exact_loss)
        free(self.exact_weight)

    cdef tuple combine(self):
        """(sum of losses, sum of weights, first bad row or -1), added in block order."""
        cdef double loss = 0, weight = 0
        cdef Py_ssize_t b, bad = -1
        cdef xent_exact_sum *total_loss
        cdef xent_exact_sum *total_weight
        for b in range(self.nblocks):
            if bad < 0 and self.bad[b] >= 0:
                bad = self.bad[b]
        if self.exact:
            total_loss = &self.exact_loss[0]
            total_weight = &self.exact_weight[0]
            for b in range(1, self.nblocks):
                xent_exact_merge(total_loss, &self.exact_loss[b])
                xent_exact_merge(total_weight, &self.exact_weight[b])
            return xent_exact_round(total_loss), xent_exact_round(total_weight), bad
        for b in range(self.nblocks):
            loss += self.loss[b]
            weight += self.weight[b]
        return loss, weight, bad

    cdef tuple combine_parts(self):
        """As combine() for exact partials, but the two totals as arrays of exact parts
        (xent_exact_parts): the blocks' sums unrounded, for a caller that sums them with other
        calls' parts (xent.dask's row blocks) and rounds once at the end."""
        loss, weight, bad = self.combine()   # merges every block into block 0
        if self.nblocks == 0:
            return np.zeros(1), np.zeros(1), bad
        return _parts(&self.exact_loss[0]), _parts(&self.exact_weight[0]), bad


cdef object _parts(xent_exact_sum *total):
    """The exact sum as an array of the few doubles whose exact sum it is."""
    cdef double[::1] buffer = np.empty(XENT_EXACT_WORDS)
    cdef int count = xent_exact_parts(total, &buffer[0])
    return np.array(buffer[:count])


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


# ---- the drivers, by concern -----------------------------------------------------------------

include "_kernels_rows.pxi"
include "_kernels_losses.pxi"
include "_kernels_half.pxi"
include "_kernels_evaluate.pxi"
include "_kernels_info.pxi"
include "_kernels_divergence.pxi"
include "_kernels_compare.pxi"
include "_kernels_probe.pxi"
