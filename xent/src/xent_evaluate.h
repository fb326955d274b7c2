/*
 * Evaluation: the loss, rank, entropy, top-1 probability and sum of squared probabilities of a
 * row, in one read.
 * Part of one instantiation (see xent_instantiate.h).
 */

/*
 * Sum of e = exp(x[i] - shift) over the whole groups, in *xlogit the sum of e (x[i] - shift)
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

/* Entries of x[0..n) that are not <= target: strictly greater, or NaN (any, if target is). */
static inline ptrdiff_t F(count_not_le)(const T *x, ptrdiff_t n, T target)
{
    int count = 0;   /* a chunk is short: int lanes are as wide as float lanes */
#pragma omp simd reduction(+ : count)
    for (ptrdiff_t i = 0; i < n; i++) count += !(x[i] <= target);
    return count;
}

/* Fold one chunk (at most XENT_CHUNK entries) into the evaluation state. */
static inline void F(evaluate_chunk)(const T *x, ptrdiff_t n, T target, xent_eval_state *st)
{
    ptrdiff_t whole = n - n % XENT_LANES;
    T tail[XENT_LANES];
    st->rank += F(count_not_le)(x, n, target);
    T cmax = F(max_groups)(x, whole);
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
            double r = exp(d);
            st->xlogit = r * st->xlogit + (r == 0 ? 0.0 : r * d) * st->sum;
            st->sum *= r;
            st->sum_sq *= r * r;   /* r^2 may underflow to 0: the old squares are then too */
        }
        st->shift = shift;
    }
    double b, b_tail = 0, q, q_tail = 0;
    double sum = F(sum_exp_xlogit_groups)(x, whole, (T)st->shift, &b, &q);
    if (whole < n)
        sum += F(sum_exp_xlogit_groups)(tail, XENT_LANES, (T)st->shift, &b_tail, &q_tail);
    st->sum += sum;
    st->xlogit += b + b_tail;
    st->sum_sq += q + q_tail;
}

/*
 * One read of a row: its log-sum-exp parts, the entropy's sum, the target's rank, the largest
 * entry and the sum of squared exps (start from xent_eval_init). Online over chunks of XENT_CHUNK_BYTES, so any length works.
 */
static void F(row_evaluate)(const T *x, ptrdiff_t n, T target, xent_eval_state *st)
{
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
        F(evaluate_chunk)(x + start, xent_chunk_len(n, start, XENT_CHUNK), target, st);
}
