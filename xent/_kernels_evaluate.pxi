# Part of xent/_kernels.pyx (included there): evaluation: loss, rank and entropy per row, with
# sums in a fixed order.
# The shared helpers (_row, _block_rows, _Partials, kern, ...) are defined in _kernels.pyx.

# ---- evaluation: loss, rank and entropy per row, summed in an order fixed by the row index ---

cdef enum:
    # columns of evaluate_rows' values: what evaluate sums in float64
    EVAL_LOSS = 0       # w[t] * (-log_softmax(x)[t])
    EVAL_WEIGHT = 1     # w[t]
    EVAL_ENTROPY = 2    # entropy of softmax(x), nats
    # the squares and cross products the standard errors need (a weighted mean's variance
    # by linearisation needs sum (w l)^2, sum w (w l) and sum w^2)
    EVAL_LOSS_SQ = 3    # (w[t] * loss)^2
    EVAL_WEIGHT_LOSS = 4   # w[t] * (w[t] * loss)
    EVAL_WEIGHT_SQ = 5  # w[t]^2
    EVAL_ENTROPY_SQ = 6
    # calibration of the top-1 prediction
    EVAL_BRIER = 7      # sum_k (p_k - onehot(t)_k)^2 = sum p^2 - 2 p_t + 1
    EVAL_BRIER_SQ = 8
    EVAL_CONFIDENCE = 9   # max_k p_k, the top-1 prediction's probability
    EVAL_FIELDS = 10

# rows_evaluate_small writes the columns in C's order (xent_kernels.h)
if (EVAL_LOSS, EVAL_WEIGHT, EVAL_ENTROPY, EVAL_LOSS_SQ, EVAL_WEIGHT_LOSS, EVAL_WEIGHT_SQ,
        EVAL_ENTROPY_SQ, EVAL_BRIER, EVAL_BRIER_SQ, EVAL_CONFIDENCE, EVAL_FIELDS) != (
        XENT_EVAL_LOSS, XENT_EVAL_WEIGHT, XENT_EVAL_ENTROPY, XENT_EVAL_LOSS_SQ,
        XENT_EVAL_WEIGHT_LOSS, XENT_EVAL_WEIGHT_SQ, XENT_EVAL_ENTROPY_SQ, XENT_EVAL_BRIER,
        XENT_EVAL_BRIER_SQ, XENT_EVAL_CONFIDENCE, XENT_EVAL_FIELDS):
    raise ImportError("xent._kernels: evaluate's columns differ from xent_kernels.h's")


def evaluate_columns():
    """Names of evaluate_rows' float64 columns, in order."""
    return ("loss", "weight", "entropy", "loss_sq", "weight_loss", "weight_sq", "entropy_sq",
            "brier", "brier_sq", "confidence")


def evaluate_fields():
    """Number of float64 columns evaluate_rows writes per row."""
    return EVAL_FIELDS


def evaluate_rows(const floating[:, :] x, const intp_t[::1] target, const double[::1] weight,
                  intp_t ignore_index, double[:, ::1] values, intp_t[::1] rank, int nthreads):
    """One read of each row: values[i] = the columns of evaluate_columns() (w[t] * loss,
    w[t], entropy, their squares, Brier score, top-1 probability), rank[i] = the count of
    logits not <= the target's (strictly greater, or NaN).

    Ignored rows get values 0 and rank -1. Labels must be in range (checked by the caller).
    Each row's results depend on that row only, so they are the same on any thread count.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b, bad = -1
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef bint small = _small_rows(x)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef _EvalSinks sink
    if n == 0:
        return
    sink.sum = NULL
    sink.values = &values[0, 0]
    sink.rank = &rank[0]
    sink.counts = NULL   # then no histogram, no counters
    with nogil:
        for b in prange(nblocks, schedule="dynamic",
                        num_threads=_threads_for(nthreads, nblocks)):
            # the sinks are shared, read only: each row writes its own values and rank
            _summary_rows(&x[0, 0], x.strides[0], c, 0, &target[0], w, ignore_index, small,
                          b * rows, min(n, (b + 1) * rows), &sink, &bad)


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


from libc.stdint cimport int64_t

cdef extern from *:
    void __builtin_prefetch(const void *addr, int rw, int locality) nogil

cdef double ROUND_MAGIC = 6755399441055744.0   # 1.5 * 2^52


def calibration_histograms(const double[:, ::1] values, Py_ssize_t column,
                           const intp_t[::1] rank, int64_t[:, ::1] fine, int64_t[:, ::1] width):
    """Add the counted rows (rank >= 0) to integer histograms of their top-1 confidence
    values[:, column]: columns (count, top-1 correct, confidence sum high, low) of each table,
    bin = min(floor(confidence * bins), bins - 1). The confidence c (clipped to [0, 1]) is
    added as high = rint(c 2^32) and low = rint((c 2^32 - high) 2^32): integers, so the sums
    are exact and free of order. Returns the count of counted rows whose confidence is NaN
    (not binned).
    """
    cdef Py_ssize_t n = values.shape[0], i
    cdef Py_ssize_t nan = 0
    cdef double c
    with nogil:
        for i in range(n):
            if rank[i] < 0:
                continue
            c = values[i, column]
            if c != c:
                nan += 1
                continue
            _bin_confidence(c, rank[i] == 0, &fine[0, 0], fine.shape[0], &width[0, 0],
                            width.shape[0])
    return nan


cdef inline void _bin_confidence(double c, int64_t correct, int64_t *fine, Py_ssize_t nfine,
                                 int64_t *width, Py_ssize_t nwidth) noexcept nogil:
    """Add one counted row of (non-NaN) top-1 confidence c to the fine and the width
    histograms (rows of count, top-1 correct, confidence sum high, low): see
    calibration_histograms."""
    cdef double scaled, high, low
    cdef Py_ssize_t b
    cdef int64_t *bin
    c = 0.0 if c < 0 else (1.0 if c > 1 else c)   # rounding may put it past 1
    scaled = c * 4294967296.0                     # exact: a power of two
    # rint by adding and subtracting 1.5 * 2^52 (round to nearest even, as rint in
    # the default rounding mode, for |v| < 2^51): no libm call in a baseline build
    high = (scaled + ROUND_MAGIC) - ROUND_MAGIC
    low = ((scaled - high) * 4294967296.0 + ROUND_MAGIC) - ROUND_MAGIC
    b = <Py_ssize_t>(c * nfine)
    if b > nfine - 1:
        b = nfine - 1
    bin = fine + 4 * b
    bin[0] += 1
    bin[1] += correct
    bin[2] += <int64_t>high
    bin[3] += <int64_t>low
    b = <Py_ssize_t>(c * nwidth)
    if b > nwidth - 1:
        b = nwidth - 1
    bin = width + 4 * b
    bin[0] += 1
    bin[1] += correct
    bin[2] += <int64_t>high
    bin[3] += <int64_t>low


# ---- evaluate's one pass: the sums, counts and histograms gathered by the threads ------------

cdef enum:
    # evaluate_summary gives whole runs of rows to the threads up to this row length
    WHOLE_RUN_COLS = 256
    # per-thread counters of evaluate_summary, then one column per k of topk (rank < k)
    EVAL_COUNT = 0      # counted rows
    EVAL_IGNORED = 1    # rows whose label is ignore_index
    EVAL_NAN = 2        # counted rows whose confidence is NaN (not binned)
    EVAL_HITS = 3


cdef struct _EvalSinks:
    # where a thread puts what its rows yield (NULL: not wanted)
    double *sum           # the running sum of the rows' columns, in row order
    double *values        # per-row columns (row stride EVAL_FIELDS), indexed by chunk row
    intp_t *rank          # per-row ranks, indexed by chunk row
    int64_t *counts       # this thread's counters (EVAL_COUNT, ...)
    int64_t *fine         # this thread's fine histogram (nfine x 4)
    int64_t *width        # this thread's width histogram (nwidth x 4)
    Py_ssize_t nfine
    Py_ssize_t nwidth
    const intp_t *topk
    Py_ssize_t ntopk


cdef inline void _row_columns(const xent_eval_state *st, double x_t, double wt,
                              double *v) noexcept nogil:
    """v[0 .. EVAL_FIELDS): a row's columns (evaluate_columns()) from its evaluation state and
    target logit, for rows longer than XENT_SMALL_ROW and the short rows rows_evaluate_small
    leaves (a +inf entry, or no finite entry); rows_evaluate_small computes the same columns
    (XENT_EVAL_* in xent/src/xent_kernels.h) in vector lanes."""
    # the loss as cross-entropy computes it: (shift - x_t) + log(sum) in the accurate form
    # (log1p of the terms below the max), so huge logits keep their differences and a
    # confident row's tiny loss its digits
    cdef double log_sum = xent_eval_log_sum(st)
    cdef double wl = wt * ((st.shift - x_t) + log_sum)
    cdef double ent = log_sum - st.xlogit / st.sum
    # p_t and the top-1 probability from the same shift and sum as the loss; a target that is
    # the (finite) shift, the top-1 of a confident row, has exp(0) = 1 exactly: no libm call
    cdef double p_t = (1.0 if x_t == st.shift and st.shift > -INFINITY
                       else exp(x_t - st.shift)) / st.sum
    cdef double brier = st.sum_sq / (st.sum * st.sum) - 2 * p_t + 1
    v[EVAL_LOSS] = wl
    v[EVAL_WEIGHT] = wt
    v[EVAL_ENTROPY] = ent
    v[EVAL_LOSS_SQ] = wl * wl
    v[EVAL_WEIGHT_LOSS] = wt * wl
    v[EVAL_WEIGHT_SQ] = wt * wt
    v[EVAL_ENTROPY_SQ] = ent * ent
    v[EVAL_BRIER] = brier
    v[EVAL_BRIER_SQ] = brier * brier
    # exp(max - shift) is exactly 1 when the max is the (finite) shift: no exp needed; a +inf
    # or all -inf row keeps its NaN (inf / inf, exp(NaN) / 0)
    if st.max == st.shift and st.shift > -INFINITY:
        v[EVAL_CONFIDENCE] = 1.0 / st.sum
    else:
        v[EVAL_CONFIDENCE] = exp(st.max - st.shift) / st.sum


cdef inline const floating *_row_at(const floating *x0, Py_ssize_t stride_bytes,
                                    Py_ssize_t base, Py_ssize_t i) noexcept nogil:
    return <const floating *>(<const char *>x0 + (i - base) * stride_bytes)


cdef void _summary_rows(const floating *x0, Py_ssize_t stride_bytes, Py_ssize_t c,
                        Py_ssize_t base, const intp_t *target, const double *weight,
                        intp_t ignore_index, bint small, Py_ssize_t r0, Py_ssize_t r1,
                        _EvalSinks *out, Py_ssize_t *bad) noexcept nogil:
    """Rows r0 .. r1 - 1 in order (row i of c entries at x0 + (i - base) * stride_bytes;
    small: rows_evaluate_small serves them, which needs a stride in whole elements): each
    row's columns, as evaluate_rows gives them, added to out.sum one row after the other
    (ignored rows add their zeros, as group_sums does), and its rank and confidence to the
    thread's counters and histograms. The first label out of range goes to *bad (its row is
    then taken as ignored: the caller raises).

    A group's columns are computed, its fine bins fetched, and its rows go into the sinks
    after the next group's columns are computed: the fine table (2 MiB, more than a core's
    L2 on some machines) is hit at random, and waiting for each row's bin, or even for the
    group's bins fetched just before, was a third of the time at C = 10."""
    cdef Py_ssize_t i, g0, g1, f, j, pending0 = 0, pending = 0
    cdef Py_ssize_t stride = stride_bytes // <Py_ssize_t>sizeof(floating)
    cdef intp_t t
    cdef intp_t labels[SMALL_GROUP]
    cdef const floating *row
    cdef xent_eval_state group[SMALL_GROUP]
    cdef floating targets[SMALL_GROUP]
    cdef double wts[SMALL_GROUP]
    cdef int left, cur = 0
    # two groups' columns and ranks: the one being computed and the one waiting for its bins
    cdef double cols[2][SMALL_GROUP * EVAL_FIELDS]
    cdef intp_t ranks[2][SMALL_GROUP]
    cdef double *v
    cdef double conf
    g0 = r0
    while g0 < r1:
        g1 = min(g0 + SMALL_GROUP, r1)
        # each label read once: what is checked is what indexes the row, whatever another
        # thread writes to the caller's labels meanwhile
        for i in range(g0, g1):
            t = target[i]
            if t != ignore_index and (t < 0 or t >= c):
                if bad[0] < 0:
                    bad[0] = i
                t = ignore_index
            labels[i - g0] = t
        left = -1   # rows whose columns are computed below: all, or those the kernel left
        if small:
            # the short-row kernel gives the group's states and, in its vector lanes, their
            # columns (a scalar log, exp and four divisions per row here were a fifth of the
            # time at C = 10)
            row = _row_at(x0, stride_bytes, base, g0)
            for i in range(g0, g1):
                t = labels[i - g0]
                if t != ignore_index:
                    targets[i - g0] = _row_at(x0, stride_bytes, base, i)[t]
                    wts[i - g0] = weight[t] if weight != NULL else 1.0
                else:
                    targets[i - g0] = 0
                    wts[i - g0] = 0
            if floating is float or g1 - g0 <= 8:
                left = kern.rows_evaluate_small(row, stride, g1 - g0, c, targets, group, wts,
                                                cols[cur])
            else:   # double lanes hold 8 rows: two calls
                left = kern.rows_evaluate_small(row, stride, 8, c, targets, group, wts,
                                                cols[cur])
                left |= kern.rows_evaluate_small(row + 8 * stride, stride, g1 - g0 - 8, c,
                                                 targets + 8, group + 8, wts + 8,
                                                 cols[cur] + 8 * EVAL_FIELDS) << 8
        for i in range(g0, g1):
            t = labels[i - g0]
            v = cols[cur] + (i - g0) * EVAL_FIELDS
            if t == ignore_index:
                for f in range(EVAL_FIELDS):
                    v[f] = 0
                ranks[cur][i - g0] = -1
                continue
            if not (left >> (i - g0)) & 1:   # done by the short-row kernel
                ranks[cur][i - g0] = group[i - g0].rank
                continue
            row = _row_at(x0, stride_bytes, base, i)
            if not small:
                group[i - g0] = xent_eval_init()
                kern.row_evaluate(row, c, row[t], &group[i - g0])
            _row_columns(&group[i - g0], <double>row[t], weight[t] if weight != NULL else 1.0,
                         v)
            ranks[cur][i - g0] = group[i - g0].rank
        if out.counts != NULL:
            for i in range(g1 - g0):
                conf = cols[cur][i * EVAL_FIELDS + EVAL_CONFIDENCE]
                if ranks[cur][i] >= 0 and conf == conf:
                    conf = 0.0 if conf < 0 else (1.0 if conf > 1 else conf)
                    j = min(<Py_ssize_t>(conf * out.nfine), out.nfine - 1)
                    __builtin_prefetch(out.fine + 4 * j, 1, 3)
        if pending:
            _sink_rows(out, cols[1 - cur], ranks[1 - cur], pending0, pending)
        pending0, pending, cur = g0, g1 - g0, 1 - cur
        g0 = g1
    if pending:
        _sink_rows(out, cols[1 - cur], ranks[1 - cur], pending0, pending)


cdef inline void _sink_rows(_EvalSinks *out, const double *cols, const intp_t *ranks,
                            Py_ssize_t i0, Py_ssize_t n) noexcept nogil:
    """Rows i0 .. i0 + n - 1 (their columns, EVAL_FIELDS a row, and ranks; rank -1: ignored)
    into the sinks, in order."""
    cdef Py_ssize_t k, f, j, i
    cdef intp_t r
    cdef const double *v
    cdef double conf
    for k in range(n):
        i = i0 + k
        v = cols + k * EVAL_FIELDS
        r = ranks[k]
        if out.sum != NULL:
            for f in range(EVAL_FIELDS):
                out.sum[f] += v[f]
        if out.values != NULL:
            for f in range(EVAL_FIELDS):
                out.values[i * EVAL_FIELDS + f] = v[f]
        if out.rank != NULL:
            out.rank[i] = r
        if out.counts == NULL:
            continue
        if r < 0:
            out.counts[EVAL_IGNORED] += 1
            continue
        out.counts[EVAL_COUNT] += 1
        for j in range(out.ntopk):
            out.counts[EVAL_HITS + j] += r < out.topk[j]
        conf = v[EVAL_CONFIDENCE]
        if conf != conf:
            out.counts[EVAL_NAN] += 1
        else:
            _bin_confidence(conf, r == 0, out.fine, out.nfine, out.width, out.nwidth)


cdef void _summary_task(const floating *x0, Py_ssize_t stride_bytes, const uint16_t *h0,
                        Py_ssize_t hstride, bint bfloat, float *scratch,
                        Py_ssize_t scratch_rows, Py_ssize_t c, bint small,
                        const intp_t *target, const double *weight, intp_t ignore_index,
                        Py_ssize_t r0, Py_ssize_t r1, double *sum, double *values, intp_t *rank,
                        int64_t *counts, int64_t *fine, int64_t *width, Py_ssize_t nfine,
                        Py_ssize_t nwidth, const intp_t *topk, Py_ssize_t ntopk,
                        Py_ssize_t *bad) noexcept nogil:
    """_summary_rows with its sinks (a thread's own: built here, in the thread). The running
    sum is kept on this thread's stack meanwhile: the runs' sums sit side by side in memory,
    and two threads writing one cache line row after row would take turns for it.

    With h0 (float16 or bfloat16 rows, hstride elements apart; floating is float), the rows
    are widened scratch_rows at a time into this thread's scratch and read from there, in
    cache: the float32 rows evaluate_rows would read, never written out whole."""
    cdef _EvalSinks sink
    cdef double running[EVAL_FIELDS]
    cdef Py_ssize_t f, p0, p1, i
    if sum != NULL:
        for f in range(EVAL_FIELDS):
            running[f] = sum[f]
    sink.sum = running if sum != NULL else NULL
    sink.values = values
    sink.rank = rank
    sink.counts = counts
    sink.fine = fine
    sink.width = width
    sink.nfine = nfine
    sink.nwidth = nwidth
    sink.topk = topk
    sink.ntopk = ntopk
    if h0 == NULL:
        _summary_rows(x0, stride_bytes, c, 0, target, weight, ignore_index, small, r0, r1, &sink,
                      bad)
    elif floating is float:
        p0 = r0
        while p0 < r1:
            p1 = min(r1, p0 + scratch_rows)
            if hstride == c:   # contiguous rows: one vector loop
                kern.widen_half(h0 + p0 * hstride, (p1 - p0) * c, bfloat, scratch)
            else:
                for i in range(p0, p1):
                    kern.widen_half(h0 + i * hstride, c, bfloat, scratch + (i - p0) * c)
            _summary_rows(scratch, c * <Py_ssize_t>sizeof(float), c, p0, target, weight,
                          ignore_index, c <= XENT_SMALL_ROW, p0, p1, &sink, bad)
            p0 = p1
    if sum != NULL:
        for f in range(EVAL_FIELDS):
            sum[f] = running[f]


cdef inline Py_ssize_t _segment_start(Py_ssize_t s, Py_ssize_t first, Py_ssize_t group,
                                      Py_ssize_t n) noexcept nogil:
    """First chunk row of segment s (segments: [0, first), then runs of group rows)."""
    if s == 0:
        return 0
    return min(n, first + (s - 1) * group)


def evaluate_summary(const floating[:, :] x, const intp_t[::1] target, const double[::1] weight,
                     intp_t ignore_index, Py_ssize_t row0, Py_ssize_t group, double[::1] carry,
                     double[:, ::1] closed, const intp_t[::1] topk, int64_t[:, ::1] counts,
                     int64_t[:, :, ::1] fine, int64_t[:, :, ::1] width, double[:, ::1] values,
                     intp_t[::1] rank, int nthreads):
    """evaluate's pass over one chunk of rows (global rows row0 ...), gathering in the threads
    what evaluate_rows + group_sums + calibration_histograms + counting the ranks give.

    The rows' columns (evaluate_columns()) are added one by one in row order within each run
    of rows between multiples of group (global index), the first run continuing carry; each
    run that reaches a multiple of group is written, in order, to closed (n // group + 2
    rows), and the open run at the end is left in carry: exactly group_sums' sums. Runs of
    short rows go to the threads whole (the columns never leave the thread); longer rows go
    in blocks, their columns written to values, then summed by runs.

    counts[thread] += (counted rows, ignored rows, counted rows with a NaN confidence, then
    for each k of topk the counted rows with rank < k); fine[thread] and width[thread] (FINE x
    4, bins x 4) get calibration_histograms' counts and fixed-point sums (each thread's row
    of counts should be 64 bytes clear of the next's: threads bump them row after row). All
    integers, so adding the threads' tables up gives the same totals however the rows were
    shared.

    values (n x EVAL_FIELDS) and rank (n), if given, get every row's columns and rank as
    evaluate_rows writes them. nthreads: at most counts.shape[0]. Labels are checked here.

    Returns (how many rows of closed were written, the first chunk row whose label is out of
    range, or -1). With a bad label the sums and tables hold part of the chunk: the caller
    raises and drops them.
    """
    if x.shape[0] == 0:
        return 0, -1
    return _summary_chunk(&x[0, 0], x.strides[0], NULL, 0, False, x.shape[0], x.shape[1],
                          _small_rows(x), target, weight, ignore_index, row0, group, carry,
                          closed, topk, counts, fine, width, values, rank, nthreads)


def evaluate_summary_half(const uint16_t[:, :] h, bint bfloat, const intp_t[::1] target,
                          const double[::1] weight, intp_t ignore_index, Py_ssize_t row0,
                          Py_ssize_t group, double[::1] carry, double[:, ::1] closed,
                          const intp_t[::1] topk, int64_t[:, ::1] counts,
                          int64_t[:, :, ::1] fine, int64_t[:, :, ::1] width,
                          double[:, ::1] values, intp_t[::1] rank, int nthreads):
    """evaluate_summary of float16 (or, with bfloat, bfloat16) rows h (their bits, a contiguous
    last axis), widened a few rows at a time inside the threads: the same results as
    evaluate_summary of h widened to float32 whole, without writing that array."""
    cdef const float *no_floats = NULL
    if h.shape[0] == 0:
        return 0, -1
    return _summary_chunk(no_floats, 0, &h[0, 0], h.strides[0] // <Py_ssize_t>sizeof(uint16_t),
                          bfloat, h.shape[0], h.shape[1], h.shape[1] <= XENT_SMALL_ROW, target,
                          weight, ignore_index, row0, group, carry, closed, topk, counts, fine,
                          width, values, rank, nthreads)


cdef tuple _summary_chunk(const floating *x0, Py_ssize_t stride_bytes, const uint16_t *h0,
                          Py_ssize_t hstride, bint bfloat, Py_ssize_t n, Py_ssize_t c,
                          bint small, const intp_t[::1] target, const double[::1] weight,
                          intp_t ignore_index, Py_ssize_t row0, Py_ssize_t group,
                          double[::1] carry, double[:, ::1] closed, const intp_t[::1] topk,
                          int64_t[:, ::1] counts, int64_t[:, :, ::1] fine,
                          int64_t[:, :, ::1] width, double[:, ::1] values, intp_t[::1] rank,
                          int nthreads):
    """evaluate_summary's work for n > 0 rows of c entries: float rows at x0 (stride_bytes
    apart), or half rows at h0 (hstride elements apart; x0 NULL)."""
    cdef Py_ssize_t first, nseg, nblocks, rows = _block_rows(c), s, b, f, k = 0, i, a, e
    cdef Py_ssize_t nfine = fine.shape[1], nwidth = width.shape[1]
    cdef Py_ssize_t scratch_rows = _half_sub_rows(c)
    cdef bint whole_runs
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef double *sums
    cdef double *buf = NULL
    cdef bint own_buf = False
    cdef float *scratch = NULL
    cdef Py_ssize_t *bads
    cdef Py_ssize_t bad = -1
    cdef int tid
    cdef intp_t *rank_out = &rank[0] if rank is not None else NULL
    cdef const intp_t *ks = &topk[0] if topk.shape[0] else NULL
    cdef Py_ssize_t nk = topk.shape[0]
    if target.shape[0] != n or (values is not None and values.shape[0] < n) or (
            rank is not None and rank.shape[0] < n):
        raise ValueError("evaluate_summary: target, values and rank need a row per row")
    if counts.shape[0] < nthreads or fine.shape[0] < nthreads or width.shape[0] < nthreads:
        raise ValueError("evaluate_summary: fewer per-thread tables than threads")
    if counts.shape[1] < 3 + nk or closed.shape[0] < n // group + 2:
        raise ValueError("evaluate_summary: counts or closed too small")
    first = (group - row0 % group) % group
    if first == 0 or first > n:
        first = min(group, n)
    nseg = 1 + (n - first + group - 1) // group
    nblocks = (n + rows - 1) // rows
    # Whole runs per thread for short rows (a run is at most 4096 x WHOLE_RUN_COLS entries,
    # and its rows' columns would cost as much as the rows to write out and read back);
    # longer rows go in blocks, which share the work finer (a thread that the machine's load
    # holds up delays the chunk by a block, not by a run), for 80 bytes written per row.
    whole_runs = nthreads == 1 or (
        c <= WHOLE_RUN_COLS and nseg >= min(nblocks, MIN_BLOCKS_PER_THREAD * nthreads))
    if h0 != NULL:
        scratch = _half_scratch(nthreads, scratch_rows, c)
    sums = <double *>malloc(nseg * EVAL_FIELDS * sizeof(double))
    bads = <Py_ssize_t *>malloc(max(nseg, nblocks) * sizeof(Py_ssize_t))
    if values is not None:
        buf = &values[0, 0]
    elif not whole_runs:
        buf = <double *>malloc(n * EVAL_FIELDS * sizeof(double))
        own_buf = True
    if sums == NULL or bads == NULL or (not whole_runs and buf == NULL):
        free(sums)
        free(bads)
        free(scratch)
        if own_buf:
            free(buf)
        raise MemoryError("xent: cannot allocate evaluate's per-run sums")
    for s in range(nseg):
        for f in range(EVAL_FIELDS):
            sums[s * EVAL_FIELDS + f] = carry[f] if s == 0 else 0.0
    for s in range(max(nseg, nblocks)):
        bads[s] = -1
    with nogil:
        if whole_runs:
            for s in prange(nseg, schedule="dynamic", num_threads=_threads_for(nthreads, nseg)):
                tid = threadid()
                _summary_task(x0, stride_bytes, h0, hstride, bfloat,
                              scratch + tid * scratch_rows * c if scratch != NULL else NULL,
                              scratch_rows, c, small, &target[0], w, ignore_index,
                              _segment_start(s, first, group, n),
                              _segment_start(s + 1, first, group, n), sums + s * EVAL_FIELDS,
                              buf, rank_out, &counts[tid, 0], &fine[tid, 0, 0],
                              &width[tid, 0, 0], nfine, nwidth, ks, nk, &bads[s])
        else:
            for b in prange(nblocks, schedule="dynamic",
                            num_threads=_threads_for(nthreads, nblocks)):
                tid = threadid()
                _summary_task(x0, stride_bytes, h0, hstride, bfloat,
                              scratch + tid * scratch_rows * c if scratch != NULL else NULL,
                              scratch_rows, c, small, &target[0], w, ignore_index, b * rows,
                              min(n, (b + 1) * rows), NULL, buf, rank_out, &counts[tid, 0],
                              &fine[tid, 0, 0], &width[tid, 0, 0], nfine, nwidth, ks, nk,
                              &bads[b])
            # the runs summed from the written columns, each in row order
            for s in prange(nseg, schedule="static", num_threads=_threads_for(nthreads, nseg)):
                a = _segment_start(s, first, group, n)
                e = _segment_start(s + 1, first, group, n)
                for i in range(a, e):
                    for f in range(EVAL_FIELDS):
                        sums[s * EVAL_FIELDS + f] += buf[i * EVAL_FIELDS + f]
    for s in range(max(nseg, nblocks)):
        if bads[s] >= 0 and (bad < 0 or bads[s] < bad):
            bad = bads[s]
    # the runs in order: a closed one is a group's sum, the open one at the end the carry
    for s in range(nseg):
        e = _segment_start(s + 1, first, group, n)
        if (row0 + e) % group == 0:
            for f in range(EVAL_FIELDS):
                closed[k, f] = sums[s * EVAL_FIELDS + f]
                carry[f] = 0
            k += 1
        else:
            for f in range(EVAL_FIELDS):
                carry[f] = sums[s * EVAL_FIELDS + f]
    free(sums)
    free(bads)
    free(scratch)
    if own_buf:
        free(buf)
    return k, bad
