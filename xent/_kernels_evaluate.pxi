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
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef bint small = _small_rows(x)
    cdef const double *w = &weight[0] if weight is not None else NULL
    if n == 0:
        return
    with nogil:
        for b in prange(nblocks, schedule="dynamic",
                        num_threads=_threads_for(nthreads, nblocks)):
            _evaluate_block(x, target, w, ignore_index, small, values, rank, b * rows,
                            min(n, (b + 1) * rows))


cdef void _evaluate_block(const floating[:, :] x, const intp_t[::1] target, const double *weight,
                          intp_t ignore_index, bint small, double[:, ::1] values,
                          intp_t[::1] rank, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """evaluate_rows' work for rows r0 .. r1 - 1: short rows a group at a time, one row per
    vector lane (rows_evaluate_small), longer ones row by row (row_evaluate)."""
    cdef Py_ssize_t c = x.shape[1], i, g0, g1, f
    cdef Py_ssize_t stride = x.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef intp_t t
    cdef const floating *row
    cdef xent_eval_state group[SMALL_GROUP]
    cdef floating targets[SMALL_GROUP]
    cdef double wt, log_sum, wl, ent, p_t, brier
    g0 = r0
    while g0 < r1:
        g1 = min(g0 + SMALL_GROUP, r1)
        if small:
            for i in range(g0, g1):
                t = target[i]
                targets[i - g0] = _row(x, i)[t] if t != ignore_index else 0
            if floating is float or g1 - g0 <= 8:
                kern.rows_evaluate_small(_row(x, g0), stride, g1 - g0, c, targets, group)
            else:   # double lanes hold 8 rows: two calls
                kern.rows_evaluate_small(_row(x, g0), stride, 8, c, targets, group)
                kern.rows_evaluate_small(_row(x, g0 + 8), stride, g1 - g0 - 8, c, targets + 8,
                                         group + 8)
        for i in range(g0, g1):
            t = target[i]
            if t == ignore_index:
                for f in range(EVAL_FIELDS):
                    values[i, f] = 0
                rank[i] = -1
                continue
            row = _row(x, i)
            if not small:
                group[i - g0] = xent_eval_init()
                kern.row_evaluate(row, c, row[t], &group[i - g0])
            _evaluate_values(&group[i - g0], <double>row[t], weight[t] if weight != NULL else 1.0,
                             values, rank, i)
        g0 = g1


cdef inline void _evaluate_values(const xent_eval_state *st, double x_t, double wt,
                                  double[:, ::1] values, intp_t[::1] rank,
                                  Py_ssize_t i) noexcept nogil:
    """Row i's columns (evaluate_columns()) from its evaluation state and target logit."""
    # the loss as cross-entropy computes it: (shift - x_t) + log(sum) in the accurate form
    # (log1p of the terms below the max), so huge logits keep their differences and a
    # confident row's tiny loss its digits
    cdef double log_sum = xent_eval_log_sum(st)
    cdef double wl = wt * ((st.shift - x_t) + log_sum)
    cdef double ent = log_sum - st.xlogit / st.sum
    # p_t and the top-1 probability from the same shift and sum as the loss
    cdef double p_t = exp(x_t - st.shift) / st.sum
    cdef double brier = st.sum_sq / (st.sum * st.sum) - 2 * p_t + 1
    values[i, EVAL_LOSS] = wl
    values[i, EVAL_WEIGHT] = wt
    values[i, EVAL_ENTROPY] = ent
    values[i, EVAL_LOSS_SQ] = wl * wl
    values[i, EVAL_WEIGHT_LOSS] = wt * wl
    values[i, EVAL_WEIGHT_SQ] = wt * wt
    values[i, EVAL_ENTROPY_SQ] = ent * ent
    values[i, EVAL_BRIER] = brier
    values[i, EVAL_BRIER_SQ] = brier * brier
    # exp(max - shift) is exactly 1 when the max is the (finite) shift: no exp needed; a +inf
    # or all -inf row keeps its NaN (inf / inf, exp(NaN) / 0)
    if st.max == st.shift and st.shift > -INFINITY:
        values[i, EVAL_CONFIDENCE] = 1.0 / st.sum
    else:
        values[i, EVAL_CONFIDENCE] = exp(st.max - st.shift) / st.sum
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


from libc.stdint cimport int64_t

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
    cdef Py_ssize_t n = values.shape[0], i, b
    cdef Py_ssize_t nfine = fine.shape[0], nwidth = width.shape[0]
    cdef Py_ssize_t nan = 0
    cdef double c, scaled, high, low
    cdef int64_t correct
    with nogil:
        for i in range(n):
            if rank[i] < 0:
                continue
            c = values[i, column]
            if c != c:
                nan += 1
                continue
            c = 0.0 if c < 0 else (1.0 if c > 1 else c)   # rounding may put it past 1
            correct = rank[i] == 0
            scaled = c * 4294967296.0                     # exact: a power of two
            # rint by adding and subtracting 1.5 * 2^52 (round to nearest even, as rint in
            # the default rounding mode, for |v| < 2^51): no libm call in a baseline build
            high = (scaled + ROUND_MAGIC) - ROUND_MAGIC
            low = ((scaled - high) * 4294967296.0 + ROUND_MAGIC) - ROUND_MAGIC
            b = <Py_ssize_t>(c * nfine)
            if b > nfine - 1:
                b = nfine - 1
            fine[b, 0] += 1
            fine[b, 1] += correct
            fine[b, 2] += <int64_t>high
            fine[b, 3] += <int64_t>low
            b = <Py_ssize_t>(c * nwidth)
            if b > nwidth - 1:
                b = nwidth - 1
            width[b, 0] += 1
            width[b, 1] += correct
            width[b, 2] += <int64_t>high
            width[b, 3] += <int64_t>low
    return nan
