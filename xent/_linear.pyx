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
- ``forward`` with ``grad_hidden``: the same pass also accumulates each row's gradient
  sum_j exp(z_j - shift) W_j over the tiles in order (gemm with beta = 1), rescaled when the
  row's shift grows, as flash attention does.
- ``grad_weight``: threads take vocabulary tiles; a tile's grad_weight (and grad_bias) rows sum
  the row blocks in order. No two threads ever write the same memory.
"""

cimport cython
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport exp, fabs, log, tanh
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport numpy as cnp

cnp.import_array()

from scipy.linalg.cython_blas cimport dgemm, sgemm

from xent cimport _kernel_api as kern
from xent._kernel_types cimport xent_lse_init, xent_lse_merge, xent_lse_state, xent_lse_value
from xent._table cimport kernel_table

# The instruction set in use: xent._table's, which this extension shares (no copy to sync);
# set_isa stays importable from here for old callers, and switches every extension.
from xent._table import current_isa, set_isa

# This extension's pointer to the one kernel table (it compiles no kernel of its own).
kern.xent_bind_table(kernel_table())

cdef enum:
    # Rows of hidden per block and vocabulary entries per tile: a float32 tile of logits is
    # 256 x 512 x 4 = 512 KiB, which stays in a core's L2 between the gemm that writes it and
    # the row kernels that read it. Fixed: the results depend on them, never on threads.
    ROW_BLOCK = 256
    VOCAB_TILE = 512


def tiling():
    """(rows per block, vocabulary entries per tile): the fixed tiling of every call."""
    return ROW_BLOCK, VOCAB_TILE


# ---- one tile of logits ---------------------------------------------------------------------

cdef inline void _gemm(char *transa, char *transb, int m, int n, int k, floating alpha,
                       const floating *a, int lda, const floating *b, int ldb, floating beta,
                       floating *c, int ldc) noexcept nogil:
    """Column-major C = alpha op(A) op(B) + beta C (BLAS's own convention)."""
    if floating is float:
        sgemm(transa, transb, &m, &n, &k, &alpha, <float *>a, &lda, <float *>b, &ldb, &beta,
              c, &ldc)
    else:
        dgemm(transa, transb, &m, &n, &k, &alpha, <double *>a, &lda, <double *>b, &ldb, &beta,
              c, &ldc)


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
    void *smooth_sum        # n x hdim: sum_j slope_ij W_j per row (softcap + smoothing), or NULL
    const double *weight_sum  # hdim: sum_j W_j (smoothing without softcap), or NULL
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


# Per-thread scratch: a tile, a second tile for the softcap's slopes, a scratch row.
cdef enum:
    TILE = ROW_BLOCK * VOCAB_TILE
    SCRATCH_PER_THREAD = 2 * TILE + VOCAB_TILE


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
            double[:, ::1] row_stats, int nthreads, row_scale=None, double keep=1,
            double spread=0, grad_hidden=None, smooth_sum=None, weight_sum=None,
            double z_loss=0, row_extra=None):
    """Per row i: row_stats[i] = (shift, sum-exp, target logit, sum of logits).

    hidden (N, H) and weight (V, H) have contiguous rows and any row stride (at least H);
    bias is None or a contiguous (V,) array. target[i] outside [0, V) picks up nothing (the
    target logit stays NaN). The sum of logits is only computed when want_sum.

    With grad_hidden (N, H), the same pass also computes d loss / d hidden, as flash attention
    does: each row accumulates sum_j exp(z_j - shift) slope_j W_j with gemm, rescaled when
    the row's shift grows, and divides by the sum-exp at the end. row_scale[i] multiplies row
    i's gradient (0: ignored), keep = 1 - eps and spread = eps / V weigh the one-hot and the
    uniform part; the uniform part needs sum_j slope_j W_j: weight_sum (H,) when there is no
    softcap, else smooth_sum (N, H), accumulated here.
    Memory: the per-thread tiles, nothing else.

    z_loss: the gradient's softmax part is multiplied by 1 + 2 z_loss lse per row (the
    z-loss z lse**2 added to the loss). row_extra (N, 2), unless None: per row the sum
    sum_j exp(z_j - shift) (z_j - shift) at the final shift (the entropy of the softmax is
    log(sum-exp) - that / sum-exp) and the index of the largest logit (the first, if tied).
    """
    cdef Problem p = _problem(hidden, weight, bias, target, softcap, row_stats)
    cdef const double[::1] scale_view, wsum_view
    cdef double[:, ::1] extra_view
    cdef floating[:, ::1] gh_view, sm_view
    p.want_sum = want_sum
    p.z_loss = z_loss
    if row_extra is not None:
        extra_view = row_extra
        p.extra = &extra_view[0, 0]
    if grad_hidden is not None:
        scale_view = row_scale
        p.row_scale = &scale_view[0]
        p.keep, p.spread = keep, spread
        gh_view = grad_hidden
        p.grad_hidden = &gh_view[0, 0]
        if smooth_sum is not None:
            sm_view = smooth_sum
            p.smooth_sum = &sm_view[0, 0]
        if weight_sum is not None:
            wsum_view = weight_sum
            p.weight_sum = &wsum_view[0]
    cdef Py_ssize_t nblocks = (p.n + ROW_BLOCK - 1) // ROW_BLOCK
    cdef Py_ssize_t ntiles = (p.vocab + VOCAB_TILE - 1) // VOCAB_TILE
    cdef Py_ssize_t nchunks = _vocab_chunks(nblocks, ntiles), item, blk
    cdef bint grad = p.grad_hidden != NULL
    cdef int threads = _threads_for(nthreads, nblocks * nchunks)
    cdef Pieces pieces
    memset(&pieces, 0, sizeof(Pieces))
    pieces.nchunks, pieces.ntiles = nchunks, ntiles
    pieces.stats = p.stats
    pieces.extra = p.extra
    cdef floating *scratch = <floating *>_scratch(threads, sizeof(floating))
    try:
        if nchunks > 1:
            pieces.stats = <double *>_alloc(nchunks * p.n * 4 * sizeof(double))
            if p.extra != NULL:
                pieces.extra = <double *>_alloc(nchunks * p.n * 2 * sizeof(double))
            if grad:
                pieces.acc = _alloc((nchunks - 1) * p.n * p.hdim * sizeof(floating))
            if p.smooth_sum != NULL:
                pieces.smooth = _alloc((nchunks - 1) * p.n * p.hdim * sizeof(floating))
        with nogil:
            for item in prange(nblocks * nchunks, num_threads=threads, schedule="dynamic"):
                _forward_piece(&p, &pieces, item // nchunks, item % nchunks,
                               scratch + threadid() * SCRATCH_PER_THREAD)
            if nchunks > 1 or grad:
                for blk in prange(nblocks, num_threads=_threads_for(threads, nblocks),
                                  schedule="static"):
                    _merge_block(&p, &pieces, blk, scratch)
    finally:
        free(scratch)
        if nchunks > 1:
            free(pieces.stats)
            free(pieces.acc)
            free(pieces.smooth)
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


cdef struct Pieces:
    # The vocabulary is cut into nchunks stretches of whole tiles. Stretch c of row r keeps
    # its own statistics (stats[(c n + r) 4 ...]) and, for the gradient, its own accumulators:
    # stretch 0 in grad_hidden / smooth_sum themselves, stretch c > 0 in acc / smooth at
    # ((c - 1) n + r) H. With one stretch, stats is the caller's row_stats.
    Py_ssize_t nchunks, ntiles
    double *stats
    void *acc
    void *smooth
    double *extra   # return_stats: stretch c of row r at extra[(c n + r) 2 ...], or NULL


cdef inline void *_chunk_rows(const Problem *p, void *first, void *rest, Py_ssize_t c,
                              Py_ssize_t r0, size_t itemsize) noexcept nogil:
    """Row r0 of stretch c's accumulator (entries of itemsize bytes), or NULL if none."""
    if first == NULL:
        return NULL
    if c == 0:
        return <char *>first + r0 * p.hdim * itemsize
    return <char *>rest + ((c - 1) * p.n + r0) * p.hdim * itemsize


cdef void _forward_piece(const Problem *p, const Pieces *pieces, Py_ssize_t blk, Py_ssize_t c,
                         floating *buf) noexcept nogil:
    """Rows blk * ROW_BLOCK.. against the tiles of stretch c: statistics and accumulators."""
    cdef Py_ssize_t r0 = blk * ROW_BLOCK
    cdef Py_ssize_t nrows = _min(ROW_BLOCK, p.n - r0)
    cdef Py_ssize_t first_tile = c * pieces.ntiles // pieces.nchunks
    cdef Py_ssize_t end_tile = (c + 1) * pieces.ntiles // pieces.nchunks
    cdef Py_ssize_t i, j, v0, ncols, t, tile_index
    cdef bint grad = p.grad_hidden != NULL
    cdef floating *tile = buf
    cdef floating *slope = buf + TILE if grad and p.softcap > 0 else <floating *>NULL
    cdef floating *gh = <floating *>_chunk_rows(p, p.grad_hidden, pieces.acc, c, r0,
                                                sizeof(floating))
    cdef floating *sm = <floating *>_chunk_rows(p, p.smooth_sum, pieces.smooth, c, r0,
                                                sizeof(floating))
    cdef double *stats = pieces.stats + 4 * (c * p.n + r0)
    cdef double *extra = pieces.extra + 2 * (c * p.n + r0) if pieces.extra != NULL else NULL
    cdef floating *row
    cdef double *st
    cdef double total, shift_before, sum_before
    cdef xent_lse_state lse
    for i in range(nrows):
        st = stats + 4 * i
        st[0], st[1], st[2], st[3] = -INFINITY_, 0.0, NAN_, 0.0
        if extra != NULL:
            extra[2 * i], extra[2 * i + 1] = 0.0, 0.0
    for tile_index in range(first_tile, end_tile):
        v0 = tile_index * VOCAB_TILE
        ncols = _min(VOCAB_TILE, p.vocab - v0)
        _tile_of(p, r0, nrows, v0, ncols, tile, buf + 2 * TILE, slope)
        for i in range(nrows):
            row = tile + i * ncols
            st = stats + 4 * i
            shift_before, sum_before = st[0], st[1]
            # the stats keep (shift, sum) only: carried as all rest, no ties, as before
            lse.shift, lse.sum, lse.ties, lse.rest, lse.rest_err = st[0], st[1], 0.0, st[1], 0.0
            _row_lse(row, ncols, &lse)
            st[0], st[1] = lse.shift, lse.sum
            if extra != NULL:
                _fold_extra(row, ncols, v0, shift_before, sum_before, lse.shift, extra + 2 * i)
            t = p.target[r0 + i] - v0
            if 0 <= t < ncols:
                st[2] = row[t]
            if p.want_sum:
                total = 0
                for j in range(ncols):
                    total += row[j]
                st[3] += total
            if grad:
                if tile_index > first_tile and lse.shift > shift_before:
                    _scale_row(gh + i * p.hdim, p.hdim, exp(shift_before - lse.shift))
                # row = exp(z - shift) (times the softcap's slope): this tile's share of the
                # softmax, up to the row's final 1 / sum-exp.
                _softmax_grad_row(row, ncols, lse.shift, 0.0, 1.0, 0.0, row)
                if slope != NULL:
                    for j in range(ncols):
                        row[j] = row[j] * slope[i * ncols + j]
        if grad:
            _add_product(p, v0, nrows, ncols, tile, gh, tile_index == first_tile)
            if sm != NULL:
                _add_product(p, v0, nrows, ncols, slope, sm, tile_index == first_tile)


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
    cdef const double *part
    cdef const double *ex
    cdef double xl = 0, best = -INFINITY_, r_c
    cdef double *out = p.extra + 2 * r
    out[1] = 0
    for c in range(pieces.nchunks):
        part = pieces.stats + 4 * (c * p.n + r)
        ex = pieces.extra + 2 * (c * p.n + r)
        if part[1] != 0 and part[0] != -INFINITY_:
            r_c = exp(part[0] - shift)
            if r_c != 0:
                xl += r_c * (ex[0] + (part[0] - shift) * part[1])
        if part[0] > best:   # strictly: the first stretch holding the maximum wins
            best = part[0]
            out[1] = ex[1]
    out[0] = xl


cdef void _merge_block(const Problem *p, const Pieces *pieces, Py_ssize_t blk,
                       const floating *dtype_only) noexcept nogil:
    """Fold the stretches of each row, in stretch order, then finish its gradient."""
    cdef Py_ssize_t r0 = blk * ROW_BLOCK
    cdef Py_ssize_t nrows = _min(ROW_BLOCK, p.n - r0)
    cdef Py_ssize_t i, c, k, t
    cdef double *st
    cdef const double *part
    cdef xent_lse_state acc, piece
    cdef double total, factor
    cdef floating f
    cdef floating *gh
    cdef floating *sm
    cdef const floating *other
    for i in range(nrows):
        st = p.stats + 4 * (r0 + i)
        gh = <floating *>_chunk_rows(p, p.grad_hidden, pieces.acc, 0, r0 + i, sizeof(floating))
        sm = <floating *>_chunk_rows(p, p.smooth_sum, pieces.smooth, 0, r0 + i, sizeof(floating))
        if pieces.nchunks > 1:
            part = pieces.stats + 4 * (r0 + i)
            acc = xent_lse_init()
            acc.shift, acc.sum, acc.rest = part[0], part[1], part[1]
            total = part[3]
            t = p.target[r0 + i]
            st[2] = NAN_
            for c in range(1, pieces.nchunks):
                part = pieces.stats + 4 * (c * p.n + r0 + i)
                piece = xent_lse_init()
                piece.shift, piece.sum, piece.rest = part[0], part[1], part[1]
                xent_lse_merge(&acc, &piece)
                total += part[3]
            for c in range(pieces.nchunks):  # the target logit, from its stretch
                part = pieces.stats + 4 * (c * p.n + r0 + i)
                if part[2] == part[2]:
                    st[2] = part[2]
            if gh != NULL and p.row_scale[r0 + i] != 0:
                # Every stretch's accumulator onto the common shift, added in stretch order.
                part = pieces.stats + 4 * (r0 + i)
                factor = exp(part[0] - acc.shift) if part[1] != 0 else 0.0
                _scale_row(gh, p.hdim, factor)
                for c in range(1, pieces.nchunks):
                    part = pieces.stats + 4 * (c * p.n + r0 + i)
                    if part[1] == 0:
                        continue
                    f = <floating>exp(part[0] - acc.shift)
                    other = <floating *>_chunk_rows(p, p.grad_hidden, pieces.acc, c, r0 + i,
                                                    sizeof(floating))
                    for k in range(p.hdim):
                        gh[k] += f * other[k]
                    if sm != NULL:
                        other = <floating *>_chunk_rows(p, p.smooth_sum, pieces.smooth, c, r0 + i,
                                                        sizeof(floating))
                        for k in range(p.hdim):
                            sm[k] += other[k]
            st[0], st[1], st[3] = acc.shift, acc.sum, total
            if p.extra != NULL:
                _merge_extra(p, pieces, r0 + i, acc.shift)
        if gh != NULL:
            _finish_row(p, r0 + i, gh, sm)


cdef inline void _scale_row(floating *x, Py_ssize_t n, double factor) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating f = <floating>factor
    for k in range(n):
        x[k] = x[k] * f


cdef inline void _add_product(const Problem *p, Py_ssize_t v0, Py_ssize_t nrows,
                              Py_ssize_t ncols, const floating *g, floating *out,
                              bint first) noexcept nogil:
    """out (nrows x H) (+)= g (nrows x ncols) @ weight[v0:v0 + ncols] (ncols x H)."""
    # Column-major: out^T (H x nrows) = W_rows^T (H x ncols) x g^T (ncols x nrows).
    _gemm(b"N", b"N", <int>p.hdim, <int>nrows, <int>ncols, <floating>1,
          <const floating *>p.weight + v0 * p.ldw, <int>p.ldw, g, <int>ncols,
          <floating>(0 if first else 1), out, <int>p.hdim)


cdef void _finish_row(const Problem *p, Py_ssize_t r, floating *row,
                      const floating *smooth_row) noexcept nogil:
    """row = a_r (acc_r / sum-exp_r - keep slope_t W_t - spread sum_j slope_j W_j)."""
    cdef Py_ssize_t k, t
    cdef double a = p.row_scale[r], inv, target_share, y
    cdef const double *st = p.stats + 4 * r
    cdef const floating *wt
    if a == 0:
        memset(row, 0, p.hdim * sizeof(floating))
        return
    inv = 1 / st[1]
    if p.z_loss != 0:   # the z-loss's gradient 2 z lse softmax joins the softmax's share
        inv = inv * (1 + 2 * p.z_loss * (st[0] + log(st[1])))
    t = p.target[r]
    wt = <const floating *>p.weight + t * p.ldw
    target_share = p.keep
    if p.softcap > 0:
        y = st[2] / p.softcap
        target_share = p.keep * <floating>(1 - <floating>y * <floating>y)
    if p.spread == 0:
        for k in range(p.hdim):
            row[k] = <floating>(a * (row[k] * inv - target_share * wt[k]))
    elif smooth_row != NULL:
        for k in range(p.hdim):
            row[k] = <floating>(a * (row[k] * inv - target_share * wt[k]
                                     - p.spread * smooth_row[k]))
    else:
        for k in range(p.hdim):
            row[k] = <floating>(a * (row[k] * inv - target_share * wt[k]
                                     - p.spread * p.weight_sum[k]))


cdef extern from *:
    """
    #define XENT_LINEAR_INF ((double)INFINITY)
    #define XENT_LINEAR_NAN ((double)NAN)
    """
    double INFINITY_ "XENT_LINEAR_INF"
    double NAN_ "XENT_LINEAR_NAN"


# ---- gradient: tiles of d loss / d logits, recomputed, multiplied into the two gradients -----

cdef inline void _softmax_grad_row(const floating *x, Py_ssize_t n, double shift,
                                   double log_sum, double a, double b,
                                   floating *out) noexcept nogil:
    kern.row_softmax_grad(x, n, shift, log_sum, a, NULL, b, out)


cdef void _grad_tile(const Problem *p, Py_ssize_t r0, Py_ssize_t nrows, Py_ssize_t v0,
                     Py_ssize_t ncols, floating *buf) noexcept nogil:
    """buf's first tile = d loss / d logits of rows r0.., classes v0.. (rows of ncols).

    Row i: a_i (softmax - (1 - eps) onehot(t) - eps / V), times the softcap's slope. The
    target's entry, where softmax - 1 cancels, is recomputed in double.
    """
    cdef floating *tile = buf
    cdef floating *slope = buf + TILE if p.softcap > 0 else <floating *>NULL
    cdef Py_ssize_t i, j, t
    cdef floating *row
    cdef const double *st
    cdef double a, shift, log_sum, zt, share
    _tile_of(p, r0, nrows, v0, ncols, tile, buf + 2 * TILE, slope)
    for i in range(nrows):
        row = tile + i * ncols
        a = p.row_scale[r0 + i]
        if a == 0:
            memset(row, 0, ncols * sizeof(floating))
            continue
        st = p.stats + 4 * (r0 + i)
        shift, log_sum = st[0], log(st[1])
        # the softmax's share: 1, or 1 + 2 z lse with a z-loss
        share = 1 + 2 * p.z_loss * (shift + log_sum) if p.z_loss != 0 else 1.0
        t = p.target[r0 + i] - v0
        zt = row[t] if 0 <= t < ncols else 0
        _softmax_grad_row(row, ncols, shift, log_sum, a * share, a * p.spread, row)
        if 0 <= t < ncols:
            row[t] = <floating>(a * ((share * exp((zt - shift) - log_sum) - p.keep)
                                     - p.spread))
        if slope != NULL:
            for j in range(ncols):
                row[j] = row[j] * slope[i * ncols + j]


def grad_weight(const floating[:, :] hidden, const floating[:, :] weight, bias,
                const Py_ssize_t[::1] target, double softcap, double[:, ::1] row_stats,
                const double[::1] row_scale, double keep, double spread,
                floating[:, ::1] grad_weight, grad_bias, int nthreads, double z_loss=0):
    """grad_weight (and grad_bias, float64) from the forward's row statistics.

    row_scale[i] multiplies row i's gradient (0 for ignored rows); keep = 1 - eps,
    spread = eps / V. Threads take vocabulary tiles; each recomputes its tiles of logits and
    of G = d loss / d logits for every block of rows in order and adds G^T @ hidden_rows, so
    every entry of the gradient is written by one thread, in a fixed order.
    """
    cdef Problem p = _problem(hidden, weight, bias, target, softcap, row_stats)
    cdef double[::1] gb_view
    p.row_scale = &row_scale[0]
    p.keep, p.spread = keep, spread
    p.z_loss = z_loss
    p.grad_weight = &grad_weight[0, 0]
    if grad_bias is not None:
        gb_view = grad_bias
        p.grad_bias = &gb_view[0]
    cdef Py_ssize_t ntiles = (p.vocab + VOCAB_TILE - 1) // VOCAB_TILE, k
    cdef int threads = _threads_for(nthreads, ntiles)
    cdef floating *scratch = <floating *>_scratch(threads, sizeof(floating))
    try:
        with nogil:
            for k in prange(ntiles, num_threads=threads, schedule="dynamic"):
                _grad_weight_tile(&p, k, scratch + threadid() * SCRATCH_PER_THREAD)
    finally:
        free(scratch)


cdef void _grad_weight_tile(const Problem *p, Py_ssize_t k, floating *buf) noexcept nogil:
    cdef Py_ssize_t v0 = k * VOCAB_TILE
    cdef Py_ssize_t ncols = _min(VOCAB_TILE, p.vocab - v0)
    cdef Py_ssize_t r0, nrows, i, j, blk
    cdef floating *gw = <floating *>p.grad_weight + v0 * p.hdim
    cdef double *gb = p.grad_bias + v0 if p.grad_bias != NULL else NULL
    if gb != NULL:
        for j in range(ncols):
            gb[j] = 0
    for blk in range((p.n + ROW_BLOCK - 1) // ROW_BLOCK):
        r0 = blk * ROW_BLOCK
        nrows = _min(ROW_BLOCK, p.n - r0)
        _grad_tile(p, r0, nrows, v0, ncols, buf)
        # Row-major gw (ncols x H) += G^T (ncols x nrows) @ hidden_rows (nrows x H);
        # column-major: gw^T (H x ncols) += hidden_rows^T (H x nrows) x G (nrows x ncols).
        _gemm(b"N", b"T", <int>p.hdim, <int>ncols, <int>nrows, <floating>1,
              <const floating *>p.hidden + r0 * p.ldh, <int>p.ldh, buf, <int>ncols,
              <floating>(0 if r0 == 0 else 1), gw, <int>p.hdim)
        if gb != NULL:
            for i in range(nrows):
                for j in range(ncols):
                    gb[j] += buf[i * ncols + j]
