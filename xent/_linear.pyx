# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Cython drivers of the fused linear cross-entropy: logits computed tile by tile, never whole.

A tile is the (rows x columns) block of ``hidden @ weight.T (+ bias)`` for ROW_BLOCK rows of
hidden and VOCAB_TILE rows of weight. One single-threaded BLAS gemm computes it into a buffer
owned by the thread, and the row kernels (xent/src) fold it into each row's online
log-sum-exp state (or turn it into the gradient's tile) while it is still in cache.

The Python layer (xent/linear.py) has checked every argument and keeps the process's BLAS on
one thread around these calls; the drivers trust what they are given.

Determinism: the tiling (ROW_BLOCK, VOCAB_TILE) depends on nothing but the shapes, every tile
is computed by one single-threaded gemm call on the same operands, and every sum runs over
tiles in a fixed order. Which thread computes a tile never changes a bit of the result.

- ``forward``: threads take pieces of work, a block of rows x a stretch of the vocabulary
  (stretches only when there are fewer than 32 blocks: ``vocab_chunks``, a function of the
  shapes). Each row's (max, sum-exp) state folds the stretch's tiles in order, and the
  stretches' states are merged in order afterwards.
- ``gradient``: chunks of rows (their whole rows x V block of logits in one buffer, the rows
  set by V and the dtype), in order; per chunk three gemms: the logits (threads take
  vocabulary tiles), d loss / d logits in place and grad_weight[group] (+)= G[:, group]^T h
  (threads take groups of eight vocabulary tiles: no two write the same memory),
  grad_hidden = G W (threads take stretches of H).

The log-sum-exp state of a tile is the row kernels' (xent_lse_state: the largest terms apart
from the rest), merged in tile order, so forward and gradient give the same bits. Between two
pieces of work the caller's thread takes the GIL back for a moment to run the signal handlers
(Ctrl-C); the drivers raise once every thread has stopped, their scratch freed.
"""

import threading

cimport cython
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport exp, fabs, log, tanh
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport numpy as cnp

cnp.import_array()

from libc.stdint cimport int64_t, uintptr_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

from xent cimport _kernel_api as kern
from xent._kernel_types cimport (xent_lse_init, xent_lse_log_sum, xent_lse_merge, xent_lse_state,
                                 xent_lse_softmax_exponent,
                                 xent_lse_value)
from xent._table cimport kernel_table

# The instruction set in use: xent._table's, which this extension shares (no copy to sync);
# set_isa stays importable from here for old callers, and switches every extension.
from xent._table import current_isa, set_isa

# This extension's pointer to the one kernel table (it compiles no kernel of its own).
kern.xent_bind_table(kernel_table())

cdef enum:
    # Rows of hidden per block and vocabulary entries per tile: a float32 tile of logits is
    # 1024 x 512 x 4 = 2 MiB, in a core's L2 (or L3) between the gemm that writes it and the
    # row kernels that read it. Fixed: the results depend on them, never on threads.
    # The BLAS packs a tile of weight once per gemm, so once per block of rows: the weight
    # is read from memory N / ROW_BLOCK times. Packing took 17% of the forward's time with
    # 256 rows, 10% with 512; with 1024 instead of 512, the weight's packing fell from 6.2%
    # to 3.5% of the samples and the forward from 1.22x to 1.17x a GEMM of the same shape
    # (perf and medians of interleaved processes, 4096 x 1024 x 32000 float32, Intel Xeon);
    # 2048 gave no more. The gemm's time (2 x 1024 x 512 x H flops) dwarfs the row kernels'
    # reading of the tile from L3 where it does not fit in L2.
    ROW_BLOCK = 1024
    VOCAB_TILE = 512


def tiling():
    """(rows per block, vocabulary entries per tile): the fixed tiling of every call."""
    return ROW_BLOCK, VOCAB_TILE


# ---- one tile of logits ---------------------------------------------------------------------

# The gemms the drivers call: scipy's (scipy.linalg.cython_blas) unless xent/_blas.py chose
# another OpenBLAS of the process (use_gemm): its Fortran sgemm_ / dgemm_, with 32-bit or (an
# ILP64 build, as numpy's) 64-bit integers.
ctypedef void (*sgemm32_t)(char *, char *, int *, int *, int *, float *, float *, int *,
                           float *, int *, float *, float *, int *) noexcept nogil
ctypedef void (*dgemm32_t)(char *, char *, int *, int *, int *, double *, double *, int *,
                           double *, int *, double *, double *, int *) noexcept nogil
ctypedef void (*sgemm64_t)(char *, char *, int64_t *, int64_t *, int64_t *, float *, float *,
                           int64_t *, float *, int64_t *, float *, float *,
                           int64_t *) noexcept nogil
ctypedef void (*dgemm64_t)(char *, char *, int64_t *, int64_t *, int64_t *, double *,
                           double *, int64_t *, double *, int64_t *, double *, double *,
                           int64_t *) noexcept nogil

cdef sgemm32_t _sgemm32 = <sgemm32_t>sgemm
cdef dgemm32_t _dgemm32 = <dgemm32_t>dgemm
cdef sgemm64_t _sgemm64 = NULL
cdef dgemm64_t _dgemm64 = NULL
cdef bint _ilp64 = False


def use_gemm(uintptr_t sgemm_address=0, uintptr_t dgemm_address=0, bint ilp64=False):
    """Make the drivers call the BLAS at these addresses (a library's Fortran sgemm_ and
    dgemm_; ilp64: its integers are 64-bit); with no address, scipy's again. Only between
    calls (xent/_blas.py holds its lock around it)."""
    global _sgemm32, _dgemm32, _sgemm64, _dgemm64, _ilp64
    if (sgemm_address == 0) != (dgemm_address == 0):
        raise ValueError("use_gemm: give both addresses, or neither")
    _sgemm32, _dgemm32 = <sgemm32_t>sgemm, <dgemm32_t>dgemm
    _sgemm64, _dgemm64, _ilp64 = NULL, NULL, False
    if sgemm_address == 0:
        return
    if ilp64:
        _sgemm64, _dgemm64 = <sgemm64_t>sgemm_address, <dgemm64_t>dgemm_address
        _ilp64 = True
    else:
        _sgemm32, _dgemm32 = <sgemm32_t>sgemm_address, <dgemm32_t>dgemm_address


cdef inline void _gemm(char *transa, char *transb, int m, int n, int k, floating alpha,
                       const floating *a, int lda, const floating *b, int ldb, floating beta,
                       floating *c, int ldc) noexcept nogil:
    """Column-major C = alpha op(A) op(B) + beta C (BLAS's own convention)."""
    cdef int64_t m8 = m, n8 = n, k8 = k, lda8 = lda, ldb8 = ldb, ldc8 = ldc
    if _ilp64:
        if floating is float:
            _sgemm64(transa, transb, &m8, &n8, &k8, &alpha, <float *>a, &lda8, <float *>b,
                     &ldb8, &beta, c, &ldc8)
        else:
            _dgemm64(transa, transb, &m8, &n8, &k8, &alpha, <double *>a, &lda8, <double *>b,
                     &ldb8, &beta, c, &ldc8)
    elif floating is float:
        _sgemm32(transa, transb, &m, &n, &k, &alpha, <float *>a, &lda, <float *>b, &ldb,
                 &beta, c, &ldc)
    else:
        _dgemm32(transa, transb, &m, &n, &k, &alpha, <double *>a, &lda, <double *>b, &ldb,
                 &beta, c, &ldc)


cdef inline void _softcap_row(floating *z, Py_ssize_t n, double cap, floating *scratch,
                              floating *slope) noexcept nogil:
    """z = cap tanh(z / cap) in place; slope (if not NULL) = 1 - tanh^2, the derivative."""
    cdef Py_ssize_t j
    cdef floating y, t, e, y2
    cdef floating inv = <floating>(1.0 / cap), c = <floating>cap
    if floating is float:
        # tanh from the vectorised exp: tanh|y| = (1 - e) / (1 + e), e = exp(-2|y|); below
        # |y| = 1/16, where 1 - e would cancel, a Taylor series accurate to 1e-11.
        for j in range(n):
            scratch[j] = -2 * fabs(z[j] * inv)
        kern.exp_array(scratch, n, scratch)
        for j in range(n):
            y = z[j] * inv
            e = scratch[j]
            t = (1 - e) / (1 + e)
            if y < 0:
                t = -t
            if fabs(y) < 0.0625:
                y2 = y * y
                t = y * (1 + y2 * (<float>(-1.0 / 3) + y2 * (<float>(2.0 / 15)
                                                              + y2 * <float>(-17.0 / 315))))
            if y != y:
                t = y
            z[j] = c * t
            if slope != NULL:
                slope[j] = 1 - t * t
    else:
        for j in range(n):
            t = tanh(z[j] * inv)
            z[j] = c * t
            if slope != NULL:
                slope[j] = 1 - t * t


cdef void _logits_tile(const floating *hidden, Py_ssize_t ldh, const floating *weight,
                       Py_ssize_t ldw, const floating *bias, Py_ssize_t hdim,
                       Py_ssize_t r0, Py_ssize_t nrows, Py_ssize_t v0, Py_ssize_t ncols,
                       double softcap, floating *tile, floating *scratch,
                       floating *slope) noexcept nogil:
    """tile[i, j] = logit of row r0 + i, class v0 + j (rows of ncols, contiguous)."""
    cdef Py_ssize_t i
    cdef floating beta = 0
    if bias != NULL:
        for i in range(nrows):
            memcpy(tile + i * ncols, bias + v0, ncols * sizeof(floating))
        beta = 1
    # Row-major tile (nrows x ncols) = hidden_rows @ weight_rows.T is, column-major,
    # tile^T (ncols x nrows) = weight_rows (as H x ncols, transposed) x hidden_rows^T.
    _gemm(b"T", b"N", <int>ncols, <int>nrows, <int>hdim, <floating>1,
          weight + v0 * ldw, <int>ldw, hidden + r0 * ldh, <int>ldh, beta, tile, <int>ncols)
    if softcap > 0:
        for i in range(nrows):
            _softcap_row(tile + i * ncols, ncols, softcap, scratch,
                         slope + i * ncols if slope != NULL else NULL)


cdef inline void _row_lse(const floating *x, Py_ssize_t n, xent_lse_state *st) noexcept nogil:
    kern.row_lse(x, n, st)


cdef inline Py_ssize_t _min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef struct Problem:
    # The operands, as raw pointers: hidden (n x hdim, row stride ldh), weight (vocab x hdim,
    # row stride ldw), bias (vocab,) or NULL, target (n,), each row's statistics (n x 4).
    const void *hidden
    const void *weight
    const void *bias
    Py_ssize_t ldh, ldw, n, hdim, vocab
    const Py_ssize_t *target
    double softcap          # 0: none
    bint want_sum           # forward: also sum each row's logits (label smoothing)
    double *stats           # per row: shift, sum-exp, target logit, sum of logits
    # gradient: per-row factor a_i (0 for ignored rows) and the smoothing share eps / V
    const double *row_scale
    double keep             # 1 - eps: the weight of the target's one-hot
    double spread           # eps / V
    void *grad_hidden       # n x hdim, contiguous
    void *grad_weight       # vocab x hdim, contiguous
    double *grad_bias       # vocab, or NULL
    # z-loss and return_stats (xent/linear.py's z_loss=, return_stats=)
    double z_loss           # z: the softmax's share of a row's gradient is 1 + 2 z lse
    double *extra           # per row: sum_j exp(z_j - shift) (z_j - shift), argmax; or NULL


cdef Problem _problem(const floating[:, :] hidden, const floating[:, :] weight, bias,
                      const Py_ssize_t[::1] target, double softcap,
                      double[:, ::1] row_stats) except *:
    cdef Problem p
    cdef const floating[::1] bias_view
    memset(&p, 0, sizeof(Problem))
    p.hidden = &hidden[0, 0]
    p.weight = &weight[0, 0]
    p.ldh = hidden.strides[0] // sizeof(floating)
    p.ldw = weight.strides[0] // sizeof(floating)
    p.n, p.hdim, p.vocab = hidden.shape[0], hidden.shape[1], weight.shape[0]
    p.target = &target[0]
    p.softcap = softcap
    p.stats = &row_stats[0, 0]
    if bias is not None:
        bias_view = bias
        p.bias = &bias_view[0]
    return p


cdef inline void _tile_of(const Problem *p, Py_ssize_t r0, Py_ssize_t nrows, Py_ssize_t v0,
                          Py_ssize_t ncols, floating *tile, floating *scratch,
                          floating *slope) noexcept nogil:
    _logits_tile(<const floating *>p.hidden, p.ldh, <const floating *>p.weight, p.ldw,
                 <const floating *>p.bias, p.hdim, r0, nrows, v0, ncols, p.softcap, tile,
                 scratch, slope)


# Per-thread scratch of the forward: a tile and a scratch row (the softcap's exp).
cdef enum:
    TILE = ROW_BLOCK * VOCAB_TILE
    SCRATCH_PER_THREAD = TILE + VOCAB_TILE


cdef void *_scratch(int threads, size_t itemsize) except NULL:
    cdef void *buf = malloc(threads * SCRATCH_PER_THREAD * itemsize)
    if buf == NULL:
        raise MemoryError("linear_cross_entropy: no memory for the per-thread tiles")
    return buf


cdef inline int _threads_for(int nthreads, Py_ssize_t nwork) noexcept nogil:
    if nwork < nthreads:
        return <int>nwork if nwork > 0 else 1
    return nthreads


# ---- forward: per-row log-sum-exp, target logit and logit sum --------------------------------

def forward(const floating[:, :] hidden, const floating[:, :] weight, bias,
            const Py_ssize_t[::1] target, double softcap, bint want_sum,
            double[:, ::1] row_stats, int nthreads, row_extra=None, log_sum=None):
    """Per row i: row_stats[i] = (shift, sum-exp, target logit, sum of logits).

    hidden (N, H) and weight (V, H) have contiguous rows and any row stride (at least H);
    bias is None or a contiguous (V,) array. target[i] outside [0, V) picks up nothing (the
    target logit stays NaN). The sum of logits is only computed when want_sum. log_sum (N,),
    unless None: log(sum-exp) per row from the ties/rest state of the row kernels, which keeps
    the digits of a confident row's loss log1p(rest).

    row_extra (N, 2), unless None: per row the sum sum_j exp(z_j - shift) (z_j - shift) at the
    final shift (the entropy of the softmax is log(sum-exp) - that / sum-exp) and the index of
    the largest logit (the first, if tied).

    Between two pieces of work the caller's thread takes the GIL back for a moment to run the
    signal handlers: a KeyboardInterrupt raises within a piece's time (a fraction of a
    second), the scratch freed. Memory: one tile and a scratch row per thread, and per row and
    stretch of the vocabulary a log-sum-exp state (and 4 doubles past the first stretch).
    """
    cdef Problem p = _problem(hidden, weight, bias, target, softcap, row_stats)
    cdef double[:, ::1] extra_view
    cdef double[::1] log_sum_view
    p.want_sum = want_sum
    if row_extra is not None:
        extra_view = row_extra
        p.extra = &extra_view[0, 0]
    cdef double *log_sum_out = NULL
    if log_sum is not None:
        log_sum_view = log_sum
        log_sum_out = &log_sum_view[0]
    cdef Py_ssize_t nblocks = (p.n + ROW_BLOCK - 1) // ROW_BLOCK
    cdef Py_ssize_t ntiles = (p.vocab + VOCAB_TILE - 1) // VOCAB_TILE
    cdef Py_ssize_t nchunks = _vocab_chunks(nblocks, ntiles), item, blk
    cdef Py_ssize_t nitems = nblocks * nchunks
    cdef int threads = _threads_for(nthreads, nitems)
    cdef volatile int stop = 0
    cdef bint watch = _watch_signals()
    cdef Pieces pieces
    memset(&pieces, 0, sizeof(Pieces))
    pieces.nchunks, pieces.ntiles = nchunks, ntiles
    pieces.stats = p.stats
    pieces.extra = p.extra
    pieces.log_sum = log_sum_out
    cdef floating *scratch = NULL
    try:
        scratch = <floating *>_scratch(threads, sizeof(floating))
        pieces.states = <xent_lse_state *>_alloc(nchunks * p.n * sizeof(xent_lse_state))
        if nchunks > 1:
            pieces.stats = <double *>_alloc(nchunks * p.n * 4 * sizeof(double))
            if p.extra != NULL:
                pieces.extra = <double *>_alloc(nchunks * p.n * 2 * sizeof(double))
        with nogil:
            for item in prange(nitems, num_threads=threads, schedule="dynamic"):
                if not _stopped(&stop, threadid(), watch):
                    _forward_piece(&p, &pieces, item // nchunks, item % nchunks,
                                   scratch + threadid() * SCRATCH_PER_THREAD)
        if stop:
            _raise_pending()
        with nogil:
            for blk in prange(nblocks, num_threads=_threads_for(threads, nblocks),
                              schedule="static"):
                _merge_block(&p, &pieces, blk)
    finally:
        free(scratch)
        free(pieces.states)
        if nchunks > 1:
            free(pieces.stats)
            if p.extra != NULL:
                free(pieces.extra)


cdef enum:
    # A call is cut into at least this many pieces (a block of rows x a stretch of the
    # vocabulary) when the vocabulary is long enough, so that few rows still keep many threads
    # busy. Fixed: the cut depends on the shapes alone, never on the thread count.
    MIN_PIECES = 32


cdef inline Py_ssize_t _vocab_chunks(Py_ssize_t nblocks, Py_ssize_t ntiles) noexcept nogil:
    """Stretches of the vocabulary each block of rows is cut into (a function of the shapes)."""
    cdef Py_ssize_t chunks = (MIN_PIECES + nblocks - 1) // nblocks
    return chunks if chunks < ntiles else ntiles


def vocab_chunks(Py_ssize_t n, Py_ssize_t vocab):
    """Stretches of the vocabulary the forward pass cuts each block of rows into."""
    return _vocab_chunks((n + ROW_BLOCK - 1) // ROW_BLOCK, (vocab + VOCAB_TILE - 1) // VOCAB_TILE)


cdef void *_alloc(size_t nbytes) except NULL:
    cdef void *buf = malloc(nbytes if nbytes > 0 else 1)
    if buf == NULL:
        raise MemoryError(f"linear_cross_entropy: no memory for {nbytes} bytes of partials")
    return buf


cdef extern from "Python.h":
    # Declared without an exception value: a handler's exception stays set, for _raise_pending.
    int _check_signals "PyErr_CheckSignals"()


cdef bint _stopped(volatile int *stop, int tid, bint watch) noexcept nogil:
    """Whether the threads must stop taking work: between two of its pieces of work, thread 0
    (the caller's thread) takes the GIL back for a moment and runs the signal handlers; once
    one raised (KeyboardInterrupt on Ctrl-C), every thread stops at its next piece. Only when
    watch: Python runs its handlers in the main thread alone, so a call from another thread
    never waits for the GIL here."""
    if watch and tid == 0 and not stop[0]:
        with gil:
            if _check_signals() != 0:
                stop[0] = 1
    return stop[0] != 0


cdef bint _watch_signals():
    """Whether the calling thread is the main thread, the one that runs signal handlers."""
    return threading.current_thread() is threading.main_thread()


cdef int _raise_pending() except -1:
    """Raise the exception a signal handler left set (after the threads have joined)."""
    return -1


cdef struct Pieces:
    # The vocabulary is cut into nchunks stretches of whole tiles. Stretch c of row r keeps
    # its own log-sum-exp state (states[c n + r]) and statistics (stats[(c n + r) 4 ...]);
    # with one stretch, stats is the caller's row_stats.
    Py_ssize_t nchunks, ntiles
    double *stats
    xent_lse_state *states
    double *extra   # return_stats: stretch c of row r at extra[(c n + r) 2 ...], or NULL
    double *log_sum  # per row, or NULL


cdef void _forward_piece(const Problem *p, const Pieces *pieces, Py_ssize_t blk, Py_ssize_t c,
                         floating *buf) noexcept nogil:
    """Rows blk * ROW_BLOCK.. against the tiles of stretch c: their states and statistics."""
    cdef Py_ssize_t r0 = blk * ROW_BLOCK
    cdef Py_ssize_t nrows = _min(ROW_BLOCK, p.n - r0)
    cdef Py_ssize_t first_tile = c * pieces.ntiles // pieces.nchunks
    cdef Py_ssize_t end_tile = (c + 1) * pieces.ntiles // pieces.nchunks
    cdef Py_ssize_t i, j, v0, ncols, t, tile_index
    cdef floating *tile = buf
    cdef double *stats = pieces.stats + 4 * (c * p.n + r0)
    cdef xent_lse_state *states = pieces.states + c * p.n + r0
    cdef double *extra = pieces.extra + 2 * (c * p.n + r0) if pieces.extra != NULL else NULL
    cdef floating *row
    cdef double *st
    cdef double total, shift_before, sum_before
    cdef xent_lse_state lse
    for i in range(nrows):
        st = stats + 4 * i
        st[0], st[1], st[2], st[3] = -INFINITY_, 0.0, NAN_, 0.0
        states[i] = xent_lse_init()
        if extra != NULL:
            extra[2 * i], extra[2 * i + 1] = 0.0, 0.0
    for tile_index in range(first_tile, end_tile):
        v0 = tile_index * VOCAB_TILE
        ncols = _min(VOCAB_TILE, p.vocab - v0)
        _tile_of(p, r0, nrows, v0, ncols, tile, buf + TILE, <floating *>NULL)
        for i in range(nrows):
            row = tile + i * ncols
            st = stats + 4 * i
            shift_before, sum_before = states[i].shift, states[i].sum
            # the tile's own state, merged in tile order: the gradient's pass (gradient())
            # merges the same states in the same order, so both give the same bits
            lse = xent_lse_init()
            _row_lse(row, ncols, &lse)
            if tile_index == first_tile:
                states[i] = lse
            else:
                xent_lse_merge(&states[i], &lse)
            st[0], st[1] = states[i].shift, states[i].sum
            if extra != NULL:
                _fold_extra(row, ncols, v0, shift_before, sum_before, states[i].shift,
                            extra + 2 * i)
            t = p.target[r0 + i] - v0
            if 0 <= t < ncols:
                st[2] = row[t]
            if p.want_sum:
                total = 0
                for j in range(ncols):
                    total += row[j]
                st[3] += total


cdef inline void _fold_extra(const floating *row, Py_ssize_t ncols, Py_ssize_t v0,
                             double shift_before, double sum_before, double shift,
                             double *ex) noexcept nogil:
    """Fold one tile's row into (sum_j e_j (z_j - shift), argmax), the row's shift having
    moved from shift_before (with sum-exp sum_before) to shift."""
    cdef double d, r
    cdef Py_ssize_t j
    if shift > shift_before:
        # sum e (z - s) = r sum e' (z - s') + r (s' - s) sum e', r = exp(s' - s)
        if sum_before != 0:
            d = shift_before - shift
            r = exp(d)
            ex[0] = r * ex[0] + (0.0 if r == 0 else r * d) * sum_before
        for j in range(ncols):   # the new largest logit is in this tile: its first place
            if row[j] == <floating>shift:
                ex[1] = v0 + j
                break
    if shift != -INFINITY_:
        ex[0] += kern.row_xlogit(row, ncols, shift)


cdef inline void _merge_extra(const Problem *p, const Pieces *pieces, Py_ssize_t r,
                              double shift) noexcept nogil:
    """Row r's (xlogit, argmax) from its stretches', the row's merged shift given."""
    cdef Py_ssize_t c
    cdef const xent_lse_state *part
    cdef const double *ex
    cdef double xl = 0, best = -INFINITY_, r_c
    cdef double *out = p.extra + 2 * r
    out[1] = 0
    for c in range(pieces.nchunks):
        part = pieces.states + c * p.n + r
        ex = pieces.extra + 2 * (c * p.n + r)
        if part.sum != 0 and part.shift != -INFINITY_:
            r_c = exp(part.shift - shift)
            if r_c != 0:
                xl += r_c * (ex[0] + (part.shift - shift) * part.sum)
        if part.shift > best:   # strictly: the first stretch holding the maximum wins
            best = part.shift
            out[1] = ex[1]
    out[0] = xl


cdef void _merge_block(const Problem *p, const Pieces *pieces, Py_ssize_t blk) noexcept nogil:
    """Fold the stretches of each row, in stretch order (ties/rest states merged)."""
    cdef Py_ssize_t r0 = blk * ROW_BLOCK
    cdef Py_ssize_t nrows = _min(ROW_BLOCK, p.n - r0)
    cdef Py_ssize_t i, c, r
    cdef double *st
    cdef const double *part
    cdef xent_lse_state acc
    cdef double total
    for i in range(nrows):
        r = r0 + i
        st = p.stats + 4 * r
        acc = pieces.states[r]
        if pieces.nchunks > 1:
            total = pieces.stats[4 * r + 3]
            st[2] = NAN_
            for c in range(1, pieces.nchunks):
                xent_lse_merge(&acc, &pieces.states[c * p.n + r])
                total += pieces.stats[4 * (c * p.n + r) + 3]
            for c in range(pieces.nchunks):  # the target logit, from its stretch
                part = pieces.stats + 4 * (c * p.n + r)
                if part[2] == part[2]:
                    st[2] = part[2]
            st[0], st[1], st[3] = acc.shift, acc.sum, total
            if p.extra != NULL:
                _merge_extra(p, pieces, r, acc.shift)
        if pieces.log_sum != NULL:
            pieces.log_sum[r] = xent_lse_log_sum(&acc)


cdef extern from *:
    """
    #define XENT_LINEAR_INF ((double)INFINITY)
    #define XENT_LINEAR_NAN ((double)NAN)
    """
    double INFINITY_ "XENT_LINEAR_INF"
    double NAN_ "XENT_LINEAR_NAN"


# ---- the softmax gradient of a row ---------------------------------------------------------

cdef inline void _softmax_grad_row(const floating *x, Py_ssize_t n, double shift,
                                   double log_sum, double a, double b,
                                   floating *out) noexcept nogil:
    kern.row_softmax_grad(x, n, shift, log_sum, a, NULL, b, out)



# ---- gradient in three gemms: a chunk of rows' logits, its softmax gradient, two products ----


# A chunk of rows holds its whole (rows x V) block of logits (then of d loss / d logits) in
# one buffer of at most about this many bytes, and never fewer than ROW_BLOCK rows; the rows
# are a function of V and the dtype alone, never of the thread count, so every gemm call (and
# so every bit of the result) is the same on any number of threads. 128 MiB: 1024 rows of a
# 32 000 float32 vocabulary, enough rows for grad_weight's gemms to run near the BLAS's rate.
# Changed only by tests (set_chunk_bytes), to cut small problems into several chunks.
cdef Py_ssize_t _chunk_bytes = 128 * 1024 * 1024


def set_chunk_bytes(Py_ssize_t nbytes):
    """Set the chunk's byte budget (for tests); returns the previous one."""
    global _chunk_bytes
    previous, _chunk_bytes = _chunk_bytes, nbytes
    return previous


cdef enum:
    # grad_hidden's product is cut into stretches of this many columns of H, so that a call
    # with few rows still keeps every thread busy and no single gemm outlasts a signal check.
    HIDDEN_STRETCH = 256


cdef enum:
    # The gradient's chunks are a multiple of this many rows (not of ROW_BLOCK, the forward's:
    # a large vocabulary's chunk stays within its byte budget: 256 rows of V = 128 256).
    CHUNK_UNIT = 256


def chunk_unit():
    """The gradient's chunks are a multiple of this many rows."""
    return CHUNK_UNIT


def chunk_rows(Py_ssize_t n, Py_ssize_t vocab, Py_ssize_t itemsize):
    """Rows per chunk of the three-gemm gradient: a multiple of CHUNK_UNIT, set by V and the
    dtype so that the chunk's logits take at most about the chunk's byte budget (at least
    CHUNK_UNIT rows), and no more than n rounded up to CHUNK_UNIT."""
    cdef Py_ssize_t rows = _chunk_bytes // max(vocab * itemsize, 1)
    rows = max(CHUNK_UNIT, rows - rows % CHUNK_UNIT)
    return min(rows, max(CHUNK_UNIT, (n + CHUNK_UNIT - 1) // CHUNK_UNIT * CHUNK_UNIT))


cdef struct Chunk:
    # Rows c0 .. c0 + nrows of the problem; z their logits (nrows x V, row stride V), turned
    # into d loss / d logits in place; states the per-(row, tile) log-sum-exp states and
    # sums the per-(row, tile) sums of logits (label smoothing).
    Py_ssize_t c0, nrows, ntiles
    Py_ssize_t nchunks      # stretches of the vocabulary forward() cuts the rows into
    void *z
    xent_lse_state *states
    double *sums
    double *log_sum         # per row of the problem: log(sum-exp), accurate (ties/rest)
    double *exponent        # per row of the chunk: shift + log_sum in two parts (double)
    bint first              # the first chunk: grad_weight is set, not added to


cdef void _chunk_logits(const Problem *p, const Chunk *ch, Py_ssize_t k,
                        floating *scratch) noexcept nogil:
    """Vocabulary tile k: the chunk's logits there (one gemm over all of the chunk's rows, so
    the tile of weight is packed once), and each row's log-sum-exp state of the tile, target
    logit and sum of logits."""
    cdef Py_ssize_t v0 = k * VOCAB_TILE
    cdef Py_ssize_t ncols = _min(VOCAB_TILE, p.vocab - v0)
    cdef Py_ssize_t i, j, t, ld = p.vocab
    cdef floating *strip = <floating *>ch.z + v0
    cdef floating *row
    cdef floating beta = 0
    cdef xent_lse_state st
    cdef double total
    if p.bias != NULL:
        for i in range(ch.nrows):
            memcpy(strip + i * ld, <const floating *>p.bias + v0, ncols * sizeof(floating))
        beta = 1
    _gemm(b"T", b"N", <int>ncols, <int>ch.nrows, <int>p.hdim, <floating>1,
          <const floating *>p.weight + v0 * p.ldw, <int>p.ldw,
          <const floating *>p.hidden + ch.c0 * p.ldh, <int>p.ldh, beta, strip, <int>ld)
    for i in range(ch.nrows):
        row = strip + i * ld
        if p.softcap > 0:
            _softcap_row(row, ncols, p.softcap, scratch, <floating *>NULL)
        st = xent_lse_init()
        kern.row_lse(row, ncols, &st)
        ch.states[i * ch.ntiles + k] = st
        t = p.target[ch.c0 + i] - v0
        if 0 <= t < ncols:
            p.stats[4 * (ch.c0 + i) + 2] = row[t]
        if p.want_sum:
            total = 0
            for j in range(ncols):
                total += row[j]
            ch.sums[i * ch.ntiles + k] = total


cdef void _chunk_merge(const Problem *p, const Chunk *ch, Py_ssize_t i) noexcept nogil:
    """Row i of the chunk: its tiles' states merged as forward() merges them (in tile order
    within each stretch of the vocabulary, then the stretches in order): the same bits."""
    cdef Py_ssize_t k, c, first, end
    cdef xent_lse_state acc, part
    cdef double *st = p.stats + 4 * (ch.c0 + i)
    cdef double total = 0, piece
    acc = xent_lse_init()   # set by the first stretch (ch.nchunks >= 1)
    for c in range(ch.nchunks):
        first = c * ch.ntiles // ch.nchunks
        end = (c + 1) * ch.ntiles // ch.nchunks
        part = ch.states[i * ch.ntiles + first]
        for k in range(first + 1, end):
            xent_lse_merge(&part, &ch.states[i * ch.ntiles + k])
        if c == 0:
            acc = part
        else:
            xent_lse_merge(&acc, &part)
        if p.want_sum:
            piece = 0
            for k in range(first, end):
                piece += ch.sums[i * ch.ntiles + k]
            total = piece if c == 0 else total + piece
    st[0], st[1], st[3] = acc.shift, acc.sum, total
    ch.log_sum[ch.c0 + i] = xent_lse_log_sum(&acc)
    # a double row's softmax entries: their exponent to below their ulp (the kernels' own
    # rows do the same; see xent_lse_softmax_exponent)
    xent_lse_softmax_exponent(&acc, ch.log_sum[ch.c0 + i], &ch.exponent[2 * i],
                              &ch.exponent[2 * i + 1])


cdef enum:
    # grad_weight's gemms take this many vocabulary tiles at once: the BLAS packs the chunk's
    # hidden rows (H x rows) once per gemm, so one gemm per tile packed them V / VOCAB_TILE
    # times per chunk. The gradient of 4096 x 1024 x 32000 float32 took 3.45-3.51 s with one
    # tile per gemm, 3.25-3.35 s with 4 and 3.05-3.18 s with 8 (16: 3.20; medians of
    # interleaved processes, Intel Xeon, 2 threads). Fixed, as every cut: the results depend
    # on the shapes alone.
    GRAD_WEIGHT_TILES = 8


cdef void _chunk_grad_weight(const Problem *p, const Chunk *ch, Py_ssize_t g,
                             floating *slope) noexcept nogil:
    """Group g of GRAD_WEIGHT_TILES vocabulary tiles: the chunk's logits there become
    d loss / d logits (tile by tile), then grad_weight[group] (+)= G[:, group]^T @
    hidden[chunk] in one gemm."""
    cdef Py_ssize_t k0 = g * GRAD_WEIGHT_TILES
    cdef Py_ssize_t k_end = _min(k0 + GRAD_WEIGHT_TILES, ch.ntiles), k
    cdef Py_ssize_t v0 = k0 * VOCAB_TILE
    cdef Py_ssize_t width = _min(GRAD_WEIGHT_TILES * VOCAB_TILE, p.vocab - v0)
    for k in range(k0, k_end):
        _tile_softmax_grad(p, ch, k, slope)
    _gemm(b"N", b"T", <int>p.hdim, <int>width, <int>ch.nrows, <floating>1,
          <const floating *>p.hidden + ch.c0 * p.ldh, <int>p.ldh, <floating *>ch.z + v0,
          <int>p.vocab, <floating>(0 if ch.first else 1),
          <floating *>p.grad_weight + v0 * p.hdim, <int>p.hdim)


cdef void _tile_softmax_grad(const Problem *p, const Chunk *ch, Py_ssize_t k,
                             floating *slope) noexcept nogil:
    """Vocabulary tile k: the chunk's logits there become d loss / d logits in place
    (grad_bias += their column sums)."""
    cdef Py_ssize_t v0 = k * VOCAB_TILE, ld = p.vocab
    cdef Py_ssize_t ncols = _min(VOCAB_TILE, p.vocab - v0)
    cdef Py_ssize_t i, j, t, r
    cdef floating *strip = <floating *>ch.z + v0
    cdef floating *row
    cdef floating y, inv_cap = <floating>(1 / p.softcap) if p.softcap > 0 else 0
    cdef double a, shift, log_sum, zt, share, e_shift, e_sum
    cdef double *gb
    for i in range(ch.nrows):
        r = ch.c0 + i
        row = strip + i * ld
        a = p.row_scale[r]
        if a == 0:
            memset(row, 0, ncols * sizeof(floating))
            continue
        shift, log_sum = p.stats[4 * r], ch.log_sum[r]
        # the softmax's share: 1, or 1 + 2 z lse with a z-loss
        share = 1 + 2 * p.z_loss * (shift + log_sum) if p.z_loss != 0 else 1.0
        t = p.target[r] - v0
        zt = row[t] if 0 <= t < ncols else 0
        if p.softcap > 0:
            # the cap's slope 1 - tanh^2, from the capped logit (cap tanh) it replaces
            for j in range(ncols):
                y = row[j] * inv_cap
                slope[j] = 1 - y * y
        e_shift, e_sum = shift, log_sum
        if floating is double:
            e_shift, e_sum = ch.exponent[2 * i], ch.exponent[2 * i + 1]
        _softmax_grad_row(row, ncols, e_shift, e_sum, a * share, a * p.spread, row)
        if 0 <= t < ncols:
            # where softmax - 1 cancels: in double, from the logit itself
            row[t] = <floating>(a * ((share * exp((zt - shift) - log_sum) - p.keep) - p.spread))
        if p.softcap > 0:
            for j in range(ncols):
                row[j] = row[j] * slope[j]
    if p.grad_bias != NULL:
        gb = p.grad_bias + v0
        for i in range(ch.nrows):
            row = strip + i * ld
            for j in range(ncols):
                gb[j] += row[j]


cdef void _chunk_grad_hidden(const Problem *p, const Chunk *ch, Py_ssize_t s,
                             const floating *dtype_only) noexcept nogil:
    """Stretch s of H: grad_hidden[chunk, stretch] = G @ W[:, stretch], one gemm over all of
    the chunk's rows (the stretch of weight is packed once)."""
    cdef Py_ssize_t h0 = s * HIDDEN_STRETCH
    cdef Py_ssize_t width = _min(HIDDEN_STRETCH, p.hdim - h0)
    # Column-major: gh^T (width x rows) = W[:, stretch]^T (width x V) x G^T (V x rows).
    _gemm(b"N", b"N", <int>width, <int>ch.nrows, <int>p.vocab, <floating>1,
          <const floating *>p.weight + h0, <int>p.ldw, <floating *>ch.z, <int>p.vocab,
          <floating>0, <floating *>p.grad_hidden + ch.c0 * p.hdim + h0, <int>p.hdim)


def gradient(const floating[:, :] hidden, const floating[:, :] weight, bias,
             const Py_ssize_t[::1] target, double softcap, bint want_sum,
             double[:, ::1] row_stats, double[::1] log_sum, const double[::1] row_scale,
             double keep, double spread, floating[:, ::1] grad_hidden,
             floating[:, ::1] grad_weight, grad_bias, int nthreads, double z_loss=0):
    """Row statistics, log(sum-exp) and both gradients in three gemms per chunk of rows.

    For each chunk of chunk_rows(n, V, itemsize) rows, in order: (1) the chunk's logits
    (rows x V) into one buffer, tile by tile, with each tile's log-sum-exp state per row,
    merged in tile order; (2) per group of GRAD_WEIGHT_TILES vocabulary tiles, the logits
    become d loss / d logits in place and grad_weight[group] (+)= G[:, group]^T @
    hidden[chunk]; (3) grad_hidden[chunk] =
    G @ weight, by stretches of H. Every gemm's operands and every sum's
    order depend on the shapes alone: the same bits on any thread count.

    row_stats[i] = (shift, sum-exp, target logit, sum of logits (want_sum)); log_sum[i] =
    log(sum-exp) in the form that keeps a confident row's digits. grad_weight is overwritten
    and grad_bias (float64, or None) must come in zeroed. Between two gemms the caller's thread
    takes the GIL back for a moment to run the signal handlers: a KeyboardInterrupt raises
    within a gemm's time (a fraction of a second), and the scratch is freed. Memory: the chunk's logits (at most 128 MiB, or CHUNK_UNIT rows) and O(rows x V /
    VOCAB_TILE) states.
    """
    cdef Problem p = _problem(hidden, weight, bias, target, softcap, row_stats)
    cdef double[::1] gb_view
    cdef Chunk ch
    p.want_sum = want_sum
    p.row_scale = &row_scale[0]
    p.keep, p.spread, p.z_loss = keep, spread, z_loss
    p.grad_hidden = &grad_hidden[0, 0]
    p.grad_weight = &grad_weight[0, 0]
    if grad_bias is not None:
        gb_view = grad_bias
        p.grad_bias = &gb_view[0]
    cdef Py_ssize_t rows = chunk_rows(p.n, p.vocab, sizeof(floating))
    cdef Py_ssize_t ntiles = (p.vocab + VOCAB_TILE - 1) // VOCAB_TILE
    cdef Py_ssize_t ngroups = (ntiles + GRAD_WEIGHT_TILES - 1) // GRAD_WEIGHT_TILES
    cdef Py_ssize_t nstretch = (p.hdim + HIDDEN_STRETCH - 1) // HIDDEN_STRETCH
    cdef Py_ssize_t item, i
    cdef int threads = nthreads if nthreads > 0 else 1
    cdef volatile int stop = 0
    cdef bint watch = _watch_signals()
    cdef floating *scratch = NULL
    memset(&ch, 0, sizeof(Chunk))
    ch.ntiles = ntiles
    ch.nchunks = _vocab_chunks((p.n + ROW_BLOCK - 1) // ROW_BLOCK, ntiles)
    ch.log_sum = &log_sum[0]
    for i in range(p.n):
        row_stats[i, 2] = NAN_
    try:
        ch.z = _alloc(rows * p.vocab * sizeof(floating))
        ch.states = <xent_lse_state *>_alloc(rows * ntiles * sizeof(xent_lse_state))
        ch.exponent = <double *>_alloc(2 * rows * sizeof(double))
        if want_sum:
            ch.sums = <double *>_alloc(rows * ntiles * sizeof(double))
        scratch = <floating *>_alloc(threads * VOCAB_TILE * sizeof(floating))
        ch.c0 = 0
        while ch.c0 < p.n:
            ch.nrows = _min(rows, p.n - ch.c0)
            ch.first = ch.c0 == 0
            # (1) logits and their log-sum-exp states, by vocabulary tiles
            with nogil:
                for item in prange(ntiles, num_threads=threads, schedule="dynamic"):
                    if not _stopped(&stop, threadid(), watch):
                        _chunk_logits(&p, &ch, item, scratch + threadid() * VOCAB_TILE)
            if stop:
                _raise_pending()
            with nogil:
                for i in prange(ch.nrows, num_threads=threads, schedule="static"):
                    _chunk_merge(&p, &ch, i)
            # (2) d loss / d logits and grad_weight, by groups of vocabulary tiles
            with nogil:
                for item in prange(ngroups, num_threads=threads, schedule="dynamic"):
                    if not _stopped(&stop, threadid(), watch):
                        _chunk_grad_weight(&p, &ch, item, scratch + threadid() * VOCAB_TILE)
            if stop:
                _raise_pending()
            # (3) grad_hidden of the chunk's rows, by stretches of H
            with nogil:
                for item in prange(nstretch, num_threads=threads, schedule="dynamic"):
                    if not _stopped(&stop, threadid(), watch):
                        _chunk_grad_hidden(&p, &ch, item, scratch)
            if stop:
                _raise_pending()
            ch.c0 += ch.nrows
    finally:
        free(ch.z)
        free(ch.states)
        free(ch.exponent)
        free(ch.sums)
        free(scratch)
