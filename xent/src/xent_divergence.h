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
 * The JSD and total variation passes work per entry with d = log P - log Q (teacher over
 * student), not with the two logs apart: where P and Q are close, every term these
 * divergences are made of is a difference of nearly equal probabilities or logs, which the
 * textbook forms take between two rounded values (log Q = scale s - lse_s and log P apart, each
 * with the rounding of its log-sum-exp: a JSD of rows 1e-9 apart in float64 had no correct
 * digit). d is (scale (t - s) - c) + log1p(b - a) with row_kl_second_order's c and sums
 * (P = teacher; lse_s - lse_t = log1p(b - a) - c): t - s is exact for close logits, the first
 * part exact at the class c was taken from (and near it where the logits are close), and an
 * error e in the sums moves d by e, not by e |lse|. (log P - log Q, even where both logs are
 * tiny, has the rounding of both log-sum-exps: a pair of rows of two classes, P and Q near 1
 * at one, had 1e4 ulp of its total variation wrong.)
 *
 * With ad = |d|, big = max(P, Q) = exp(max(log P, log Q)), small = big e, e = exp(-ad):
 *   a = (big - small) / big = -expm1(-ad) (by chi's series for ad <= 1), so
 *   |P - Q| = big a, and for the JSD, with M = beta P + (1 - beta) Q and bb, bs the weights of
 *   big and small (beta and 1 - beta, or the other way round):
 *   zb = log(M / big) = log1p(-bs a) <= 0,  zs = log(M / small) = log1p(bb expm1(ad)) >= 0,
 *   zs - zb = ad, and
 *   beta P log(P / M) + (1 - beta) Q log(Q / M) = bb big chi(zb) + bs small chi(zs)
 * (chi(z) = expm1(z) - z >= 0; the two parts of each chi(z) = e^z - 1 - z add up to the
 * textbook term because bb big + bs small = M): two non-negative terms, second order in d where
 * d is small, with no first-order parts left to cancel. Since zs + |zb| = ad, one of them is at
 * least ad / 2: that one is taken as the other plus or minus ad (at most a factor 2 of its
 * error), the other by one log. zs >= ad / 2 exactly where ad >= 2 log(bs / bb).
 */

/* d = log P - log Q of one entry (see above), with lq = log Q and lp = log P. */
XENT_LANES_INLINE T F(div_log_ratio)(T s, T t, T scale, T ls, T lt, T c, T l, T *lq, T *lp)
{
    *lq = s * scale - ls;
    *lp = t * scale - lt;
    return ((t - s) * scale - c) + l;
}

/* -expm1(-x) for x >= 0 (1 - e where e = exp(-x) does not cancel), NaN for NaN. */
XENT_LANES_INLINE T F(one_minus_exp)(T x, T e)
{
    return x <= 1 ? x - F(chi_series)(-x) : 1 - e;
}

/*
 * One entry's JSD term from d, lq, lp (F(div_log_ratio)); *q = Q and *g = d JSD / d Q =
 * (1 - beta) log(Q / M). beta and b1 = 1 - beta are at least T's smallest normal (so no
 * chi is infinite), thr = 2 log((1 - beta) / beta) (the ad above which zb takes the log, for
 * d > 0; -thr for d < 0), held within XENT_EXP_CLAMP / 2 so that bb expm1(ad) stays finite.
 * sym (a constant): beta = 1/2, thr = 0, where zb always takes the log (no division).
 */
XENT_LANES_INLINE T F(jsd_term)(T d, T lq, T lp, T beta, T b1, T thr, const int sym, T *q, T *g)
{
    T ad = d < 0 ? -d : d;
    /* d > 0: P > Q, big is P (false for NaN: both excluded, big = 0); tested where used,
     * not kept as an int (a mask held in an int kept double's SSE2 loop scalar) */
    T bb = d > 0 ? beta : b1, bs = d > 0 ? b1 : beta;
    T e = F(exp)(-ad), a = F(one_minus_exp)(ad, e);
    T big = F(exp)(d > 0 ? lp : lq), small = big * e;
    /* the log for the smaller of |zb|, zs: log1p(-bs a), or log(bb + bs e) where 1 - bs a is
     * below 1/2 (there it is that sum that holds its digits); else log1p(bb a / e) */
    /* by_b and direct as T 0 or 1, every value computed whatever the lane takes: a division
     * under a condition, && or ||, or int conditions mixed with T ones kept the loop scalar */
    T by_b = sym ? 1 : (ad >= (d > 0 ? thr : -thr) ? 1 : 0);   /* thr = 0 where beta = 1/2 */
    T wb = -bs * a, ws = sym ? wb : bb * a / e, y = by_b > 0 ? wb : ws;
    T direct = y < (T)-0.5 ? by_b : 0;
    /* log1p(y) = log(u1) - ((u1 - 1) - y) / u1 (u1 = 1 + y rounded), the correction's 1 / u1
     * as 2 - u1: off by (u1 - 1)^2 relative, which costs under an ulp of the result for
     * -1/2 <= y <= 1; above 1 the correction itself is under an ulp of it */
    T u1 = 1 + y, u = direct > 0 ? bb + bs * e : u1;
    T corr = y > 1 ? 0 : ((u1 - 1) - y) * (2 - u1);
    T z = F(log)(u) - (direct > 0 ? 0 : corr);
    T zb = by_b > 0 ? z : z - ad, zs = by_b > 0 ? z + ad : z;
    /* chi(zb) = wb - zb below -1; small chi(zs) = bb big a - small zs above 1, in which the
     * exp of zs (beyond T's range where small is 0) does not appear */
    T cb = zb >= -1 ? F(chi_series)(zb) : wb - zb;
    T szs = small > 0 ? small * zs : 0;
    T cs = zs <= 1 ? small * F(chi_series)(zs) : bb * big * a - szs;
    T term = big > 0 ? bb * big * cb + bs * cs : 0;
    T z2 = d > 0 ? zs : zb;   /* log(M / Q) */
    *q = d > 0 ? small : big;
    *g = *q > 0 ? -b1 * z2 : 0;
    return term;
}

/* One entry's total-variation term |P - Q| / 2 = big a / 2 from d, lq, lp; *q = Q and *g =
 * d TV / d Q = sign(Q - P) / 2. */
XENT_LANES_INLINE T F(tv_term)(T d, T lq, T lp, T *q, T *g)
{
    T ad = d < 0 ? -d : d;
    T e = F(exp)(-ad), a = F(one_minus_exp)(ad, e);
    T big = F(exp)(d > 0 ? lp : lq);
    *q = d > 0 ? big * e : big;
    *g = d > 0 ? (T)-0.5 : (d < 0 ? (T)0.5 : 0);
    return big > 0 ? big * a / 2 : 0;
}

static inline T F(reverse_kl_term)(T lq, T lp, T *g)
{
    T q = F(exp)(lq);
    *g = q > 0 ? lq - lp : 0;
    return q > 0 ? q * (lq - lp) : 0;
}

/* The constants of the JSD and TV terms, set up once per row (see F(jsd_term)). */
typedef struct {
    T scale, ls, lt, c, l, beta, b1, thr;
    int kind;
} F(div_consts);

/* kl_c, kl_log1p: row_kl_second_order's c and log1p(b - a) for P = teacher, Q = student
 * (lse_s - lse_t = log1p(b - a) - c), or NaN where the row's log-sum-exps come from
 * row_kl_logits (c is then lse_t - lse_s, rounded once, and log1p(b - a) 0). */
static inline F(div_consts) F(div_setup)(T scale, double lse_s, double lse_t, int kind,
                                         double beta, double kl_c, double kl_log1p)
{
    F(div_consts) k;
    k.scale = scale;
    k.ls = (T)lse_s;
    k.lt = (T)lse_t;
    /* c and log1p(b - a) apart: d = (scale (t - s) - c) + log1p(b - a), whose first part is
     * exact at the class c was taken from (and near it where the logits are close), so that
     * a d far smaller than c (P and Q near 1 there) keeps the digits of log1p(b - a) */
    k.c = kl_c == kl_c ? (T)kl_c : (T)(lse_t - lse_s);
    k.l = kl_c == kl_c ? (T)kl_log1p : 0;
    /* beta in (0, 1) (0 and 1 are the KLs); each weight held at T's smallest normal or above,
     * so that log(M / P) is finite */
    T b = (T)beta, b1 = (T)(1 - beta);
    k.beta = b < XENT_T_MIN ? XENT_T_MIN : b;
    k.b1 = b1 < XENT_T_MIN ? XENT_T_MIN : b1;
    double thr = 2 * (log((double)k.b1) - log((double)k.beta));
    thr = thr > XENT_EXP_CLAMP / 2 ? XENT_EXP_CLAMP / 2 : thr;
    k.thr = (T)(thr < -XENT_EXP_CLAMP / 2 ? -XENT_EXP_CLAMP / 2 : thr);
    k.kind = kind;
    return k;
}

/*
 * One group's terms into the lane sums al (divergence) and, with want_qg, the gradient's sums
 * (Q there is exp(log Q) itself, not the terms' big e, which carries the rounding of d too:
 * 5e-6 of the gradient of far float rows): for JSD ag = sum Q g; for TV, ag = sum Q (1/2 - g)
 * and an = sum Q (1/2 + g), each a sum of non-negative terms (see F(row_divergence)).
 * jsd (0: TV, 1: JSD, 2: JSD with beta = 1/2) and want_qg are constants at every call, so
 * that each of the loops is compiled apart, its constants held in registers across the row.
 */
XENT_LANES_INLINE void F(div_group)(const T *s, const T *t, const F(div_consts) *k,
                                    const int jsd, const int want_qg, T *al, T *ag, T *an)
{
    const T scale = k->scale, ls = k->ls, lt = k->lt, c = k->c, l0 = k->l;
    const T beta = k->beta, b1 = k->b1, thr = k->thr;
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        T lq, lp, q, g;
        T d = F(div_log_ratio)(s[l], t[l], scale, ls, lt, c, l0, &lq, &lp);
        al[l] += jsd ? F(jsd_term)(d, lq, lp, beta, b1, thr, jsd == 2, &q, &g)
                     : F(tv_term)(d, lq, lp, &q, &g);
        if (want_qg) {
            q = F(exp)(lq);
            if (jsd) {
                ag[l] += q * g;
            } else {
                ag[l] += q * ((T)0.5 - g);
                an[l] += q * ((T)0.5 + g);
            }
        }
    }
}

/* F(row_divergence)'s pass, for constant jsd and want_qg (see F(div_group)). */
XENT_LANES_INLINE double F(div_pass)(const T *s, const T *t, ptrdiff_t n, const F(div_consts) *k,
                                     const int jsd, const int want_qg, double *qg)
{
    double loss = 0, dot = 0, neg = 0;
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK) {
        ptrdiff_t m = xent_chunk_len(n, start, XENT_CHUNK), whole = m - m % XENT_LANES;
        T al[XENT_LANES], ag[XENT_LANES], an[XENT_LANES], ps[XENT_LANES], pt[XENT_LANES];
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) al[l] = ag[l] = an[l] = 0;
        for (ptrdiff_t g = 0; g < whole; g += XENT_LANES)
            F(div_group)(s + start + g, t + start + g, k, jsd, want_qg, al, ag, an);
        if (F(padded_tail)(s + start, m, whole, ps)) {
            F(padded_tail)(t + start, m, whole, pt);
            F(div_group)(ps, pt, k, jsd, want_qg, al, ag, an);
        }
        loss += F(lanes_sum)(al);
        dot += F(lanes_sum)(ag);
        neg += F(lanes_sum)(an);
    }
    if (want_qg) {
        qg[0] = dot;
        qg[1] = neg;
    }
    return loss;
}

/*
 * The second read of a row pair, for JSD and total variation: returns the sum of the
 * divergence's terms and, unless qg is NULL, writes to qg[0] and qg[1] what the gradient
 * Q_j (g_j - sum_k Q_k g_k) needs: for JSD sum Q g (and 0); for TV, whose g is -1/2, 0 or
 * 1/2, A+ = sum Q (1/2 - g) and A- = sum Q (1/2 + g), so that (as sum Q = 1) the gradient is
 * Q_j A+ where g_j = 1/2 and -Q_j A- where g_j = -1/2: sums of one sign, where
 * 1/2 - sum Q g cancelled (a row whose Q is nearly all where Q > P had 1e4 ulp of its
 * gradient wrong). Whole groups, then the last partial group padded with -inf (terms 0), in
 * lanes of T per chunk, added in double. kl_c, kl_log1p as for F(div_setup).
 */
static double F(row_divergence)(const T *s, const T *t, ptrdiff_t n, T scale, double lse_s,
                                double lse_t, int kind, double beta, double kl_c,
                                double kl_log1p, double *qg)
{
    F(div_consts) k = F(div_setup)(scale, lse_s, lse_t, kind, beta, kl_c, kl_log1p);
    /* beta = 1/2 apart: there zb always takes the log (see F(jsd_term)), with no division */
    if (kind == XENT_DIV_JSD && k.thr == 0)
        return qg ? F(div_pass)(s, t, n, &k, 2, 1, qg) : F(div_pass)(s, t, n, &k, 2, 0, qg);
    if (kind == XENT_DIV_JSD)
        return qg ? F(div_pass)(s, t, n, &k, 1, 1, qg) : F(div_pass)(s, t, n, &k, 1, 0, qg);
    return qg ? F(div_pass)(s, t, n, &k, 0, 1, qg) : F(div_pass)(s, t, n, &k, 0, 0, qg);
}

/*
 * The gradient of a divergence with respect to the student's scaled logits, times coef:
 * out = coef (Q - P) for forward KL, coef Q (g - qg) for the others (the softmax's
 * Jacobian applied to d divergence / d Q), coef Q for XENT_DIV_SOFTMAX; for TV, qg and qg2
 * are F(row_divergence)'s A+ and A-. out may be s (or t) itself: each entry is read before it
 * is written.
 */
static void F(row_divergence_grad)(const T *s, const T *t, ptrdiff_t n, T scale, double lse_s,
                                   double lse_t, int kind, double beta, double qg, double qg2,
                                   double coef, double kl_c, double kl_log1p, T *out)
{
    T ls = (T)lse_s, lt = (T)lse_t, c = (T)coef, sub = (T)qg;
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
    } else if (kind == XENT_DIV_JSD || kind == XENT_DIV_TV) {
        /* g from d = log P - log Q with its digits (see F(jsd_term)): (1 - beta) log(Q / M)
         * is first order in d where the distributions are close, and TV's sign(Q - P) is
         * right wherever d is nonzero */
        F(div_consts) k = F(div_setup)(scale, lse_s, lse_t, kind, beta, kl_c, kl_log1p);
        const T kc = k.c, kl = k.l, b = k.beta, b1 = k.b1, thr = k.thr;
        const T plus = (T)qg, minus = (T)qg2;
        if (kind == XENT_DIV_JSD && thr == 0) {   /* beta = 1/2: see F(row_divergence) */
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) {
                T lq, lp, q, gj;
                T d = F(div_log_ratio)(s[j], t[j], scale, ls, lt, kc, kl, &lq, &lp);
                F(jsd_term)(d, lq, lp, b, b1, thr, 1, &q, &gj);
                out[j] = c * F(exp)(lq) * (gj - sub);
            }
        } else if (kind == XENT_DIV_JSD) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) {
                T lq, lp, q, gj;
                T d = F(div_log_ratio)(s[j], t[j], scale, ls, lt, kc, kl, &lq, &lp);
                F(jsd_term)(d, lq, lp, b, b1, thr, 0, &q, &gj);
                out[j] = c * F(exp)(lq) * (gj - sub);
            }
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) {
                T lq, lp, q, gj;
                T d = F(div_log_ratio)(s[j], t[j], scale, ls, lt, kc, kl, &lq, &lp);
                F(tv_term)(d, lq, lp, &q, &gj);
                T f = gj > 0 ? plus : (gj < 0 ? -minus : (plus - minus) / 2);
                out[j] = c * F(exp)(lq) * f;
            }
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
