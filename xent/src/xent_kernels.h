/*
 * xent's C row kernels: log-sum-exp, its fused companions, log-softmax and softmax over one
 * contiguous row, for float and double, with run-time selection of the instruction set.
 *
 * The Cython drivers (xent/_kernels.pyx) call them once per row, without the GIL, through
 * the table xent_kernels of function pointers, which xent_select_isa() fills.
 */
#ifndef XENT_KERNELS_H
#define XENT_KERNELS_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Rows are processed in chunks this long (bytes): a chunk stays in L1 between its max pass
 * and its exp-sum pass, so the row is read from memory once whatever its length. */
#define XENT_CHUNK_BYTES 4096

/* Rows up to this long go through rows_lse_small, several rows per vector. */
#define XENT_SMALL_ROW 64

/*
 * Online log-sum-exp of the entries seen so far: logsumexp = shift + log(sum).
 * shift is -inf until a finite (or +inf) entry is seen; sum is NaN once a NaN is seen.
 */
typedef struct {
    double shift;
    double sum;
} xent_lse_state;

static inline xent_lse_state xent_lse_init(void)
{
    xent_lse_state st = {-INFINITY, 0.0};
    return st;
}

/* SciPy's rules: an all -inf (or empty) row gives -inf, +inf gives +inf, NaN gives NaN. */
static inline double xent_lse_value(const xent_lse_state *st)
{
    if (st->shift == -INFINITY) return st->sum == st->sum ? -INFINITY : NAN;
    return st->shift + log(st->sum);
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
    double sum = part->sum;
    if (part->shift > acc->shift) {
        if (acc->sum != 0) acc->sum *= exp(acc->shift - part->shift);   /* NaN stays NaN */
        acc->shift = part->shift;
    } else if (sum != 0) {   /* an empty or all -inf stretch (sum 0) adds nothing */
        sum *= exp(part->shift - acc->shift);
    }
    acc->sum += sum;
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
 */
typedef struct {
    double shift;
    double sum;
    double xlogit;
    ptrdiff_t rank;
} xent_eval_state;

static inline xent_eval_state xent_eval_init(void)
{
    xent_eval_state st = {-INFINITY, 0.0, 0.0, 0};
    return st;
}

/*
 * Every kernel that is dispatched at run time, once per element type T (suffix S):
 * X(return type, name, S, (parameters)). This one list makes the table's fields, and each
 * copy of xent_body.h fills them with its own functions.
 */
#define XENT_KERNELS(X, T, S)                                                                   \
    X(void, row_lse, S, (const T *x, ptrdiff_t n, xent_lse_state *st))                         \
    X(void, rows_lse_small, S, (const T *x, ptrdiff_t stride, ptrdiff_t nrows, ptrdiff_t n,     \
                                xent_lse_state *st))                                            \
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
                                  ptrdiff_t *bad))

#define XENT_TABLE_FIELD(ret, name, S, params) ret(*name##_##S) params;
typedef struct {
    XENT_KERNELS(XENT_TABLE_FIELD, float, f32)
    XENT_KERNELS(XENT_TABLE_FIELD, double, f64)
} xent_kernel_table;
#undef XENT_TABLE_FIELD

/* ---- one copy of the kernels per instruction set ------------------------------------- */

#define XENT_F32 1
#define XENT_T float
#define XENT_SFX f32
#define XENT_NAME(n) n##_f32_baseline
#include "xent_body.h"
#undef XENT_NAME
#undef XENT_T
#undef XENT_SFX
#undef XENT_F32
#define XENT_F32 0
#define XENT_T double
#define XENT_SFX f64
#define XENT_NAME(n) n##_f64_baseline
#include "xent_body.h"
#undef XENT_NAME
#undef XENT_T
#undef XENT_SFX
#undef XENT_F32

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XENT_HAVE_X86_VARIANTS 1

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define XENT_F32 1
#define XENT_T float
#define XENT_SFX f32
#define XENT_NAME(n) n##_f32_avx2
#include "xent_body.h"
#undef XENT_NAME
#undef XENT_T
#undef XENT_SFX
#undef XENT_F32
#define XENT_F32 0
#define XENT_T double
#define XENT_SFX f64
#define XENT_NAME(n) n##_f64_avx2
#include "xent_body.h"
#undef XENT_NAME
#undef XENT_T
#undef XENT_SFX
#undef XENT_F32
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
/* gcc otherwise keeps to 256-bit vectors on some tunings; the kernels want all 512 bits. */
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,prefer-vector-width=512")
#endif
#define XENT_F32 1
#define XENT_T float
#define XENT_SFX f32
#define XENT_NAME(n) n##_f32_avx512
#include "xent_body.h"
#undef XENT_NAME
#undef XENT_T
#undef XENT_SFX
#undef XENT_F32
#define XENT_F32 0
#define XENT_T double
#define XENT_SFX f64
#define XENT_NAME(n) n##_f64_avx512
#include "xent_body.h"
#undef XENT_NAME
#undef XENT_T
#undef XENT_SFX
#undef XENT_F32
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
#define XENT_HAVE_X86_VARIANTS 0
#endif

/* ---- run-time dispatch ---------------------------------------------------------------- */

static xent_kernel_table xent_kernels;
static const char *xent_isa = "none";

/* 1 if this CPU (and its OS) can run the named variant. */
static int xent_isa_supported(const char *name)
{
    if (strcmp(name, "baseline") == 0) return 1;
#if XENT_HAVE_X86_VARIANTS
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 0;
}

/*
 * Point the kernel table at a variant: "avx512", "avx2", "baseline", or "auto" (the best this
 * CPU runs). Returns 0, or -1 for a name this build does not know or this CPU cannot run.
 * Not thread-safe: called at import, and by tests between calls.
 */
static int xent_select_isa(const char *name)
{
    if (strcmp(name, "auto") == 0) {
        if (xent_isa_supported("avx512")) name = "avx512";
        else if (xent_isa_supported("avx2")) name = "avx2";
        else name = "baseline";
    }
    if (!xent_isa_supported(name)) return -1;
    if (strcmp(name, "baseline") == 0) {
        fill_table_f32_baseline(&xent_kernels);
        fill_table_f64_baseline(&xent_kernels);
        xent_isa = "baseline";
    }
#if XENT_HAVE_X86_VARIANTS
    else if (strcmp(name, "avx2") == 0) {
        fill_table_f32_avx2(&xent_kernels);
        fill_table_f64_avx2(&xent_kernels);
        xent_isa = "avx2";
    } else {
        fill_table_f32_avx512(&xent_kernels);
        fill_table_f64_avx512(&xent_kernels);
        xent_isa = "avx512";
    }
#endif
    return 0;
}

static inline const char *xent_current_isa(void) { return xent_isa; }

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
