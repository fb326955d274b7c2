/*
 * Cross-entropy of a row against a class or a distribution, from its log-sum-exp, and the
 * gradients of those losses with respect to the logits.
 * Part of one instantiation (see xent_instantiate.h).
 */

#if defined(__AVX512F__) && defined(__GNUC__)
#include <immintrin.h>   /* the non-temporal stores of row_softmax_grad_stream */
#endif

/*
 * The kernels below take a row's log-sum-exp as its two parts, shift and log_sum, and form
 * -log_softmax(x)[j] = (shift - x[j]) + log_sum in double: the small differences between
 * huge logits survive, which they would not in (shift + log_sum) - x[j].
 */

/* sum_j w[j] * -log_softmax(x)[j] (w == NULL: all ones): the label-smoothing term. */
static double F(row_nll_sum)(const T *x, ptrdiff_t n, const double *w, double shift,
                             double log_sum)
{
    double acc = 0;
    if (w) {
#pragma omp simd reduction(+ : acc)
        for (ptrdiff_t j = 0; j < n; j++) acc += w[j] * ((shift - (double)x[j]) + log_sum);
    } else {
#pragma omp simd reduction(+ : acc)
        for (ptrdiff_t j = 0; j < n; j++) acc += (shift - (double)x[j]) + log_sum;
    }
    return acc;
}

/*
 * Cross-entropy of one probability row: sum_j w[j] q[j] * -log_softmax(x)[j] with
 * q[j] = a p[j] + b (label smoothing). Terms with q[j] == 0 are left out, so a zero
 * probability on a -inf logit adds 0, not NaN. *mass = sum_j w[j] q[j]. w == NULL: all ones.
 */
static double F(row_nll_dot)(const T *x, const T *p, ptrdiff_t n, const double *w, double a,
                             double b, double shift, double log_sum, double *mass)
{
    double acc = 0, total = 0;
    if (w) {
#pragma omp simd reduction(+ : acc, total)
        for (ptrdiff_t j = 0; j < n; j++) {
            double q = a * (double)p[j] + b;
            double term = w[j] * q * ((shift - (double)x[j]) + log_sum);
            acc += q != 0 ? term : 0.0;   /* term computed always: a select vectorises */
            total += w[j] * q;
        }
    } else {
#pragma omp simd reduction(+ : acc, total)
        for (ptrdiff_t j = 0; j < n; j++) {
            double q = a * (double)p[j] + b;
            double term = q * ((shift - (double)x[j]) + log_sum);
            acc += q != 0 ? term : 0.0;
            total += q;
        }
    }
    *mass = total;
    return acc;
}

/*
 * out[k] = a * softmax(x)[k] - b * w[k] (w == NULL: all ones), the gradient of a row's
 * cross-entropy before its target term. out may be x: each entry is read before written.
 */
static void F(row_softmax_grad)(const T *x, ptrdiff_t n, double shift, double log_sum, double a,
                                const double *w, double b, T *out)
{
    /* In T: the gradient needs no more than T's precision (the target's entry, where p - 1
     * cancels, is recomputed in double by the caller), and float lanes are twice as many. */
    const T sh = (T)shift, ls = (T)log_sum, ta = (T)a, tb = (T)b;
    if (w) {
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++)
            out[k] = ta * F(exp)((x[k] - sh) - ls) - tb * (T)w[k];
    } else {
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++) out[k] = ta * F(exp)((x[k] - sh) - ls) - tb;
    }
}

/*
 * Gradient of a probability-target row: out[k] = mass * softmax(x)[k] - g w[k] q[k] with
 * q = qa p + qb and mass = g sum_j w[j] q[j]. out may be x (not p).
 */
static void F(row_softmax_grad_prob)(const T *x, const T *p, ptrdiff_t n, double shift,
                                     double log_sum, double mass, double g, double qa,
                                     double qb, const double *w, T *out)
{
    if (w) {
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++) {
            T s = F(exp)((T)(((double)x[k] - shift) - log_sum));
            out[k] = (T)(mass * (double)s - g * w[k] * (qa * (double)p[k] + qb));
        }
    } else {
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++) {
            T s = F(exp)((T)(((double)x[k] - shift) - log_sum));
            out[k] = (T)(mass * (double)s - g * (qa * (double)p[k] + qb));
        }
    }
}

/*
 * row_softmax_grad with non-temporal stores, for an out that is not x and will not be read
 * soon (a gradient larger than the cache): the stores go to memory without reading out's
 * lines first, a third of the traffic of a read-modify-write. The same values, bit for bit.
 * Vector stores only where the instruction set has them (AVX-512 here); elsewhere the plain
 * kernel. Ends with a store fence, so the row is visible to other threads in order.
 */
static void F(row_softmax_grad_stream)(const T *x, ptrdiff_t n, double shift, double log_sum,
                                       double a, const double *w, double b, T *out)
{
#if defined(__AVX512F__) && defined(__GNUC__)
    const T sh = (T)shift, ls = (T)log_sum, ta = (T)a, tb = (T)b;
    ptrdiff_t head = (ptrdiff_t)((64 - ((uintptr_t)out & 63)) & 63);
    if (head % sizeof(T) != 0 || head / (ptrdiff_t)sizeof(T) > n) {
        F(row_softmax_grad)(x, n, shift, log_sum, a, w, b, out);   /* unaligned T: plain */
        return;
    }
    head /= (ptrdiff_t)sizeof(T);
    F(row_softmax_grad)(x, head, shift, log_sum, a, w, b, out);
    ptrdiff_t k = head;
    for (; k + XENT_LANES <= n; k += XENT_LANES) {
        T v[XENT_LANES];
        if (w) {
#pragma omp simd
            for (ptrdiff_t l = 0; l < XENT_LANES; l++)
                v[l] = ta * F(exp)((x[k + l] - sh) - ls) - tb * (T)w[k + l];
        } else {
#pragma omp simd
            for (ptrdiff_t l = 0; l < XENT_LANES; l++)
                v[l] = ta * F(exp)((x[k + l] - sh) - ls) - tb;
        }
#if XENT_F32
        _mm512_stream_ps((float *)(out + k), _mm512_loadu_ps((const float *)v));
#else
        _mm512_stream_pd((double *)(out + k), _mm512_loadu_pd((const double *)v));
#endif
    }
    F(row_softmax_grad)(x + k, n - k, shift, log_sum, a, w ? w + k : NULL, b, out + k);
    _mm_sfence();
#else
    F(row_softmax_grad)(x, n, shift, log_sum, a, w, b, out);
#endif
}
