/*
 * The interface of xent's C row kernels: the state types they share, the one list of every
 * dispatched kernel (XENT_KERNELS), the table of function pointers made from it, and the
 * run-time choice of instruction set.
 *
 * The bodies live in rooms by concern (xent_rooms.h lists them) and are compiled once per
 * instruction set (xent_isa_*.c through xent_instantiate.h), into the extension xent._table
 * only. xent_dispatch.c owns the one table, xent_table. The Cython drivers reach it through
 * a pointer (xent_table_ref.h) and the declarations xent/src/gen_kernel_api.py generates from
 * XENT_KERNELS at build time (xent/_kernel_api.pxd): this header is the only place a
 * kernel's signature is written.
 */
#ifndef XENT_KERNELS_H
#define XENT_KERNELS_H

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "xent_exactsum.h"   /* exact sums, which some kernels add into */

/* Rows are processed in chunks this long (bytes): a chunk stays in L1 between its max pass
 * and its exp-sum pass, so the row is read from memory once whatever its length. */
#define XENT_CHUNK_BYTES 4096

/* Rows up to this long go through rows_lse_small, several rows per vector. */
#define XENT_SMALL_ROW 64

/*
 * Online log-sum-exp of the entries seen so far: logsumexp = shift + log(sum).
 * shift is -inf until a finite (or +inf) entry is seen; sum is NaN once a NaN is seen.
 * The terms equal to the shift (each exactly 1) are counted apart in ties, the others summed
 * in rest, and sum = ties + rest: log(sum) = log(ties) + log1p(rest / ties) then keeps the
 * relative accuracy of a small rest, which log(1 + rest) rounds away (a confident row's loss
 * is log1p of the other terms: logsumexp([0, -40]) = 4.2e-18, not 0). Use xent_lse_log_sum.
 */
typedef struct {
    double shift;
    double sum;
    double ties;
    double rest;
    double rest_err;   /* rounding errors of the additions into rest: rest + rest_err */
} xent_lse_state;

static inline xent_lse_state xent_lse_init(void)
{
    xent_lse_state st = {-INFINITY, 0.0, 0.0, 0.0, 0.0};
    return st;
}

/* st->rest += v, the addition's rounding error (TwoSum, exact) into st->rest_err: a row of a
 * million equal terms adds thousands of equal chunk sums, whose roundings would pile up. */
static inline void xent_lse_add_rest(xent_lse_state *st, double v)
{
    if (st->rest == 0) {   /* the first addition (a row of one chunk): exact, and no chain */
        st->rest = v;
        return;
    }
    double a = st->rest, s = a + v, bv = s - a;
    double err = (a - (s - bv)) + (v - bv);
    st->rest_err += err == err ? err : 0.0;   /* an inf or NaN rest carries itself */
    st->rest = s;
}

/*
 * log1p(r) for r >= 0 (or inf, NaN) by Goldberg's correction of log(1 + r): with u = 1 + r
 * rounded, log(u) - ((u - 1) - r) / u; r itself where u rounds to 1. Within about 1 ulp, and
 * about twice as fast as glibc's log1p, which once per row of 10 logits showed in the time.
 */
static inline double xent_log1p_pos(double r)
{
    double u = 1.0 + r;
    /* r >= 1 (most rows of a C = 10 classifier): log(u) >= log 2, so u's rounding costs it
     * at most 0.7 ulp; the correction's division is then not worth its time. Also inf, NaN. */
    if (!(r < 1.0)) return log(u);
    if (u == 1.0) return r;
    return log(u) - ((u - 1.0) - r) / u;
}

/* log(sum) of a state, in the form that keeps its relative accuracy (see xent_lse_state). */
static inline double xent_lse_log_sum(const xent_lse_state *st)
{
    double rest = st->rest + st->rest_err;
    if (st->ties == 1) return xent_log1p_pos(rest);
    if (st->ties > 1) return log(st->ties) + xent_log1p_pos(rest / st->ties);
    return log(st->sum);   /* no tie: an all -inf row (sum 0), or NaN */
}

/*
 * R = sum_{j>=1} 2 s^(2j) / (2j + 1) to s^20, from z = s^2: log(1 + f) = 2s + s R with
 * s = f / (2 + f), the series of xent_log_lanes (xent_math.h) and xent_log_dd. Inlined always,
 * so that a loop over rows calling it vectorises.
 */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline double xent_log_series(double z)
{
    double p = 2.0 / 21;
    p = p * z + 2.0 / 19;
    p = p * z + 2.0 / 17;
    p = p * z + 2.0 / 15;
    p = p * z + 2.0 / 13;
    p = p * z + 2.0 / 11;
    p = p * z + 2.0 / 9;
    p = p * z + 2.0 / 7;
    p = p * z + 2.0 / 5;
    p = p * z + 2.0 / 3;
    return z * p;
}

/*
 * log(x) of a finite positive normal double x as hi + *lo, to about 2^-100 relative of x's
 * log plus 2^-52 of 0.016 absolute (xent_log_lanes's form, every rounding caught by TwoSum).
 * For the double softmax entry exp(x - shift - log_sum): rounded to double, log_sum carries
 * up to an ulp of itself into every entry, relative, 4 to 8 ulp of an entry for log_sums from
 * 8 to 16 (rows of 3000 to a million classes). Branch-free and inlined always, so that a loop
 * over rows vectorises (rows_softmax_exponent); other x give a meaningless result, which the
 * caller selects away.
 * x = 2^e (1 + f), f exact; log(1 + f) = f - t with t = hfsq - q, hfsq = f^2 / 2 (its
 * rounding by FMA), q = s (hfsq + R), s = f / (2 + f): |q| <= 0.016, the only part left
 * rounded, by 3 ulp of itself at most.
 */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline double xent_log_dd(double x, double *lo)
{
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    double e = (double)((int64_t)((bits >> 52) & 0x7ff) - 1023), m;
    bits = (bits & 0x000fffffffffffffULL) | ((uint64_t)1023 << 52);
    memcpy(&m, &bits, sizeof m);   /* in [1, 2) */
    int big = m > 0x1.6a09e667f3bcdp+0;
    m = big ? 0.5 * m : m;
    e = big ? e + 1.0 : e;
    double f = m - 1.0, hf = 0.5 * f, hfsq = hf * f, hfsq_err = fma(hf, f, -hfsq);
    double s = f / (2.0 + f);
    double q = s * (hfsq + xent_log_series(s * s));
    /* t = hfsq - q, its rounding et (TwoSum) */
    double t = hfsq - q, bt = t - hfsq, et = (hfsq - (t - bt)) + (-q - bt);
    /* l1 = f - t: |t| < |f|, so Fast2Sum */
    double l1 = f - t, e1 = (f - l1) - t;
    /* e ln2_hi is exact (ln2_hi has 32 bits); h = e ln2_hi + l1, TwoSum */
    double a = e * ln2_hi, h = a + l1, bh = h - a, eh = (a - (h - bh)) + (l1 - bh);
    double rest = eh + e1 - et - hfsq_err + e * ln2_lo;
    double hi = h + rest;
    *lo = rest - (hi - h);
    return hi;
}

/*
 * The exponent of a double row's softmax entries, shift + log(sum), as c_hi + c_lo to well
 * below an ulp of an entry: in double, row_softmax_grad and its kin take these two in place
 * of shift and log_sum (F(softmax_split) and F(exp_shifted) take x - c_hi - c_lo exactly, the
 * sum of their parts is all they use), so that an entry is off by exp's own rounding and the
 * sum's, not log_sum's (tests/test_accuracy_mpmath.py: 4.9 ulp at a million classes before).
 * log_sum is xent_lse_log_sum(st). A row whose sum is not finite and positive keeps
 * (shift, log_sum) as they are, and so its entries. Branch-free (rows_softmax_exponent runs
 * it in vector lanes: one call a row was 40 ns, a third of a float64 gradient of rows of 10).
 */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void xent_lse_softmax_exponent(const xent_lse_state *st, double log_sum,
                                             double *c_hi, double *c_lo)
{
    double shift = st->shift, ties = st->ties, rest = st->rest;
    double s = ties + rest, bs = s - ties;
    double s_err = (ties - (s - bs)) + (rest - bs) + st->rest_err;
    int ok = s >= DBL_MIN && s <= DBL_MAX;
    double l_lo, l_hi = xent_log_dd(ok ? s : 1.0, &l_lo);
    double c = shift + l_hi;
    ok = ok && c - c == 0;
    double bc = c - shift, ec = (shift - (c - bc)) + (l_hi - bc);
    double lo = ec + l_lo + s_err / (ok ? s : 1.0), hi = c + lo;
    *c_hi = ok ? hi : shift;
    *c_lo = ok ? lo - (hi - c) : log_sum;
}

/* SciPy's rules: an all -inf (or empty) row gives -inf, +inf gives +inf, NaN gives NaN. */
static inline double xent_lse_value(const xent_lse_state *st)
{
    if (st->shift == -INFINITY) return st->sum == st->sum ? -INFINITY : NAN;
    return st->shift + xent_lse_log_sum(st);
}

/*
 * exp(a - b) for a <= b, with the rounding of the difference put back: a - b may need more
 * than 53 bits (1.53 - 67.53), and exp carries its rounding relative, tens of ulp of a tiny
 * result. TwoSum gives the rounding error err exactly; exp(a - b) = exp(d) (1 + err).
 */
static inline double xent_exp_diff(double a, double b)
{
    double d = a - b, bv = d - a;
    double err = (a - (d - bv)) + (-b - bv);
    double e = exp(d), fix = e * err;
    return e + (fix == fix ? fix : 0.0);   /* infinite a, b or d: err or e * err is NaN */
}

/* Rescale a state to a larger shift: its ties are no longer ties, they join the rest. */
static inline void xent_lse_rescale(xent_lse_state *st, double shift)
{
    if (st->sum != 0) {   /* NaN stays NaN */
        double r = xent_exp_diff(st->shift, shift);
        st->rest = st->ties * r + (st->rest + st->rest_err) * r;
        st->rest_err = 0;
        st->ties = 0;
        st->sum = st->rest;
    }
    st->shift = shift;
}

/* The floor of x (1 - x) in the gradient of binary cross-entropy: PyTorch's 1e-12f. */
#define XENT_BCE_EPSILON ((double)1e-12f)

/* Sums over one row of a distribution p (and q), for entropy, cross-entropy and KL. */
typedef struct {
    double sum_p, sum_q;   /* sum of the entries */
    double total;          /* the quantity's sum: p log p, p log q, or rel_entr(p, q) */
    double min_p, min_q;   /* smallest entry, NaN if any entry is NaN */
} xent_dist_sums;

/*
 * Fold the state of a later stretch of a row into the state of the stretch before it: the
 * merge of the (max, sum-exp) pairs that lets one long row be cut among threads. Merging the
 * stretches in their order gives the same bits on any number of threads.
 */
static inline void xent_lse_merge(xent_lse_state *acc, const xent_lse_state *part)
{
    if (part->shift > acc->shift) {
        xent_lse_rescale(acc, part->shift);
        acc->ties = part->ties;
        xent_lse_add_rest(acc, part->rest);
        acc->rest_err += part->rest_err;
    } else if (part->shift == acc->shift) {
        acc->ties += part->ties;
        xent_lse_add_rest(acc, part->rest);
        acc->rest_err += part->rest_err;
    } else if (part->sum != 0) {   /* an empty or all -inf stretch (sum 0) adds nothing */
        double r = xent_exp_diff(part->shift, acc->shift);   /* NaN stays NaN */
        xent_lse_add_rest(acc, part->ties * r + (part->rest + part->rest_err) * r);
    }
    acc->sum = acc->ties + acc->rest;
}

static inline ptrdiff_t xent_chunk_len(ptrdiff_t n, ptrdiff_t start, ptrdiff_t chunk)
{
    return n - start < chunk ? n - start : chunk;
}

/*
 * Online state of one row for xent.evaluate (row_evaluate): the log-sum-exp parts (shift,
 * sum), xlogit = sum_j exp(x_j - shift) (x_j - shift) for the predictive entropy
 * (H = log(sum) - xlogit / sum), and rank = the count of logits that are not <= the target's
 * (strictly greater, or NaN). All are rescaled together when the shift grows.
 * For calibration: max = the largest entry (NaN ignored; -inf if none), so the top-1
 * probability is exp(max - shift) / sum, and sum_sq = sum_j exp(x_j - shift)^2, so
 * sum_j p_j^2 = sum_sq / sum^2 (the Brier score's one extra sum).
 */
typedef struct {
    double shift;
    double sum;
    double xlogit;
    ptrdiff_t rank;
    double max;
    double sum_sq;
    /* sum = ties + rest, split as in xent_lse_state (the terms equal to the shift counted
     * apart), so that the loss keeps its relative accuracy: see xent_eval_log_sum */
    double ties;
    double rest;
} xent_eval_state;

static inline xent_eval_state xent_eval_init(void)
{
    xent_eval_state st = {-INFINITY, 0.0, 0.0, 0, -INFINITY, 0.0, 0.0, 0.0};
    return st;
}

/* The columns of a row that xent.evaluate sums, in this order (rows_evaluate_small writes
 * them; _kernels_evaluate.pxi's EVAL_* name the same columns and its _row_columns computes
 * them for longer rows): w[t] * loss, w[t], entropy, (w[t] loss)^2, w[t] (w[t] loss), w[t]^2,
 * entropy^2, Brier score, its square, top-1 probability. */
enum {
    XENT_EVAL_LOSS,
    XENT_EVAL_WEIGHT,
    XENT_EVAL_ENTROPY,
    XENT_EVAL_LOSS_SQ,
    XENT_EVAL_WEIGHT_LOSS,
    XENT_EVAL_WEIGHT_SQ,
    XENT_EVAL_ENTROPY_SQ,
    XENT_EVAL_BRIER,
    XENT_EVAL_BRIER_SQ,
    XENT_EVAL_CONFIDENCE,
    XENT_EVAL_FIELDS
};

/* log(sum) of an evaluation state, in xent_lse_log_sum's accurate form. */
static inline double xent_eval_log_sum(const xent_eval_state *st)
{
    xent_lse_state lse = {st->shift, st->sum, st->ties, st->rest, 0.0};
    return xent_lse_log_sum(&lse);
}

/*
 * Online state of a pair of rows for xent.compare (row_compare): each row's log-sum-exp state
 * and the index of its first largest entry (-1 while none is seen: all -inf or NaN), and,
 * from a second look at the rows (in cache) once the log-sum-exps are known, KL(ref || cand)
 * and the Jensen-Shannon divergence, nats.
 */
typedef struct {
    xent_lse_state ref, cand;
    double ref_max, cand_max;
    ptrdiff_t ref_argmax, cand_argmax;
    double kl, js;
} xent_compare_state;

/* A fresh state (row_compare sets every field; a driver assigns this first so that a parallel
 * loop gives each thread its own state). */
static inline xent_compare_state xent_compare_init(void)
{
    xent_compare_state st = {{-INFINITY, 0.0}, {-INFINITY, 0.0}, -INFINITY, -INFINITY, -1, -1,
                             0.0, 0.0};
    return st;
}

/*
 * Every kernel that is dispatched at run time, once per element type T (suffix S):
 * X(return type, name, S, (parameters)). This one list makes the table's fields (below), the
 * names xent_kernel_names (xent_dispatch.c), each instruction set's fill function
 * (xent_instantiate.h) and the Cython declarations and dtype-generic wrappers
 * (gen_kernel_api.py). Add a kernel here, its body in its room, and its driver: nothing else.
 * Keep one entry per line group, in the form X(ret, name, S, (params)): the generator parses it.
 */
#define XENT_KERNELS(X, T, S)                                                                   \
    X(void, row_lse, S, (const T *x, ptrdiff_t n, xent_lse_state *st))                         \
    X(void, rows_lse_small, S, (const T *x, ptrdiff_t stride, ptrdiff_t nrows, ptrdiff_t n,     \
                                xent_lse_state *st))                                            \
    X(double, row_lse_dd, S, (const T *x, ptrdiff_t n))                                         \
    X(double, row_lse_weighted_dd, S, (const T *x, const double *b, ptrdiff_t n,                \
                                       double *sign))                                           \
    X(double, row_nll_sum, S, (const T *x, ptrdiff_t n, const double *w, double shift,          \
                               double log_sum))                                                  \
    X(double, row_nll_dot, S, (const T *x, const T *p, ptrdiff_t n, const double *w, double a, \
                               double b, double shift, double log_sum, double *mass))           \
    X(void, row_log_softmax, S, (const T *x, ptrdiff_t n, T *out))                               \
    X(void, row_softmax, S, (const T *x, ptrdiff_t n, T *out))                                   \
    X(void, exp_array, S, (const T *x, ptrdiff_t n, T *out))                                     \
    X(void, log_array, S, (const T *x, ptrdiff_t n, T *out))                                     \
    X(void, log1p_array, S, (const T *x, ptrdiff_t n, T *out))                                   \
    X(void, widen_half, S, (const uint16_t *h, ptrdiff_t n, int bfloat, T *out))                 \
    X(void, narrow_half, S, (const T *x, ptrdiff_t n, int bfloat, uint16_t *out))                \
    X(void, row_softmax_grad, S, (const T *x, ptrdiff_t n, double shift, double log_sum,        \
                                  double a, const double *w, double b, T *out))                 \
    X(void, row_softmax_grad_prob, S, (const T *x, const T *p, ptrdiff_t n, double shift,       \
                                       double log_sum, double mass, double g, double qa,        \
                                       double qb, const double *w, T *out))                     \
    X(void, row_entropy, S, (const T *p, ptrdiff_t n, xent_dist_sums *out))                      \
    X(void, row_cross_entropy, S, (const T *p, const T *q, ptrdiff_t n, xent_dist_sums *out))    \
    X(void, row_kl, S, (const T *p, const T *q, ptrdiff_t n, xent_dist_sums *out))               \
    X(double, row_softmax_entropy, S, (const T *x, ptrdiff_t n, double shift, double log_sum))   \
    X(void, row_evaluate, S, (const T *x, ptrdiff_t n, T target, xent_eval_state *st))        \
    X(ptrdiff_t, self_information_array, S, (const T *p, ptrdiff_t n, double scale, T *out))     \
    X(ptrdiff_t, binary_entropy_array, S, (const T *p, ptrdiff_t n, double scale, T *out))       \
    X(double, row_bce, S, (const T *x, const T *y, const T *w, ptrdiff_t n, T *loss, T *grad,   \
                           double scale, const T *gout, ptrdiff_t *bad))                        \
    X(double, row_bce_logits, S, (const T *x, const T *y, const T *w, const T *pw, ptrdiff_t n, \
                                  T *loss, T *grad, double scale, const T *gout,                \
                                  ptrdiff_t *bad))                                            \
    X(void, row_kl_logits, S, (const T *p, const T *q, ptrdiff_t n, T scale, double *st))        \
    X(void, row_kl_second_order, S, (const T *p, const T *q, ptrdiff_t n, T scale,             \
                                     double *st))                                               \
    X(double, row_divergence, S, (const T *s, const T *t, ptrdiff_t n, T scale, double lse_s,   \
                                  double lse_t, int kind, double beta, double kl_c,             \
                                  double kl_log1p, double *qg))                                 \
    X(void, row_divergence_grad, S, (const T *s, const T *t, ptrdiff_t n, T scale,              \
                                     double lse_s, double lse_t, int kind, double beta,         \
                                     double qg, double qg2, double coef, double kl_c,           \
                                     double kl_log1p, T *out))                                  \
    X(double, row_xlogit, S, (const T *x, ptrdiff_t n, double shift))                           \
    X(void, row_compare, S, (const T *ref, const T *cand, ptrdiff_t n,                         \
                             xent_compare_state *st))                                          \
    X(int, rows_evaluate_small, S, (const T *x, ptrdiff_t stride, ptrdiff_t nrows,              \
                                    ptrdiff_t n, const T *target, xent_eval_state *st,          \
                                    const double *w, double *cols))                             \
    X(void, row_lse_half, S, (const uint16_t *h, ptrdiff_t n, int bfloat, xent_lse_state *st))   \
    X(void, row_softmax_grad_half, S, (const uint16_t *h, ptrdiff_t n, int bfloat,              \
                                       double shift, double log_sum, double a, const double *w, \
                                       double b, uint16_t *out))                                \
    X(void, row_softmax_grad_stream, S, (const T *x, ptrdiff_t n, double shift,                 \
                                         double log_sum, double a, const double *w, double b,   \
                                         T *out))                                               \
    X(void, row_transform_half, S, (const uint16_t *h, ptrdiff_t n, int bfloat, int softmax,    \
                                    uint16_t *out))                                             \
    X(double, read_sum, S, (const T *x, ptrdiff_t n))                                           \
    X(double, copy_array, S, (const T *x, ptrdiff_t n, T *out))                                 \
    X(void, log_lanes_array, S, (const double *x, ptrdiff_t n, int plus_one, double *out))      \
    X(ptrdiff_t, rows_index_loss_small, S, (const T *x, ptrdiff_t stride, ptrdiff_t nrows,      \
                                            ptrdiff_t n, const ptrdiff_t *target,               \
                                            ptrdiff_t ignore_index, const double *weight,       \
                                            double keep, xent_lse_state *st, double *log_sum,   \
                                            double *loss, double *wt, T *row_loss,              \
                                            ptrdiff_t *bad, xent_exact_sum *loss_sum,           \
                                            xent_exact_batch *loss_batch,                       \
                                            xent_exact_sum *weight_sum,                         \
                                            xent_exact_batch *weight_batch))                    \
    X(void, rows_softmax_exponent, S, (const xent_lse_state *st, const double *log_sum,      \
                                       ptrdiff_t n, double *c_hi, double *c_lo))                \
    X(int, rows_softmax_grad_small, S, (const T *x, ptrdiff_t stride, ptrdiff_t nrows,          \
                                        ptrdiff_t n, const double *shift,                       \
                                        const double *log_sum, const double *a,                 \
                                        const double *b, T *out, ptrdiff_t out_stride))

#define XENT_TABLE_FIELD(ret, name, S, params) ret(*name##_##S) params;
typedef struct {
    XENT_KERNELS(XENT_TABLE_FIELD, float, f32)
    XENT_KERNELS(XENT_TABLE_FIELD, double, f64)
} xent_kernel_table;
#undef XENT_TABLE_FIELD

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XENT_HAVE_X86_VARIANTS 1
#else
#define XENT_HAVE_X86_VARIANTS 0
#endif

/* ---- what xent._table compiles (xent_isa_*.c, xent_dispatch.c) ---------------------------- */

/* Point the table's float (f32) or double (f64) fields at one instruction set's kernels. */
void xent_fill_table_f32_baseline(xent_kernel_table *tab);
void xent_fill_table_f64_baseline(xent_kernel_table *tab);
#if XENT_HAVE_X86_VARIANTS
void xent_fill_table_f32_avx2(xent_kernel_table *tab);
void xent_fill_table_f64_avx2(xent_kernel_table *tab);
void xent_fill_table_f32_avx512(xent_kernel_table *tab);
void xent_fill_table_f64_avx512(xent_kernel_table *tab);
#endif

/* The one table (never holding a NULL pointer once xent._table is imported). */
extern xent_kernel_table xent_table;
/* The table's field names, in its order ("row_lse_f32", ...), and how many there are. */
extern const char *const xent_kernel_names[];
extern const int xent_kernel_count;
int xent_isa_supported(const char *name);
int xent_select_isa(const char *name);
const char *xent_current_isa(void);

/* Whether the build has OpenMP, and how many threads its runtime would use by default
 * (OMP_NUM_THREADS, or a limit set through omp_set_num_threads by threadpoolctl). */
#ifdef _OPENMP
#include <omp.h>
#define XENT_OPENMP 1
static inline int xent_omp_max_threads(void) { return omp_get_max_threads(); }
#else
#define XENT_OPENMP 0
static inline int xent_omp_max_threads(void) { return 1; }
#endif

#endif /* XENT_KERNELS_H */
