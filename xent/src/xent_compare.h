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
 *   KL  = sum_i p_i d_i
 *   JSD = 1/2 sum_i [p_i (ln 2 - softplus(-d_i)) + q_i (ln 2 - softplus(d_i))]
 *
 * Written with d_i, not with log p_i and log q_i apart: when the two models are close (a
 * quantised model against the original), d_i is small and exact where the logits are close
 * (Sterbenz), so the terms carry no rounding of the log-sum-exps themselves, only of their
 * (small) difference.
 */

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
static inline void F(divergence_chunk)(const T *r, const T *c, ptrdiff_t n, T lse_r, T lse_c,
                                       T delta, double *kl, double *js)
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
            T d = (xr - xc) - delta;
            T p = F(exp)(xr - lse_r), q = F(exp)(xc - lse_c);
            T a = d < 0 ? -d : d;
            T s = F(log1p)(F(exp)(-a));              /* softplus(+-d) = max(+-d, 0) + s */
            T sp_pos = (d > 0 ? d : 0) + s, sp_neg = (d < 0 ? -d : 0) + s;
            T tk = p * d;
            tk = xc == -(T)INFINITY ? (T)INFINITY : tk;   /* q = 0 where p > 0 */
            tk = xr == -(T)INFINITY ? 0 : tk;             /* p = 0: no term */
            T tp = xr == -(T)INFINITY ? 0 : p * ((T)XENT_LN2 - sp_neg);
            T tq = xc == -(T)INFINITY ? 0 : q * ((T)XENT_LN2 - sp_pos);
            k[l] += tk;
            j[l] += tp + tq;
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
    double lse_r = xent_lse_value(&st->ref), lse_c = xent_lse_value(&st->cand);
    if (!isfinite(lse_r) || !isfinite(lse_c)) {
        st->kl = st->js = NAN;
        return;
    }
    /* lse_r and lse_c as T for p and q; their difference rounded once, from doubles */
    T delta = (T)(lse_r - lse_c);
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)      /* pass 2: in cache */
        F(divergence_chunk)(ref + start, cand + start, xent_chunk_len(n, start, XENT_CHUNK),
                            (T)lse_r, (T)lse_c, delta, &st->kl, &st->js);
}
