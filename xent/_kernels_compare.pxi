# Part of xent/_kernels.pyx (included there): comparing two models' logits row by row
# (xent.compare). The shared helpers (_row, _block_rows, kern, ...) are defined in _kernels.pyx.

from xent._kernel_types cimport xent_compare_init, xent_compare_state

cdef enum:
    # columns of compare_rows' values: what xent.compare sums (in an order fixed by the row
    # index) or keeps per row
    CMP_COUNTED = 0     # 1 for a counted row, 0 for an ignored one
    CMP_KL = 1          # KL(ref || cand), nats
    CMP_KL_SQ = 2
    CMP_JS = 3          # Jensen-Shannon divergence, nats
    CMP_AGREE = 4       # 1 if both rows' first largest entries are at the same index
    CMP_NLL_REF = 5     # -log softmax(ref)[t]  (0 without labels)
    CMP_NLL_REF_SQ = 6
    CMP_NLL_CAND = 7    # -log softmax(cand)[t]
    CMP_NLL_CAND_SQ = 8
    CMP_NLL_DIFF = 9    # nll_cand - nll_ref: the log of the perplexity ratio, per row
    CMP_NLL_DIFF_SQ = 10
    CMP_DP = 11         # softmax(cand)[t] - softmax(ref)[t]
    CMP_DP_SQ = 12
    CMP_FIELDS = 13


def compare_columns():
    """Names of compare_rows' float64 columns, in order."""
    return ("counted", "kl", "kl_sq", "js", "agree", "nll_ref", "nll_ref_sq", "nll_cand",
            "nll_cand_sq", "nll_diff", "nll_diff_sq", "dp", "dp_sq")


def compare_rows(const floating[:, :] ref, const floating[:, :] cand, const intp_t[::1] target,
                 intp_t ignore_index, double[:, ::1] values, int nthreads):
    """One read of each pair of rows (ref[i], cand[i]): values[i] = the columns of
    compare_columns(). target None: no label columns (left 0), every row counted.

    Rows whose target is ignore_index get values 0. Labels must be in range (checked by the
    caller). Each row's results depend on that row only, so they are the same on any thread
    count.
    """
    cdef Py_ssize_t n = ref.shape[0], c = ref.shape[1], i, f
    cdef intp_t t
    cdef const floating *r
    cdef const floating *q
    cdef xent_compare_state st
    cdef double nll_r, nll_c, d, dp
    cdef bint labelled = target is not None
    if n == 0:
        return
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=_block_rows(c),
                        num_threads=_threads_for(nthreads, n // _block_rows(c) + 1)):
            t = target[i] if labelled else -1
            if labelled and t == ignore_index:
                for f in range(CMP_FIELDS):
                    values[i, f] = 0
                continue
            r = _row(ref, i)
            q = _row(cand, i)
            st = xent_compare_init()   # assigned: private to each thread of the prange
            kern.row_compare(r, q, c, &st)
            values[i, CMP_COUNTED] = 1
            values[i, CMP_KL] = st.kl
            values[i, CMP_KL_SQ] = st.kl * st.kl
            values[i, CMP_JS] = st.js
            values[i, CMP_AGREE] = (st.ref_argmax == st.cand_argmax and st.ref_argmax >= 0)
            if labelled:
                # as evaluate_rows: (shift - x_t) + log(sum), so huge logits keep their
                # differences
                nll_r = (st.ref.shift - <double>r[t]) + log(st.ref.sum)
                nll_c = (st.cand.shift - <double>q[t]) + log(st.cand.sum)
                d = nll_c - nll_r
                dp = exp(-nll_c) - exp(-nll_r)
                values[i, CMP_NLL_REF] = nll_r
                values[i, CMP_NLL_REF_SQ] = nll_r * nll_r
                values[i, CMP_NLL_CAND] = nll_c
                values[i, CMP_NLL_CAND_SQ] = nll_c * nll_c
                values[i, CMP_NLL_DIFF] = d
                values[i, CMP_NLL_DIFF_SQ] = d * d
                values[i, CMP_DP] = dp
                values[i, CMP_DP_SQ] = dp * dp
            else:
                for f in range(CMP_NLL_REF, CMP_FIELDS):
                    values[i, f] = 0
