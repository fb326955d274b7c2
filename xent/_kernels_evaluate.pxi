# Part of xent/_kernels.pyx (included there): evaluation: loss, rank and entropy per row, with
# sums in a fixed order.
# The shared helpers (_row, _block_rows, _Partials, kern, ...) are defined in _kernels.pyx.

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
