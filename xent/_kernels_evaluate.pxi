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
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i
    cdef intp_t t
    cdef const floating *row
    cdef xent_eval_state st
    cdef double wt, log_sum, wl, ent, p_t, brier
    cdef Py_ssize_t f
    if n == 0:
        return
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            t = target[i]
            if t == ignore_index:
                for f in range(EVAL_FIELDS):
                    values[i, f] = 0
                rank[i] = -1
                continue
            row = _row(x, i)
            st = xent_eval_init()
            kern.row_evaluate(row, c, row[t], &st)
            wt = weight[t] if weight is not None else 1.0
            log_sum = log(st.sum)
            # as _index_block: (shift - x_t) + log(sum), so huge logits keep their differences
            wl = wt * ((st.shift - <double>row[t]) + log_sum)
            ent = log_sum - st.xlogit / st.sum
            values[i, EVAL_LOSS] = wl
            values[i, EVAL_WEIGHT] = wt
            values[i, EVAL_ENTROPY] = ent
            values[i, EVAL_LOSS_SQ] = wl * wl
            values[i, EVAL_WEIGHT_LOSS] = wt * wl
            values[i, EVAL_WEIGHT_SQ] = wt * wt
            values[i, EVAL_ENTROPY_SQ] = ent * ent
            # p_t and the top-1 probability from the same shift and sum as the loss
            p_t = exp(<double>row[t] - st.shift) / st.sum
            brier = st.sum_sq / (st.sum * st.sum) - 2 * p_t + 1
            values[i, EVAL_BRIER] = brier
            values[i, EVAL_BRIER_SQ] = brier * brier
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


from libc.math cimport rint
from libc.stdint cimport int64_t


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
            high = rint(scaled)
            low = rint((scaled - high) * 4294967296.0)
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
