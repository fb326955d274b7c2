"""The C types and small inline helpers the kernels share (xent/src/xent_kernels.h).

The kernel table itself and its wrappers are generated: see _kernel_api.pxd.
"""

cdef extern from "xent_kernels.h" nogil:
    # Online log-sum-exp of the entries seen so far: logsumexp = shift + log(sum), sum =
    # ties + rest (the terms equal to the shift counted apart: see xent_lse_log_sum).
    ctypedef struct xent_lse_state:
        double shift
        double sum
        double ties
        double rest
        double rest_err
    xent_lse_state xent_lse_init()
    void xent_lse_merge(xent_lse_state *acc, const xent_lse_state *part)
    double xent_lse_value(const xent_lse_state *st)
    double xent_lse_log_sum(const xent_lse_state *st)
    void xent_lse_softmax_exponent(const xent_lse_state *st, double log_sum, double *c_hi,
                                   double *c_lo)

    # Sums over one row of a distribution p (and q), for entropy, cross-entropy and KL.
    ctypedef struct xent_dist_sums:
        double sum_p
        double sum_q
        double total
        double min_p
        double min_q

    # Online state of one row for evaluate: log-sum-exp parts, entropy term, target's rank.
    ctypedef struct xent_eval_state:
        double shift
        double sum
        double xlogit
        Py_ssize_t rank
        double max
        double sum_sq
        double ties
        double rest
    xent_eval_state xent_eval_init()
    double xent_eval_log_sum(const xent_eval_state *st)

    # Online state of a pair of rows for compare: log-sum-exps, argmaxes, KL and JSD.
    ctypedef struct xent_compare_state:
        xent_lse_state ref
        xent_lse_state cand
        double ref_max
        double cand_max
        Py_ssize_t ref_argmax
        Py_ssize_t cand_argmax
        double kl
        double js
    xent_compare_state xent_compare_init()

    int XENT_SMALL_ROW
    # the columns of a row that xent.evaluate sums, in the vector kernels' order
    enum:
        XENT_EVAL_LOSS
        XENT_EVAL_WEIGHT
        XENT_EVAL_ENTROPY
        XENT_EVAL_LOSS_SQ
        XENT_EVAL_WEIGHT_LOSS
        XENT_EVAL_WEIGHT_SQ
        XENT_EVAL_ENTROPY_SQ
        XENT_EVAL_BRIER
        XENT_EVAL_BRIER_SQ
        XENT_EVAL_CONFIDENCE
        XENT_EVAL_FIELDS
    int XENT_OPENMP
    int xent_omp_max_threads()


cdef extern from "xent_exactsum.h" nogil:
    # A sum of doubles held exactly (a small superaccumulator): see xent/src/xent_exactsum.h.
    ctypedef struct xent_exact_sum:
        pass
    void xent_exact_init(xent_exact_sum *acc)
    void xent_exact_add(xent_exact_sum *acc, double v)
    void xent_exact_merge(xent_exact_sum *acc, const xent_exact_sum *part)
    double xent_exact_round(xent_exact_sum *acc)
    int xent_exact_parts(xent_exact_sum *acc, double *out)
    enum: XENT_EXACT_WORDS
    # the batch way in: the same exact sum, a group of values at a time, vectorised
    ctypedef struct xent_exact_batch:
        pass
    void xent_exact_batch_init(xent_exact_batch *b)
    void xent_exact_batch_add(xent_exact_sum *acc, xent_exact_batch *b, const double *v, int n)
    void xent_exact_batch_flush(xent_exact_sum *acc, xent_exact_batch *b)
