/*
 * Divergences between two rows of logits (distillation): the student's s and the teacher's
 * t, both read at the scale 1 / temperature. One pass over both rows gives their two
 * log-sum-exps and KL; a second read (from cache, the row just seen) gives JSD, total
 * variation and the gradient with respect to the student's logits.
 * Part of one instantiation (see xent_instantiate.h).
 */

/* What row_divergence and row_divergence_grad compute (xent/_kernels_divergence.pxi). */
#define XENT_DIV_FORWARD_KL 0   /* KL(teacher || student) */
#define XENT_DIV_REVERSE_KL 1   /* KL(student || teacher) */
#define XENT_DIV_JSD 2          /* beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q */
#define XENT_DIV_TV 3           /* sum |P - Q| / 2 */
#define XENT_DIV_SOFTMAX 4      /* the gradient pass only: out = coef softmax(student) */

/* Pad a chunk's last partial group with -inf (exp 0, and weight 0 in every sum below). */
static inline const T *F(padded_tail)(const T *x, ptrdiff_t n, ptrdiff_t whole, T *group)
{
    if (whole == n) return NULL;
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) group[l] = whole + l < n ? x[whole + l] : -(T)INFINITY;
    return group;
}

/*
 * chi(y) = expm1(y) - y = y^2/2! + y^3/3! + ..., for |y| <= 1 by its series (to y^11/11! in
 * float, y^18/18! in double: the rest is below a tenth of an ulp), where expm1(y) - y would
 * cancel. The KL divergence of two close distributions is a mean of these: second order in
 * the logits' differences, which the first-order terms of the textbook formula bury.
 */
XENT_LANES_INLINE T F(chi_series)(T y)
{
#if XENT_F32
    T p = 1.0f / 39916800;
    p = p * y + 1.0f / 3628800;
    p = p * y + 1.0f / 362880;
    p = p * y + 1.0f / 40320;
    p = p * y + 1.0f / 5040;
    p = p * y + 1.0f / 720;
    p = p * y + 1.0f / 120;
    p = p * y + 1.0f / 24;
    p = p * y + 1.0f / 6;
    p = p * y + 0.5f;
#else
    T p = 1.0 / 6402373705728000.0;
    p = p * y + 1.0 / 355687428096000.0;
    p = p * y + 1.0 / 20922789888000.0;
    p = p * y + 1.0 / 1307674368000.0;
    p = p * y + 1.0 / 87178291200.0;
    p = p * y + 1.0 / 6227020800.0;
    p = p * y + 1.0 / 479001600.0;
    p = p * y + 1.0 / 39916800.0;
    p = p * y + 1.0 / 3628800.0;
    p = p * y + 1.0 / 362880.0;
    p = p * y + 1.0 / 40320.0;
    p = p * y + 1.0 / 5040.0;
    p = p * y + 1.0 / 720.0;
    p = p * y + 1.0 / 120.0;
    p = p * y + 1.0 / 24.0;
    p = p * y + 1.0 / 6.0;
    p = p * y + 0.5;
#endif
    return p * y * y;
}

/* expm1(y), accurate near 0 (y + chi(y)); +inf above exp's range, -1 far below. */
XENT_LANES_INLINE T F(expm1)(T y)
{
    T near = y + F(chi_series)(y);
    return (y <= 1 && y >= -1) ? near : F(exp)(y) - 1;
}

/* One group of the textbook KL pass: lane sums of exp(p' - sp), exp(q' - sq) and
 * exp(p' - sp) (p' - q'), with p' = scale p. A zero weight adds 0 (p' may be -inf). */
static inline void F(kl_group)(const T *p, const T *q, T scale, T sp, T sq, T *ap, T *aq, T *ad)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        T ps = p[l] * scale, qs = q[l] * scale;
        T ep = F(exp)(ps - sp);
        T eq = F(exp)(qs - sq);
        ap[l] += ep;
        aq[l] += eq;
        ad[l] += ep > 0 ? ep * (ps - qs) : 0;
    }
}

/*
 * One group of the second-order KL pass (see row_kl_second_order): lane sums of
 * e = exp(p' - sp), e (p' - q'), the terms of b and e r, with p' = scale p, q' = scale q,
 * r = p' - q' - c. b's term is e chi(-r) = e exp(-r) - e + e r: by chi's series where
 * |r| <= 1 (close distributions, the case these sums are for), else with e exp(-r) as
 * exp(q' - sp + c), which holds Q's mass also where e underflowed or P is 0 (p = -inf), and
 * does not overflow where exp(-r) alone would (r < -709 in double, -88 in float).
 */
static inline void F(kl2_group)(const T *p, const T *q, T scale, T sp, T c, T *ap, T *ad,
                                T *ab, T *ar)
{
    T r[XENT_LANES], e[XENT_LANES];
    int far = 0;
#pragma omp simd reduction(| : far)
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        T ps = p[l] * scale, qs = q[l] * scale;
        T ep = F(exp)(ps - sp);
        ap[l] += ep;
        ad[l] += ep > 0 ? ep * (ps - qs) : 0;
        T rl = (p[l] - q[l]) * scale - c;   /* p - q first: exact for close logits */
        r[l] = rl;
        e[l] = ep;
        far |= !(rl <= 1 && rl >= -1);   /* NaN too */
    }
    if (far) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T rl = r[l], el = e[l], y = q[l] * scale - (sp - c);
            T er = el > 0 ? el * rl : 0;   /* 0 where P is 0 (r may be infinite) */
            /* exp holds its range only up to XENT_EXP_CLAMP: beyond, b is inf (the caller
             * turns to row_kl_logits) */
            T ey = y > XENT_EXP_CLAMP ? (T)INFINITY : F(exp)(y);
            T x = (rl <= 1 && rl >= -1) ? el * F(chi_series)(-rl) : (ey - el) + er;
            ab[l] += x;
            ar[l] += er;
        }
    } else {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            ab[l] += e[l] * F(chi_series)(-r[l]);
            ar[l] += e[l] * r[l];
        }
    }
}

/* Fold one chunk (at most XENT_CHUNK entries) into st = {shift_p, sum_p, shift_q, sum_q, dot}
 * (see row_kl_logits). */
static inline void F(kl_chunk)(const T *p, const T *q, ptrdiff_t n, T scale, double *st)
{
    ptrdiff_t whole = n - n % XENT_LANES;
    T tp[XENT_LANES], tq[XENT_LANES];
    const T *tailp = F(padded_tail)(p, n, whole, tp), *tailq = F(padded_tail)(q, n, whole, tq);
    T mp = F(max_chunk)(p, whole, tailp) * scale, mq = F(max_chunk)(q, whole, tailq) * scale;
    /* the shifts grow to the largest scaled entries seen (+inf held at T_MAX); the sums
     * weighted by the old shift are rescaled, as in lse_chunk */
    if (mp > XENT_T_MAX) mp = XENT_T_MAX;
    if (mq > XENT_T_MAX) mq = XENT_T_MAX;
    if (mp > st[0]) {
        if (st[1] != 0) {
            double r = exp(st[0] - (double)mp);
            st[1] *= r;
            st[4] *= r;
        }
        st[0] = mp;
    }
    if (mq > st[2]) {
        if (st[3] != 0) st[3] *= exp(st[2] - (double)mq);
        st[2] = mq;
    }
    /* a side still all -inf: shift by 0, so its exp terms are exactly 0 */
    T sp = st[0] == -INFINITY ? 0 : (T)st[0], sq = st[2] == -INFINITY ? 0 : (T)st[2];
    T ap[XENT_LANES], aq[XENT_LANES], ad[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) ap[l] = aq[l] = ad[l] = 0;
    for (ptrdiff_t g = 0; g < whole; g += XENT_LANES)
        F(kl_group)(p + g, q + g, scale, sp, sq, ap, aq, ad);
    if (tailp) F(kl_group)(tailp, tailq, scale, sp, sq, ap, aq, ad);
    st[1] += F(lanes_sum)(ap);
    st[3] += F(lanes_sum)(aq);
    st[4] += F(lanes_sum)(ad);
}

/*
 * One read of two rows p and q: st = {shift_p, sum_p, shift_q, sum_q, dot} (start from
 * {-inf, 0, -inf, 0, 0}), so that with P = softmax(scale p), Q = softmax(scale q):
 * lse_p = shift_p + log(sum_p), lse_q likewise, and
 * KL(P || Q) = dot / sum_p - lse_p + lse_q.
 * That textbook form subtracts two first-order terms whose difference is the second-order KL
 * of close distributions: it keeps only the digits the log-sum-exps share (a KL of 4e-5 of
 * float32 rows was 5e-4 off relative). row_kl_second_order keeps them.
 */
static void F(row_kl_logits)(const T *p, const T *q, ptrdiff_t n, T scale, double *st)
{
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
        F(kl_chunk)(p + start, q + start, xent_chunk_len(n, start, XENT_CHUNK), scale, st);
}

/* Fold one chunk into st (see row_kl_second_order). */
static inline void F(kl2_chunk)(const T *p, const T *q, ptrdiff_t n, T scale, double *st)
{
    ptrdiff_t whole = n - n % XENT_LANES;
    T tp[XENT_LANES], tq[XENT_LANES];
    const T *tailp = F(padded_tail)(p, n, whole, tp), *tailq = F(padded_tail)(q, n, whole, tq);
    T pmax = F(max_chunk)(p, whole, tailp), mp = pmax * scale;
    if (st[5] != st[5] && pmax > -(T)INFINITY) {
        /* c: scale (p - q) where p is largest in the row's first chunk with a finite entry,
         * so that r is small where P has its mass when P and Q are close */
        ptrdiff_t j = 0;
        while (j < n && p[j] != pmax) j++;
        T c = (p[j] - q[j]) * scale;
        st[5] = c - c == 0 ? c : 0;   /* finite, or 0 */
    }
    if (mp > XENT_T_MAX) mp = XENT_T_MAX;
    if (mp > st[0]) {
        if (st[1] != 0) {
            double r = exp(st[0] - (double)mp);
            st[1] *= r;
            st[2] *= r;
            st[3] *= r;
            st[4] *= r;
        }
        st[0] = mp;
    }
    if (st[0] == -INFINITY) {
        /* no finite p in the row yet, so no shift to hold Q's mass here against: flagged */
        if (F(max_chunk)(q, whole, tailq) > -(T)INFINITY) st[6] = 1;
        return;
    }
    T sp = (T)st[0], c = (T)st[5];
    st[5] = c;   /* the c these sums use, in T */
    T ap[XENT_LANES], ad[XENT_LANES], ab[XENT_LANES], ar[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) ap[l] = ad[l] = ab[l] = ar[l] = 0;
    for (ptrdiff_t g = 0; g < whole; g += XENT_LANES)
        F(kl2_group)(p + g, q + g, scale, sp, c, ap, ad, ab, ar);
    if (tailp) F(kl2_group)(tailp, tailq, scale, sp, c, ap, ad, ab, ar);
    st[1] += F(lanes_sum)(ap);
    st[2] += F(lanes_sum)(ad);
    st[3] += F(lanes_sum)(ab);
    st[4] += F(lanes_sum)(ar);
}

/*
 * The KL divergence of close distributions with its own digits. One read of two rows p and
 * q: st = {shift_p, sum_p, dot, b, a, c, flag} (start from {-inf, 0, 0, 0, 0, NaN, 0}), with
 * P = softmax(scale p), Q = softmax(scale q), r = scale (p - q) - c, weights
 * e = exp(scale p - shift_p), a / sum_p = E_P[r] and b / sum_p = E_P[chi(-r)] >= 0
 * (chi(y) = expm1(y) - y), Q's mass where P is 0 included. Since
 * 1 + (b - a) / sum_p = exp(c + lse_q - lse_p), with A = a / sum_p and B = b / sum_p:
 *   KL(P || Q) = A + log1p(B - A) = B - omega(B - A),  omega(x) = x - log1p(x) ~ x^2 / 2,
 *   lse_q - lse_p = log1p(B - A) - c,
 * sums of non-negative second-order terms where P and Q are close, in which neither
 * normalisation's rounding enters (the textbook form of row_kl_logits subtracts first-order
 * terms). c is scale (p - q) at the first chunk's largest p, or the caller's (rounded to T
 * and written back); flag is 1 where Q has finite entries before the row's first finite p
 * (no shift to hold them against: the caller uses row_kl_logits).
 */
static void F(row_kl_second_order)(const T *p, const T *q, ptrdiff_t n, T scale, double *st)
{
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
        F(kl2_chunk)(p + start, q + start, xent_chunk_len(n, start, XENT_CHUNK), scale, st);
}

/*
 * Per entry, from log Q = scale s - lse_s (student) and log P = scale t - lse_t (teacher): the
 * divergence's term and g = d divergence / d Q (up to a constant the softmax's Jacobian
 * removes). One function per kind, so that each loop calling one vectorises whole. The JSD's
 * log M = log(beta P + (1 - beta) Q) is a log-add-exp of the two logs (lb = log beta,
 * l1b = log(1 - beta)), accurate where P and Q are far below 1.
 */
static inline T F(jsd_term)(T lq, T lp, T lb, T l1b, T beta, T *g)
{
    T q = F(exp)(lq), p = F(exp)(lp);
    T u = lb + lp, v = l1b + lq;
    T hi = u > v ? u : v, lo = u > v ? v : u;
    T lm = hi + F(log1p)(F(exp)(lo - hi));
    lm = hi == -(T)INFINITY ? hi : lm;
    T tp = p > 0 ? beta * p * (lp - lm) : 0;
    T tq = q > 0 ? (1 - beta) * q * (lq - lm) : 0;
    *g = q > 0 ? (1 - beta) * (lq - lm) : 0;
    return tp + tq;
}

static inline T F(tv_term)(T lq, T lp, T *g)
{
    T q = F(exp)(lq), p = F(exp)(lp), d = p - q;
    *g = q > p ? (T)0.5 : (q < p ? (T)-0.5 : 0);
    return (d < 0 ? -d : d) / 2;
}

static inline T F(reverse_kl_term)(T lq, T lp, T *g)
{
    T q = F(exp)(lq);
    *g = q > 0 ? lq - lp : 0;
    return q > 0 ? q * (lq - lp) : 0;
}

/* The constants of a kind's terms, set up once per row. */
typedef struct {
    T scale, ls, lt, beta, lb, l1b;
    int kind;
} F(div_consts);

static inline F(div_consts) F(div_setup)(T scale, double lse_s, double lse_t, int kind,
                                         double beta)
{
    F(div_consts) k;
    k.scale = scale;
    k.ls = (T)lse_s;
    k.lt = (T)lse_t;
    k.beta = (T)beta;
    k.lb = beta > 0 ? (T)log(beta) : -(T)INFINITY;
    k.l1b = beta < 1 ? (T)log1p(-beta) : -(T)INFINITY;
    k.kind = kind;
    return k;
}

/* One group's terms into the lane sums al (divergence) and ag (Q g). */
static inline void F(div_group)(const T *s, const T *t, const F(div_consts) *k, T *al, T *ag)
{
    const T scale = k->scale, ls = k->ls, lt = k->lt;
    if (k->kind == XENT_DIV_JSD) {
        const T lb = k->lb, l1b = k->l1b, beta = k->beta;
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T lq = s[l] * scale - ls, g;
            al[l] += F(jsd_term)(lq, t[l] * scale - lt, lb, l1b, beta, &g);
            ag[l] += g * F(exp)(lq);
        }
    } else if (k->kind == XENT_DIV_TV) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T lq = s[l] * scale - ls, g;
            al[l] += F(tv_term)(lq, t[l] * scale - lt, &g);
            ag[l] += g * F(exp)(lq);
        }
    } else {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T lq = s[l] * scale - ls, g;
            al[l] += F(reverse_kl_term)(lq, t[l] * scale - lt, &g);
            ag[l] += g * F(exp)(lq);
        }
    }
}

/*
 * The second read of a row pair, for JSD, total variation and reverse KL: returns the sum of
 * the divergence's terms and writes to *qg the sum of Q g (what the gradient subtracts).
 * Whole groups, then the last partial group padded with -inf (terms 0), in lanes of T per
 * chunk, added in double.
 */
static double F(row_divergence)(const T *s, const T *t, ptrdiff_t n, T scale, double lse_s,
                                double lse_t, int kind, double beta, double *qg)
{
    F(div_consts) k = F(div_setup)(scale, lse_s, lse_t, kind, beta);
    double loss = 0, dot = 0;
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK) {
        ptrdiff_t m = xent_chunk_len(n, start, XENT_CHUNK), whole = m - m % XENT_LANES;
        T al[XENT_LANES], ag[XENT_LANES], ps[XENT_LANES], pt[XENT_LANES];
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) al[l] = ag[l] = 0;
        for (ptrdiff_t g = 0; g < whole; g += XENT_LANES)
            F(div_group)(s + start + g, t + start + g, &k, al, ag);
        if (F(padded_tail)(s + start, m, whole, ps)) {
            F(padded_tail)(t + start, m, whole, pt);
            F(div_group)(ps, pt, &k, al, ag);
        }
        loss += F(lanes_sum)(al);
        dot += F(lanes_sum)(ag);
    }
    *qg = dot;
    return loss;
}

/*
 * The gradient of a divergence with respect to the student's scaled logits, times coef:
 * out = coef (Q - P) for forward KL, coef Q (g - qg) for the others (the softmax's
 * Jacobian applied to d divergence / d Q), coef Q for XENT_DIV_SOFTMAX. out may be s (or t)
 * itself: each entry is read before it is written.
 */
static void F(row_divergence_grad)(const T *s, const T *t, ptrdiff_t n, T scale, double lse_s,
                                   double lse_t, int kind, double beta, double qg, double coef,
                                   double kl_c, double kl_log1p, T *out)
{
    T ls = (T)lse_s, lt = (T)lse_t, b = (T)beta, c = (T)coef, sub = (T)qg;
    T lb = beta > 0 ? (T)log(beta) : -(T)INFINITY;
    T l1b = beta < 1 ? (T)log1p(-beta) : -(T)INFINITY;
    if ((kind == XENT_DIV_FORWARD_KL || kind == XENT_DIV_REVERSE_KL) && kl_c == kl_c) {
        /* From row_kl_logits' sums (see there): log P_j - log Q_j = scale (p_j - q_j) - c +
         * log1p(b - a) exactly, with P the KL's first distribution, Q its second; so the
         * gradient keeps its digits where P and Q are close (Q - P = -Q expm1(that), not the
         * difference of two rounded probabilities). */
        T shift = (T)(kl_log1p - kl_c);
        if (kind == XENT_DIV_FORWARD_KL) {
            /* P teacher, Q student: d/ds = Q - P = -Q expm1(x), x = log P - log Q; where
             * x > 1, -P (-expm1(-x)) instead, so that a Q below the range and a P within it
             * (x beyond exp's range) still give -P. x is NaN only for a class both rows
             * exclude (-inf): 0. */
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) {
                T lq = s[j] * scale - ls, x = (t[j] - s[j]) * scale + shift;
                int near = x <= 1;
                T y = near ? x : -x;
                T d = F(exp)(near ? lq : lq + x) * F(expm1)(y);
                d = near ? d : -d;
                out[j] = x == x ? -c * d : 0;
            }
        } else {
            /* P student, Q teacher: d/ds = P (log P - log Q - KL); 0 where P is 0 */
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) {
                T pj = F(exp)(s[j] * scale - ls), x = (s[j] - t[j]) * scale + shift;
                out[j] = pj > 0 ? c * pj * (x - sub) : 0;
            }
        }
        return;
    }
    if (kind == XENT_DIV_FORWARD_KL) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            out[j] = c * (F(exp)(s[j] * scale - ls) - F(exp)(t[j] * scale - lt));
    } else if (kind == XENT_DIV_SOFTMAX) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) out[j] = c * F(exp)(s[j] * scale - ls);
    } else if (kind == XENT_DIV_JSD) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) {
            T lq = s[j] * scale - ls, gj;
            F(jsd_term)(lq, t[j] * scale - lt, lb, l1b, b, &gj);
            out[j] = c * F(exp)(lq) * (gj - sub);
        }
    } else if (kind == XENT_DIV_TV) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) {
            T lq = s[j] * scale - ls, gj;
            F(tv_term)(lq, t[j] * scale - lt, &gj);
            out[j] = c * F(exp)(lq) * (gj - sub);
        }
    } else {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) {
            T lq = s[j] * scale - ls, gj;
            F(reverse_kl_term)(lq, t[j] * scale - lt, &gj);
            out[j] = c * F(exp)(lq) * (gj - sub);
        }
    }
}

/*
 * Sum over a row of exp(x_j - shift) (x_j - shift) (0 for -inf entries), for the entropy of
 * softmax(x) = log-sum-exp - this / sum-exp (shift the row's, its sum-exp taken at the same
 * shift): the linear head's return_stats, which folds its tiles' rows one at a time.
 */
static double F(row_xlogit)(const T *x, ptrdiff_t n, double shift)
{
    double total = 0;
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK) {
        ptrdiff_t m = xent_chunk_len(n, start, XENT_CHUNK), whole = m - m % XENT_LANES;
        T group[XENT_LANES];
        double part, unused_sq;   /* the sum of squares is evaluate's (Brier), not needed here */
        F(sum_exp_xlogit_groups)(x + start, whole, (T)shift, &part, &unused_sq);
        total += part;
        if (F(padded_tail)(x + start, m, whole, group)) {
            F(sum_exp_xlogit_groups)(group, XENT_LANES, (T)shift, &part, &unused_sq);
            total += part;
        }
    }
    return total;
}
