/*
 * Information quantities of distributions: entropy, cross-entropy, KL divergence per row, and
 * the entropy of softmax(x).
 * Part of one instantiation (see xent_instantiate.h).
 */

/*
 * One pass over a row of p (and q): the sums the Python layer needs to validate, normalise and
 * finish entropy, cross-entropy and KL divergence. All in double.
 */
static void F(row_entropy)(const T *p, ptrdiff_t n, xent_dist_sums *out)
{
    double sum = 0, plogp = 0;
    T lo = (T)INFINITY;
#pragma omp simd reduction(+ : sum, plogp) reduction(min : lo)
    for (ptrdiff_t j = 0; j < n; j++) {
        T term = p[j] * F(log)(p[j]);
        plogp += p[j] > 0 ? (double)term : 0.0;   /* 0 log 0 = 0 */
        sum += (double)p[j];
        lo = p[j] < lo || p[j] != p[j] ? p[j] : lo;   /* NaN sticks: it is no probability */
    }
    out->sum_p = sum;
    out->sum_q = 0;
    out->total = plogp;
    out->min_p = lo;
    out->min_q = 0;
}

/* total = sum_j p[j] log q[j]: 0 where p[j] == 0, -inf where p[j] > 0 and q[j] == 0. */
static void F(row_cross_entropy)(const T *p, const T *q, ptrdiff_t n, xent_dist_sums *out)
{
    double sum_p = 0, sum_q = 0, plogq = 0;
    T lo_p = (T)INFINITY, lo_q = (T)INFINITY;
#pragma omp simd reduction(+ : sum_p, sum_q, plogq) reduction(min : lo_p, lo_q)
    for (ptrdiff_t j = 0; j < n; j++) {
        double term = (double)p[j] * (double)F(log)(q[j]);
        plogq += p[j] != 0 ? term : 0.0;
        sum_p += (double)p[j];
        sum_q += (double)q[j];
        lo_p = p[j] < lo_p || p[j] != p[j] ? p[j] : lo_p;
        lo_q = q[j] < lo_q || q[j] != q[j] ? q[j] : lo_q;
    }
    out->sum_p = sum_p;
    out->sum_q = sum_q;
    out->total = plogq;
    out->min_p = lo_p;
    out->min_q = lo_q;
}

/* total = sum_j rel_entr(p[j], q[j]): p log(p/q) for p, q > 0; 0 for p == 0; +inf else. */
static void F(row_kl)(const T *p, const T *q, ptrdiff_t n, xent_dist_sums *out)
{
    double sum_p = 0, sum_q = 0, kl = 0;
    T lo_p = (T)INFINITY, lo_q = (T)INFINITY;
#pragma omp simd reduction(+ : sum_p, sum_q, kl) reduction(min : lo_p, lo_q)
    for (ptrdiff_t j = 0; j < n; j++) {
        /* log(p/q) through log1p((p - q) / q) where p/q is near 1, so that near-equal
         * distributions keep the small terms their divergence is made of (SciPy does so). */
        T r = p[j] / q[j];   /* q = 0: +inf, log(inf) = inf */
        T near = F(log1p)((p[j] - q[j]) / q[j]), far = F(log)(r);
        double term = (double)p[j] * (double)(r > (T)0.5 && r < (T)2 ? near : far);
        kl += p[j] == 0 ? 0.0 : term;
        sum_p += (double)p[j];
        sum_q += (double)q[j];
        lo_p = p[j] < lo_p || p[j] != p[j] ? p[j] : lo_p;
        lo_q = q[j] < lo_q || q[j] != q[j] ? q[j] : lo_q;
    }
    out->sum_p = sum_p;
    out->sum_q = sum_q;
    out->total = kl;
    out->min_p = lo_p;
    out->min_q = lo_q;
}

/*
 * Entropy of softmax(x) given its log-sum-exp parts: sum_k p_k * -log p_k with
 * -log p_k = (shift - x_k) + log_sum; a k with p_k == 0 (x_k = -inf) adds 0.
 */
static double F(row_softmax_entropy)(const T *x, ptrdiff_t n, double shift, double log_sum)
{
    double acc = 0;
#pragma omp simd reduction(+ : acc)
    for (ptrdiff_t k = 0; k < n; k++) {
        double nll = (shift - (double)x[k]) + log_sum;
        T p = F(exp)((T)-nll);
        double term = (double)p * nll;
        acc += p == 0 ? 0.0 : term;
    }
    return acc;
}
