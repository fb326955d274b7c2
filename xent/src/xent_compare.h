/*
 * Comparing two models: a pair of rows (the reference model's logits and the candidate's for
 * the same token) read together, for xent.compare. Part of one instantiation (see
 * xent_instantiate.h).
 *
 * Pass 1 reads both rows once, chunk by chunk side by side: each row's online log-sum-exp
 * (lse_chunk) and the index of its first largest entry. Pass 2 needs both log-sum-exps, so it
 * looks at the rows again, while they are in cache (two rows of 32k float32 logits are 256 KiB),
 * for KL(ref || cand) and the Jensen-Shannon divergence:
 *
 *   d_i = (x_ref,i - x_cand,i) - (lse_ref - lse_cand)   (= log p_i - log q_i)
 *   KL  = sum_{p_i > 0} p_i (d_i + exp(-d_i) - 1) + sum_{p_i = 0} q_i
 *   (p_i = 0 also where exp underflows: p_i d_i is then 0 and p_i exp(-d_i) is q_i)
 *   JSD = 1/2 sum_i m_i h(u_i),  m_i = (p_i + q_i) / 2,  u_i = (p_i - q_i) / (p_i + q_i)
 *         = tanh(d_i / 2),  h(u) = (1 + u) log(1 + u) + (1 - u) log(1 - u)
 *
 * Written with d_i, not with log p_i and log q_i apart: when the two models are close (a
 * quantised model against the original), d_i is small and exact where the logits are close
 * (Sterbenz). KL is sum p_i d_i, plus 0 = sum q_i - sum p_i = sum p_i (exp(-d_i) - 1) over
 * p_i > 0 plus the q mass where p_i = 0: each term p (d + exp(-d) - 1) ~ p d^2 / 2 is then
 * non-negative, so the sum has no cancellation (sum p d's terms of both signs, of size
 * p |d|, add up to a sum of size p d^2: in float lanes that lost 3e-3 of a KL of 1e-7), and an
 * error e in lse_ref - lse_cand moves it by e KL, not by e. JSD likewise: m h(u) is the
 * element's p log(p / m) + q log(q / m) with its first-order parts cancelled analytically
 * (h(u) = u^2 + u^4 / 6 + ...), u from d rather than from p - q (which loses p's rounding).
 */

/* h(|u|) of the JSD from d: |u| = tanh(|d| / 2), by series for small |d|. */
static inline T F(js_term)(T d)
{
    T a = d < 0 ? -d : d, x = a / 2, x2 = x * x;
#if XENT_F32
    T t = (T)(-17.0 / 315);                  /* tanh to x^7: 2e-10 relative at x = 0.1 */
    t = t * x2 + (T)(2.0 / 15);
    t = t * x2 + (T)(-1.0 / 3);
    T us = x + x * x2 * t;
    T u2 = us * us;
    T h = (T)(1.0 / 28);                     /* h to u^8: 2e-10 relative at u = 0.1 */
    h = h * u2 + (T)(1.0 / 15);
    h = h * u2 + (T)(1.0 / 6);
    h = h * u2 + 1;
#else
    T t = -929569.0 / 638512875;             /* tanh to x^15: 1e-19 relative at x = 0.1 */
    t = t * x2 + 21844.0 / 6081075;
    t = t * x2 - 1382.0 / 155925;
    t = t * x2 + 62.0 / 2835;
    t = t * x2 - 17.0 / 315;
    t = t * x2 + 2.0 / 15;
    t = t * x2 - 1.0 / 3;
    T us = x + x * x2 * t;
    T u2 = us * us;
    T h = 1.0 / 120;                         /* h to u^16: 7e-19 relative at u = 0.1 */
    h = h * u2 + 1.0 / 91;
    h = h * u2 + 1.0 / 66;
    h = h * u2 + 1.0 / 45;
    h = h * u2 + 1.0 / 28;
    h = h * u2 + 1.0 / 15;
    h = h * u2 + 1.0 / 6;
    h = h * u2 + 1;
#endif
    T series = h * u2;
    T e = F(exp)(-a);                        /* in [0, 1]: |d| = inf gives u = 1 */
    T u = (1 - e) / (1 + e);
    T rest = u == 1 ? 0 : (1 - u) * F(log1p)(-u);   /* (1 - u) log(1 - u) -> 0 at u = 1 */
    T direct = (1 + u) * F(log1p)(u) + rest;
    return a < (T)0.2 ? series : direct;
}

/* d + exp(-d) - 1, accurate for small |d| (a Taylor series there: it is d^2/2 - d^3/6 ...). */
static inline T F(kl_term)(T d)
{
#if XENT_F32
    T s = (T)(1.0 / 720);                    /* to d^6: 3e-9 relative at |d| = 0.1 */
    s = s * -d + (T)(1.0 / 120);
    s = s * -d + (T)(1.0 / 24);
    s = s * -d + (T)(1.0 / 6);
    s = s * -d + (T)0.5;
#else
    T s = 1.0 / 3628800;                     /* to d^10: 5e-17 relative at |d| = 0.1 */
    s = s * -d + 1.0 / 362880;
    s = s * -d + 1.0 / 40320;
    s = s * -d + 1.0 / 5040;
    s = s * -d + 1.0 / 720;
    s = s * -d + 1.0 / 120;
    s = s * -d + 1.0 / 24;
    s = s * -d + 1.0 / 6;
    s = s * -d + 0.5;
#endif
    T series = s * d * d;
    T direct = d + (F(exp)(-d) - 1);          /* exp(-d) is +inf for d < -88 (float): right */
    T a = d < 0 ? -d : d;
    return a < (T)0.1 ? series : direct;
}

/* First index of an entry equal to m in x[0..n) (m is an entry of x). */
static inline ptrdiff_t F(first_index_of)(const T *x, ptrdiff_t n, T m)
{
    for (ptrdiff_t i = 0; i < n; i++)
        if (x[i] == m) return i;
    return -1;
}

/* The largest entry of one chunk (NaN ignored), kept with its first index if it beats *best. */
static inline void F(argmax_chunk)(const T *x, ptrdiff_t n, ptrdiff_t start, double *best,
                                   ptrdiff_t *arg)
{
    ptrdiff_t whole = n - n % XENT_LANES;
    T tail_group[XENT_LANES], *tail = NULL;
    if (whole < n) {
        tail = tail_group;
        for (ptrdiff_t l = 0; l < XENT_LANES; l++)
            tail[l] = whole + l < n ? x[whole + l] : -(T)INFINITY;
    }
    T cmax = F(max_chunk)(x, whole, tail);
    if (cmax > *best) {   /* only where the max grows: a scan of a chunk in L1 */
        *best = cmax;
        *arg = start + F(first_index_of)(x, n, cmax);
    }
}

/* Pass 2 over one chunk: the KL and JSD sums of its entries, in T lanes. */
static inline void F(divergence_chunk)(const T *r, const T *c, ptrdiff_t n, T shift_r,
                                       T log_sum_r, T shift_c, T log_sum_c, T delta, double *kl,
                                       double *js)
{
    T k[XENT_LANES], j[XENT_LANES], gr[XENT_LANES], gc[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) k[l] = j[l] = 0;
    for (ptrdiff_t g = 0; g < n; g += XENT_LANES) {
        const T *pr = r + g, *pc = c + g;
        if (g + XENT_LANES > n) {   /* the last partial group, padded with -inf (adds 0) */
            for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
                gr[l] = g + l < n ? r[g + l] : -(T)INFINITY;
                gc[l] = g + l < n ? c[g + l] : -(T)INFINITY;
            }
            pr = gr;
            pc = gc;
        }
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T xr = pr[l], xc = pc[l];
            /* (x_r - x_c) - delta keeps the digits of close models; where the logits are far
             * apart (|x_r - x_c| above |log p| + |log q|: a logit of 1e30 against 0.1) it
             * would lose them all, and (x_r - lse_r) - (x_c - lse_c) is the accurate one */
            T lp = (xr - shift_r) - log_sum_r, lq = (xc - shift_c) - log_sum_c, gap = xr - xc;
            T far = (gap < 0 ? -gap : gap) > (lp < 0 ? -lp : lp) + (lq < 0 ? -lq : lq);
            T d = far ? lp - lq : gap - delta;
            T p = F(exp)(lp), q = F(exp)(lq);
            T tk = p * F(kl_term)(d);
            tk = xc == -(T)INFINITY ? (T)INFINITY : tk;   /* q = 0 where p > 0 */
            tk = p == 0 ? q : tk;      /* p = 0 (or below T's range): q's mass there */
            T m = (p + q) / 2;
            /* one of p, q is 0: d = +-inf, h = 2 ln 2; both (d NaN): no term */
            T tj = m == 0 ? 0 : m * F(js_term)(d);
            k[l] += tk;
            j[l] += tj;
        }
    }
    *kl += F(lanes_sum)(k);
    *js += 0.5 * F(lanes_sum)(j);
}

/*
 * Both rows of one token: st->ref and st->cand their log-sum-exp states, *_argmax the first
 * index of each row's largest entry (-1 if none is above -inf), kl = KL(ref || cand) and
 * js = JSD(ref, cand) in nats (NaN unless both log-sum-exps are finite: a row holding NaN or
 * +inf, or all -inf, has no softmax).
 */
static void F(row_compare)(const T *ref, const T *cand, ptrdiff_t n, xent_compare_state *st)
{
    st->ref = xent_lse_init();
    st->cand = xent_lse_init();
    st->ref_max = st->cand_max = -INFINITY;
    st->ref_argmax = st->cand_argmax = -1;
    st->kl = st->js = 0;
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK) {   /* pass 1: one read */
        ptrdiff_t len = xent_chunk_len(n, start, XENT_CHUNK);
        F(argmax_chunk)(ref + start, len, start, &st->ref_max, &st->ref_argmax);
        F(argmax_chunk)(cand + start, len, start, &st->cand_max, &st->cand_argmax);
        F(lse_chunk)(ref + start, len, &st->ref);
        F(lse_chunk)(cand + start, len, &st->cand);
    }
    if (!isfinite(xent_lse_value(&st->ref)) || !isfinite(xent_lse_value(&st->cand))) {
        st->kl = st->js = NAN;
        return;
    }
    /* Each log-sum-exp in its two parts, shift (the row's max) and log_sum: log p_i is
     * (x_i - shift) - log_sum, exact in its first step where x_i is near the max. Their sum
     * would round log_sum away at large logits (1e17 + log 2 is 1e17 in double, and every
     * entry of a row of equal logits then got q = 1). Their difference rounded once. */
    double shift_r = st->ref.shift, log_sum_r = xent_lse_log_sum(&st->ref);
    double shift_c = st->cand.shift, log_sum_c = xent_lse_log_sum(&st->cand);
    T delta = (T)((shift_r - shift_c) + (log_sum_r - log_sum_c));
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)      /* pass 2: in cache */
        F(divergence_chunk)(ref + start, cand + start, xent_chunk_len(n, start, XENT_CHUNK),
                            (T)shift_r, (T)log_sum_r, (T)shift_c, (T)log_sum_c, delta, &st->kl,
                            &st->js);
}
