/*
 * Evaluation: the loss, rank, entropy, top-1 probability and sum of squared probabilities of a
 * row, in one read.
 * Part of one instantiation (see xent_instantiate.h).
 */

/*
 * (Used by xent_divergence.h.) Sum of e = exp(x[i] - shift) over the whole groups, in *xlogit the sum of e (x[i] - shift)
 * (a term is 0 where e is 0, so -inf entries add nothing; NaN spreads) and in *sq the sum of
 * e^2 (for sum p^2). The same lanes and order as sum_exp_chunk, with the entropy's sum and the
 * squares alongside: one more multiply-add per entry, no more reads.
 */
static inline double F(sum_exp_xlogit_groups)(const T *x, ptrdiff_t n, T shift, double *xlogit,
                                              double *sq)
{
    T s[XENT_LANES], b[XENT_LANES], q[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) s[l] = b[l] = q[l] = 0;
    for (ptrdiff_t g = 0; g + XENT_LANES <= n; g += XENT_LANES) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T d = x[g + l] - shift;
            T e = F(exp)(d);
            /* where e is 0, d may be -inf: the clamp keeps 0 * d at 0 (a max, not a select
             * on e, which gcc does not vectorise here) */
            T dc = d < XENT_EXP_UNDER ? XENT_EXP_UNDER : d;
            s[l] += e;
            b[l] += e * dc;
            q[l] += e * e;
        }
    }
    *sq = F(lanes_sum)(q);
    *xlogit = F(lanes_sum)(b);
    return F(lanes_sum)(s);
}

/*
 * Over the whole groups of x[0..n): into *rest the sum of e = exp(x[i] - shift) of the entries
 * below the shift, into *ties the count of entries equal to it (their e is exactly 1, kept
 * apart as in sum_exp_group, so the loss of a confident row keeps its digits), into *xlogit
 * the sum of e (x[i] - shift) (a term is 0 where e is 0, so -inf entries add nothing; NaN
 * spreads) and into *sq the sum of e^2 (for sum p^2). One read, a few multiply-adds more
 * than the log-sum-exp's.
 */
static inline void F(sum_exp_ties_xlogit_groups)(const T *x, ptrdiff_t n, T shift,
                                                 double *rest, double *ties, double *xlogit,
                                                 double *sq)
{
    T s[XENT_LANES], c[XENT_LANES], b[XENT_LANES], q[XENT_LANES];
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
    /* sum_exp_vec's terms (the same bits as the loop below: a tie's term is exactly 1, an
     * underflowing one 0, and b is sum_exp_vec's bound, sum e (x - shift) of the terms kept),
     * with the squares of all the terms, ties included; the squares' sum alone may differ
     * from the loop's in its last bits, as its multiply-add is fused */
    const __m512 sh = _mm512_set1_ps(shift), one = _mm512_set1_ps(1.0f);
    __m512 vs = _mm512_setzero_ps(), vothers = vs, vb = vs, vq = vs;
    ptrdiff_t groups = 0;
    for (ptrdiff_t g = 0; g + XENT_LANES <= n; g += XENT_LANES, groups++) {
        __builtin_prefetch(x + n + g, 0, 3);   /* as below */
        __mmask16 other;
        __m512 term = F(sum_exp_vec)(x + g, sh, &vs, &vothers, &vb, &other);
        __m512 e = _mm512_mask_blend_ps(other, one, term);   /* a tie's term: 1 */
        vq = _mm512_fmadd_ps(e, e, vq);   /* fused (the loop below rounds e^2 first) */
    }
    _mm512_storeu_ps(s, vs);
    _mm512_storeu_ps(c, vothers);
    _mm512_storeu_ps(b, vb);
    _mm512_storeu_ps(q, vq);
    *sq += F(lanes_sum)(q);
    *xlogit += F(lanes_sum)(b);
    *ties += (double)(groups * XENT_LANES) - F(lanes_sum)(c);
    *rest += F(lanes_sum)(s);
    return;
#endif
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) s[l] = c[l] = b[l] = q[l] = 0;
    for (ptrdiff_t g = 0; g + XENT_LANES <= n; g += XENT_LANES) {
        /* The next chunk (or, for contiguous rows, the next row) is fetched while this one
         * is busy with exp, as sum_exp_chunk does: the next chunk's first pass (the rank's
         * count) then finds it in cache instead of waiting on memory. A hint: never faults. */
        __builtin_prefetch(x + n + g, 0, 3);
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T d = x[g + l] - shift;
            T tie = x[g + l] == shift ? 1 : 0;
            T e = F(exp_term)(d);
            /* where e is 0, d may be -inf: the clamp keeps 0 * d at 0 (a max, not a select
             * on e, which gcc does not vectorise here) */
            T dc = d < XENT_EXP_UNDER ? XENT_EXP_UNDER : d;
            s[l] += e - tie;
            c[l] += tie;
            b[l] += e * dc;
            q[l] += e * e;
        }
    }
    *sq += F(lanes_sum)(q);
    *xlogit += F(lanes_sum)(b);
    *ties += F(lanes_sum)(c);
    *rest += F(lanes_sum)(s);
}

/* Entries of x[0..n) that are not <= target: strictly greater, or NaN (any, if target is). */
static inline ptrdiff_t F(count_not_le)(const T *x, ptrdiff_t n, T target)
{
    int count = 0;   /* a chunk is short: int lanes are as wide as float lanes */
#pragma omp simd reduction(+ : count)
    for (ptrdiff_t i = 0; i < n; i++) count += !(x[i] <= target);
    return count;
}

/*
 * Largest entry of the whole groups in x[0..n) (NaN ignored; -inf if none: max_groups' lanes
 * and order, so the same value, zero's sign included) and, added to *rank, the count of
 * those entries that are not <= target: the rank's count and the max in one pass.
 */
static inline T F(max_rank_groups)(const T *x, ptrdiff_t n, T target, ptrdiff_t *rank)
{
    T m[XENT_LANES];
    int32_t count[XENT_LANES];   /* a chunk is short: 32-bit lanes hold its counts */
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        m[l] = -(T)INFINITY;
        count[l] = 0;
    }
    for (ptrdiff_t g = 0; g + XENT_LANES <= n; g += XENT_LANES) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            m[l] = x[g + l] > m[l] ? x[g + l] : m[l];
            count[l] += !(x[g + l] <= target);
        }
    }
    ptrdiff_t total = 0;
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) total += count[l];
    *rank += total;
    return F(lanes_max)(m);
}

/* Fold one chunk (at most XENT_CHUNK entries) into the evaluation state. */
static inline void F(evaluate_chunk)(const T *x, ptrdiff_t n, T target, xent_eval_state *st)
{
    ptrdiff_t whole = n - n % XENT_LANES;
    T tail[XENT_LANES];
    T cmax = F(max_rank_groups)(x, whole, target, &st->rank);
    st->rank += F(count_not_le)(x + whole, n - whole, target);
    if (whole < n) {
        for (ptrdiff_t l = 0; l < XENT_LANES; l++)
            tail[l] = whole + l < n ? x[whole + l] : -(T)INFINITY;
        T tmax = F(max_groups)(tail, XENT_LANES);
        cmax = tmax > cmax ? tmax : cmax;
    }
    if (cmax > st->max) st->max = cmax;
    if (cmax == -(T)INFINITY) {   /* all -inf (contributes 0) or NaN */
        if (F(has_nan)(x, n)) st->sum = st->xlogit = st->sum_sq = NAN;
        return;
    }
    T shift = cmax > XENT_T_MAX ? XENT_T_MAX : cmax;
    if (shift > st->shift) {
        if (st->sum != 0) {   /* sum e (x - s) = r sum e' (x - s') + r (s' - s) sum e' */
            /* r (s' - s) first: (s' - s) sum e' overflows for a jump of ~1e308 (and s' - s
             * itself may be -inf), then r = 0 made it NaN. Where r is 0 the old terms are
             * 0 against the new shift; NaN in the sums still spreads. */
            double d = st->shift - (double)shift;
            double r = xent_exp_diff(st->shift, (double)shift);   /* d's rounding put back */
            st->xlogit = r * st->xlogit + (r == 0 ? 0.0 : r * d) * st->sum;
            st->rest = st->ties * r + st->rest * r;   /* the old ties are no longer ties */
            st->ties = 0;
            st->sum = st->rest;
            st->sum_sq *= r * r;   /* r^2 may underflow to 0: the old squares are then too */
        }
        st->shift = shift;
    }
    if (cmax > XENT_T_MAX) {   /* +inf: exp(inf - T_MAX) = inf, which exp_term does not give */
        double inf_terms = F(has_nan)(x, n) ? NAN : INFINITY;
        st->rest += inf_terms;
        st->sum = st->ties + st->rest;
        st->xlogit += inf_terms;
        st->sum_sq += inf_terms;
        return;
    }
    F(sum_exp_ties_xlogit_groups)(x, whole, (T)st->shift, &st->rest, &st->ties, &st->xlogit,
                                  &st->sum_sq);
    if (whole < n)
        F(sum_exp_ties_xlogit_groups)(tail, XENT_LANES, (T)st->shift, &st->rest, &st->ties,
                                      &st->xlogit, &st->sum_sq);
    st->sum = st->ties + st->rest;
}

/*
 * One read of a row: its log-sum-exp parts, the entropy's sum, the target's rank, the largest
 * entry and the sum of squared exps (start from xent_eval_init). Online over chunks of XENT_CHUNK_BYTES, so any length works.
 */
static void F(row_evaluate)(const T *x, ptrdiff_t n, T target, xent_eval_state *st)
{
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
        F(evaluate_chunk)(x + start, xent_chunk_len(n, start, XENT_CHUNK), target, st);
    F(eval_rescue)(x, n, st);   /* float: a row that could miss 1e-6 gets its rest exact */
}

/*
 * Evaluation states of up to XENT_LANES short rows (n <= XENT_SMALL_ROW) at once, one row per
 * vector lane, as rows_lse_small does for the log-sum-exp: the rows (stride in elements) are
 * copied transposed into a small buffer, then the max, the terms, their ties, the entropy's
 * sum, the squares and the rank run with every lane busy. target[r] is row r's target logit.
 *
 * With cols, each row's columns (XENT_EVAL_* of xent_kernels.h: what evaluate sums) are
 * computed in the lanes too, w[r] being row r's class weight: the log of the sum in
 * rows_index_loss_small's form (float32 rows' losses have cross_entropy's bits; float64 ones,
 * which cross_entropy sums with compensation, are within a few ulp), the target's probability
 * from its own term of the sum, and the top-1 probability 1 / sum (the max is the shift).
 * These were a scalar libm log and exp and four divisions per row (a fifth of evaluate's
 * time at C = 10; for longer rows, where _row_columns still serves, doing the same in lanes
 * measured no faster).
 *
 * A row with a +inf or no finite entry (all -inf, or NaN only) is done by row_evaluate, and
 * its columns are left to the caller: bit r of the result is set for such a row r.
 */
static int F(rows_evaluate_small)(const T *x, ptrdiff_t stride, ptrdiff_t nrows, ptrdiff_t n,
                                  const T *target, xent_eval_state *st, const double *w,
                                  double *cols)
{
    T buf[XENT_SMALL_ROW][XENT_LANES], m[XENT_LANES], shift[XENT_LANES], tgt[XENT_LANES];
    T c[XENT_LANES], b[XENT_LANES], q[XENT_LANES], rank[XENT_LANES], e_t[XENT_LANES];
    double s[XENT_LANES], wt[XENT_LANES], out[XENT_EVAL_FIELDS][XENT_LANES];
    int left = 0;
    F(transpose_rows)(x, stride, nrows, n, buf);
    for (ptrdiff_t r = 0; r < XENT_LANES; r++) {
        tgt[r] = target[r < nrows ? r : nrows - 1];
        wt[r] = cols && w ? w[r < nrows ? r : nrows - 1] : 1.0;
    }
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = -(T)INFINITY;
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = buf[j][l] > m[l] ? buf[j][l] : m[l];
    }
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        /* rows left to row_evaluate get a harmless shift here; their lanes are unused */
        shift[l] = m[l] > XENT_T_MAX || m[l] == -(T)INFINITY ? 0 : m[l];
        s[l] = c[l] = b[l] = q[l] = rank[l] = e_t[l] = 0;
    }
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T v = buf[j][l], d = v - shift[l];
            T tie = v == shift[l] ? 1 : 0;
            T e = F(exp_small)(v, shift[l]);   /* as rows_lse_small: the same loss */
            T dc = d < XENT_EXP_UNDER ? XENT_EXP_UNDER : d;
            s[l] += (double)(e - tie);
            c[l] += tie;
            b[l] += e * dc;
            q[l] += e * e;
            rank[l] += !(v <= tgt[l]) ? 1 : 0;
            /* the target's term as the sum has it (every entry equal to the target's value
             * has this term): exactly 1 where the target is the max */
            e_t[l] = v == tgt[l] ? e : e_t[l];
        }
    }
    F(group_rescue)(buf, n, shift, c, s);   /* float: as rows_lse_small, the same loss */
    if (cols) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            /* log(sum) = log(ties) + log1p(rest / ties), as rows_index_loss_small forms it
             * (ties >= 1 in a lane that is used: the max is a tie) */
            double ties = (double)c[l] > 1 ? (double)c[l] : 1.0, rest = s[l];
            double sum = (double)c[l] + rest;
            double log_sum = xent_log_lanes(ties) + xent_log1p_lanes(rest / ties);
            double inv = 1.0 / sum, x_t = (double)tgt[l];
            double wl = wt[l] * (((double)shift[l] - x_t) + log_sum);
            double ent = log_sum - (double)b[l] * inv;
            double brier = (double)q[l] * inv * inv - 2 * ((double)e_t[l] * inv) + 1;
            out[XENT_EVAL_LOSS][l] = wl;
            out[XENT_EVAL_WEIGHT][l] = wt[l];
            out[XENT_EVAL_ENTROPY][l] = ent;
            out[XENT_EVAL_LOSS_SQ][l] = wl * wl;
            out[XENT_EVAL_WEIGHT_LOSS][l] = wt[l] * wl;
            out[XENT_EVAL_WEIGHT_SQ][l] = wt[l] * wt[l];
            out[XENT_EVAL_ENTROPY_SQ][l] = ent * ent;
            out[XENT_EVAL_BRIER][l] = brier;
            out[XENT_EVAL_BRIER_SQ][l] = brier * brier;
            out[XENT_EVAL_CONFIDENCE][l] = inv;
        }
        for (ptrdiff_t r = 0; r < nrows; r++)
            for (int f = 0; f < XENT_EVAL_FIELDS; f++) cols[r * XENT_EVAL_FIELDS + f] = out[f][r];
    }
    for (ptrdiff_t r = 0; r < nrows; r++) {
        st[r] = xent_eval_init();
        if (m[r] > XENT_T_MAX || m[r] == -(T)INFINITY) {
            F(row_evaluate)(x + r * stride, n, target[r], &st[r]);
            left |= 1 << r;
            continue;
        }
        st[r].shift = (double)m[r];
        st[r].max = (double)m[r];
        st[r].ties = (double)c[r];
        st[r].rest = s[r];
        st[r].sum = (double)c[r] + s[r];
        st[r].xlogit = (double)b[r];
        st[r].sum_sq = (double)q[r];
        st[r].rank = (ptrdiff_t)rank[r];
    }
    return left;
}
