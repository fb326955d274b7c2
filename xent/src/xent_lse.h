/*
 * Log-sum-exp of a row, the lane groups and chunks it is computed in, and the row transforms
 * built on it: log-softmax and softmax.
 * Part of one instantiation (see xent_instantiate.h).
 */

/*
 * The row loops work on groups of XENT_LANES entries (64 bytes: one AVX-512 vector, two AVX2
 * vectors, four SSE vectors) with one accumulator per lane, so they vectorise whole at any
 * width; a row's last partial group is copied into a group padded with -inf, whose exp is 0.
 * This keeps short rows (C = 10) off a scalar remainder loop, and fixes the order of every
 * sum whatever the vector width.
 */
#define XENT_LANES ((ptrdiff_t)(64 / sizeof(T)))

#if defined(__AVX512F__) && defined(__GNUC__)
#include <immintrin.h>   /* sum_exp_group's float vector, written out */
#endif

/* A function attribute for the kernels that gather (see transpose_rows); an instruction set
 * file may set it to a tuning under which the compiler emits gathers. */
#ifndef XENT_GATHER_TUNE
#define XENT_GATHER_TUNE
#endif

/* Max and sum across the lanes, by halving: a few vector steps, not a serial chain. */
static inline T F(lanes_max)(T *m)
{
    for (ptrdiff_t width = XENT_LANES / 2; width > 0; width /= 2)
        for (ptrdiff_t l = 0; l < width; l++) m[l] = m[l + width] > m[l] ? m[l + width] : m[l];
    return m[0];
}

static inline T F(lanes_sum)(T *s)
{
    for (ptrdiff_t width = XENT_LANES / 2; width > 0; width /= 2)
        for (ptrdiff_t l = 0; l < width; l++) s[l] += s[l + width];
    return s[0];
}

/* Largest entry of the whole groups in x[0..n), NaN ignored; -inf if there are none. */
static inline T F(max_groups)(const T *x, ptrdiff_t n)
{
    T m[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = -(T)INFINITY;
    for (ptrdiff_t g = 0; g + XENT_LANES <= n; g += XENT_LANES) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = x[g + l] > m[l] ? x[g + l] : m[l];
    }
    return F(lanes_max)(m);
}

/* One group's maxima into the lane maxima m, NaN ignored. */
static inline void F(max_group)(const T *g, T *m)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = g[l] > m[l] ? g[l] : m[l];
}

/*
 * Largest entry of a chunk: its whole groups x[0..whole) and, unless NULL, its last partial
 * group padded with -inf. NaN ignored; -inf if there is none.
 */
static inline T F(max_chunk_serial)(const T *x, ptrdiff_t whole, const T *tail)
{
    T m[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = -(T)INFINITY;
    for (ptrdiff_t g = 0; g < whole; g += XENT_LANES) F(max_group)(x + g, m);
    if (tail) F(max_group)(tail, m);
    return F(lanes_max)(m);
}

/*
 * max_chunk_serial's result, with four lane maxima taking every fourth group: one chain of
 * max instructions waited on its own latency (a row of 1000 floats spent a fifth of its
 * time there). The largest value is the same whichever lanes hold it, but for the sign
 * of a zero (the serial scan keeps the first of +0 and -0): a zero max is found again
 * serially, so the bits are the serial scan's.
 */
static inline T F(max_chunk)(const T *x, ptrdiff_t whole, const T *tail)
{
    T m0[XENT_LANES], m1[XENT_LANES], m2[XENT_LANES], m3[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) m0[l] = m1[l] = m2[l] = m3[l] = -(T)INFINITY;
    ptrdiff_t g = 0;
    for (; g + 4 * XENT_LANES <= whole; g += 4 * XENT_LANES) {
        F(max_group)(x + g, m0);
        F(max_group)(x + g + XENT_LANES, m1);
        F(max_group)(x + g + 2 * XENT_LANES, m2);
        F(max_group)(x + g + 3 * XENT_LANES, m3);
    }
    for (; g < whole; g += XENT_LANES) F(max_group)(x + g, m0);
    if (tail) F(max_group)(tail, m1);
    F(max_group)(m1, m0);
    F(max_group)(m3, m2);
    F(max_group)(m2, m0);
    T top = F(lanes_max)(m0);
    return top == 0 ? F(max_chunk_serial)(x, whole, tail) : top;
}

/*
 * exp(x - shift) as a term of a sum of exps (see exp_term), x <= shift, with the rounding of
 * the difference put back: x - shift may need more bits than T has when the two differ by far
 * in magnitude (1.53 - 67.53 is rounded by up to 7e-15 in double, 4e-6 in float), and exp(d)
 * carries that error relative (45 ulp of a tiny double loss such as log1p(exp(-66)), 5e-6 of
 * a float term near the smallest normal). TwoSum gives the rounding error err exactly, and
 * exp(x - shift) = exp(d) (1 + err) to far below an ulp. In float, ln2 is also taken in two
 * parts (exp_term's one part puts |k| 1.9e-9 into a term of size 2^k). Double's long rows
 * use it for every term; float's only for the rows whose fast terms could miss the bound (see
 * XENT_F32_REST_BUDGET): it is a fifth of their loop's time.
 */
static inline T F(exp_term_exact)(T x, T shift)
{
    T d = x - shift;
    T bv = d - x;
    T err = (x - (d - bv)) + (-shift - bv);
#if XENT_F32
    T scale, yc = d < XENT_EXP_UNDER ? XENT_EXP_UNDER : d;
    T e = F(exp_poly)(yc, &scale, 1) * scale;
    e = d < XENT_EXP_UNDER ? 0 : e;
#else
    T e = F(exp_term)(d);
#endif
    T fix = e * err;
    /* an infinite entry or difference makes err NaN (a -inf entry: the term is 0) */
    return e + (fix == fix ? fix : 0);
}

/*
 * The float32 budget. A float term exp_term(x - shift) is off by up to |d| (2^-24 + 2.8e-9)
 * relative, d = x - shift: the rounding of d (at most |d| 2^-24, carried relative by exp) and
 * the one-part ln2 (|k| 1.9e-9 <= |d| 2.8e-9). So rest, the sum of the terms below the shift,
 * is off by at most XENT_F32_TERM_ERR * sum_i t_i |d_i| (rounding of the exp itself and of
 * the additions apart: a few 1e-8). The sum of t_i |d_i| is taken beside the sum in the same
 * loop (one multiply-add a term) and rescaled with it when the shift grows (the terms' errors
 * were made against the old shift: they scale with the terms). Where it bounds rest's
 * relative error above XENT_F32_REST_BUDGET, the row's rest is computed again from the row,
 * every term exact (exp_term_exact) and summed in double (rescue_rest_chunk). Every result
 * of a row moves by at most rest's relative error (a confident row's loss log1p(rest), its
 * max's log-softmax, the gradient p_t - 1 = -rest / (ties + rest); less where the ties weigh
 * more), and the bound holds for any cut of the row into stretches merged later (each
 * stretch's rest, scaled exactly, keeps its relative error), so the decision is the row's own.
 * Random logits (std 3) stay below it: sum t |d| / rest is the terms' mean distance from the
 * max, about 3 (2e-7); rows whose terms lie 8 or more below their max - confident rows - are
 * the ones computed twice.
 */
#define XENT_F32_TERM_ERR 0x1.2p-24        /* 2^-24 + 2.8e-9, and the bound's own rounding */
#define XENT_F32_REST_BUDGET 5e-7

/* Whether a float row's rest (terms' distance sum bound, see XENT_F32_REST_BUDGET) must be
 * computed exactly. False for NaN and infinite rests (they carry themselves) and rest 0. */
#ifndef XENT_F32_REST_INEXACT_DEFINED
#define XENT_F32_REST_INEXACT_DEFINED
static inline int xent_f32_rest_inexact(double rest, double bound)
{
    return XENT_F32_TERM_ERR * bound > XENT_F32_REST_BUDGET * rest;
}
#endif

/*
 * One group's exp(x - shift) into the lane sums s, and its entries equal to the shift into
 * the lane counts c. Their terms are exactly 1 and are kept out of s: a float lane holding 1
 * would round every small term added to it to a multiple of 2^-24, and in a confident row
 * (the target the max, every other term small) the loss is log(1 + the small terms), so it
 * would lose its relative accuracy. Every entry <= shift (lse_chunk deals with +inf before).
 * In float, b gets sum t (x - shift) (<= 0), the error bound of XENT_F32_REST_BUDGET.
 */
static inline void F(sum_exp_group)(const T *g, T shift, T *s, T *c, T *comp, T *b)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        T tie = g[l] == shift ? 1 : 0;                   /* then exp_term gives exactly 1 */
#if XENT_F32
        (void)comp;
        T d = g[l] - shift, term = F(exp_term)(d) - tie;
        s[l] += term;   /* the lanes' roundings: a few 1e-8, far below the budget */
        /* term * d (0 for a tie), d clamped where the term is 0 (a -inf entry's 0 * d would
         * be NaN). d zeroed there instead took gcc two more blends a group on AVX2
         * (forward 2048 x 32000: 13% slower) */
        b[l] += term * (d < XENT_EXP_UNDER ? XENT_EXP_UNDER : d);
#else
        (void)b;
        T term = F(exp_term_exact)(g[l], shift) - tie;
        /* Kahan's compensated sum: a double result is held to 4 ulp, and 64 equal terms in a
         * lane round the same way each time (4 ulp for a chunk, hundreds for 1M entries) */
        T y = term - comp[l], t = s[l] + y;
        comp[l] = (t - s[l]) - y;
        s[l] = t;
#endif
        c[l] += tie;
    }
}

#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
/* exp_poly's polynomial on one vector of reduced arguments r, its steps in its order (the
 * same bits): for the loops below, which take 2^k by vscalefps. */
static inline __m512 F(exp_poly_vec)(__m512 r)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0x1.6a243ap-10f), r, _mm512_set1_ps(0x1.1239e0p-7f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.5558f2p-5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.555492p-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.fffffcp-2f));
    p = _mm512_fmadd_ps(p, r, one);
    p = _mm512_fmadd_ps(p, r, one);
    return p;
}

/*
 * sum_exp_group's arithmetic on one vector of XENT_LANES floats, written out, with vector
 * accumulators: s the terms, b the bound, and others the count of entries that are not ties
 * (the caller's ties are the entries it passed less those). Returns the group's terms (0 for
 * ties and underflows) and in *not_tie the mask of the entries that are no tie. The loops
 * are bound by their vector instructions (the Intel cores run 512-bit ones on two ports: the
 * group's 17 take at least 8.5 cycles), so every one counts:
 *  - the tie and underflow tests are one compare each, the second masked by the first, so
 *    one mask keeps the terms that are neither (a tie's 1 then never enters s);
 *  - 2^k comes in vscalefps, one instruction where the exponent bits took an add, a shift
 *    and a multiply (the same product: p 2^k is exact for the normal results kept);
 *  - the non-ties are counted where the ties took a masked add and a masked subtract.
 * exp_poly's steps in its order: the same bits as the loop above.
 */
static inline __m512 F(sum_exp_vec)(const T *g, __m512 sh, __m512 *s, __m512 *others,
                                    __m512 *b, __mmask16 *not_tie)
{
    const __m512 one = _mm512_set1_ps(1.0f), magic = _mm512_set1_ps(XENT_ROUND_MAGIC);
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(g), sh);
    /* x == shift exactly where x - shift == 0 (gradual underflow: no two floats differ by 0);
     * NaN is not a tie, and is kept, so that it spreads */
    __mmask16 other = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    __mmask16 keep = _mm512_mask_cmp_ps_mask(other, d, _mm512_set1_ps(XENT_EXP_UNDER),
                                             _CMP_NLT_UQ);
    __m512 k = _mm512_sub_ps(_mm512_fmadd_ps(d, _mm512_set1_ps(XENT_LOG2E), magic), magic);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(XENT_LN2), d);
    __m512 term = _mm512_maskz_scalef_ps(keep, F(exp_poly_vec)(r), k);   /* ties, subnormals: 0 */
    *s = _mm512_add_ps(*s, term);
    *others = _mm512_mask_add_ps(*others, other, *others, one);
    *b = _mm512_mask3_fmadd_ps(term, d, *b, keep);
    *not_tie = other;
    return term;
}
#endif

/*
 * Sum of exp(x - shift) over a chunk (its whole groups and its padded tail group, as in
 * max_chunk), in T lanes: a chunk is short enough. The count of entries equal to the shift
 * is added to *ties; in float, sum t |x - shift| (the error bound) to *bound. One loop for
 * both parts, so the constants are set up once per chunk.
 */
static inline double F(sum_exp_chunk)(const T *x, ptrdiff_t whole, const T *tail, T shift,
                                      double *ties, double *bound)
{
    T s[XENT_LANES], c[XENT_LANES], comp[XENT_LANES], b[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) s[l] = c[l] = comp[l] = b[l] = 0;
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)   /* sum_exp_vec */
    (void)comp;
    const __m512 sh = _mm512_set1_ps(shift);
    __m512 vs = _mm512_setzero_ps(), vothers = vs, vb = vs;
    __mmask16 other;   /* unused here */
    for (ptrdiff_t g = 0; g < whole; g += XENT_LANES) {
        /* as below, but two chunks ahead: with one, a thread streaming 1 GB of rows of
         * 32000 from memory took 7% longer (94-97 against 86-89 ms; two threads 1-4% and
         * rows of 1M 8%, medians of interleaved processes on an Intel Xeon); four ahead
         * gave less than two */
        __builtin_prefetch(x + 2 * whole + XENT_LANES + g, 0, 3);
        F(sum_exp_vec)(x + g, sh, &vs, &vothers, &vb, &other);
    }
    if (tail) F(sum_exp_vec)(tail, sh, &vs, &vothers, &vb, &other);
    _mm512_storeu_ps(s, vs);
    _mm512_storeu_ps(c, vothers);
    _mm512_storeu_ps(b, vb);
    *ties += (double)(whole + (tail ? XENT_LANES : 0)) - F(lanes_sum)(c);
    *bound -= F(lanes_sum)(b);
    return F(lanes_sum)(s);
#elif XENT_F32
    for (ptrdiff_t g = 0; g < whole; g += XENT_LANES) {
        /* The next chunk (or, for contiguous rows, the next row) is fetched while this one
         * is busy with exp: its max pass then finds it in cache. A hint: never faults. */
        __builtin_prefetch(x + whole + XENT_LANES + g, 0, 3);
        F(sum_exp_group)(x + g, shift, s, c, comp, b);
    }
    if (tail) F(sum_exp_group)(tail, shift, s, c, comp, b);
    *ties += F(lanes_sum)(c);
    *bound -= F(lanes_sum)(b);
    return F(lanes_sum)(s);
#else
    /* Two compensated sums, of the even and the odd groups: a Kahan step is a chain of four
     * dependent additions, and one chain per lane made the loop wait on it rather than on
     * exp. The two are joined exactly (TwoSum) with both compensations. */
    (void)bound;
    T s2[XENT_LANES], c2[XENT_LANES], comp2[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) s2[l] = c2[l] = comp2[l] = 0;
    ptrdiff_t g = 0;
    for (; g + 2 * XENT_LANES <= whole; g += 2 * XENT_LANES) {
        __builtin_prefetch(x + whole + XENT_LANES + g, 0, 3);   /* as for float, above */
        __builtin_prefetch(x + whole + 2 * XENT_LANES + g, 0, 3);
        F(sum_exp_group)(x + g, shift, s, c, comp, b);
        F(sum_exp_group)(x + g + XENT_LANES, shift, s2, c2, comp2, b);
    }
    if (g < whole) F(sum_exp_group)(x + g, shift, s, c, comp, b);
    if (tail) F(sum_exp_group)(tail, shift, s2, c2, comp2, b);
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        T a = s[l], b2 = s2[l], sum = a + b2, bv = sum - a;
        T err = (a - (sum - bv)) + (b2 - bv);
        s[l] = sum + (err - (comp[l] + comp2[l]));
        c[l] += c2[l];
    }
    *ties += F(lanes_sum)(c);
    return F(lanes_sum)(s);
#endif
}

/* One group's exact terms (exp_term_exact) into double lane sums s, its ties into c. */
static inline void F(rescue_group)(const T *g, T shift, double *s, double *c)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        T tie = g[l] == shift ? 1 : 0;
        s[l] += (double)(F(exp_term_exact)(g[l], shift) - tie);
        c[l] += (double)tie;
    }
}

/*
 * The exact rest of a chunk against the row's final shift (see XENT_F32_REST_BUDGET): every
 * term exp_term_exact, summed in double lanes, added into the state's rest as lse_chunk adds
 * a chunk's (its rounding into rest_err), the entries equal to the shift counted into *ties.
 * Entries <= shift, none +inf (a row with +inf has an infinite rest, never recomputed).
 */
static inline void F(rescue_rest_chunk)(const T *x, ptrdiff_t n, T shift, double *ties,
                                        xent_lse_state *st)
{
    double s[XENT_LANES], c[XENT_LANES];
    ptrdiff_t whole = n - n % XENT_LANES;
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) s[l] = c[l] = 0;
    for (ptrdiff_t g = 0; g < whole; g += XENT_LANES) F(rescue_group)(x + g, shift, s, c);
    if (whole < n) {
        T tail[XENT_LANES];
        for (ptrdiff_t l = 0; l < XENT_LANES; l++)
            tail[l] = whole + l < n ? x[whole + l] : -(T)INFINITY;
        F(rescue_group)(tail, shift, s, c);
    }
    double rest = 0, count = 0;
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        rest += s[l];
        count += c[l];
    }
    *ties += count;
    xent_lse_add_rest(st, rest);
}

/* Whether a row's state (bound = sum t |d| of its terms) must have its rest computed again
 * (see XENT_F32_REST_BUDGET). Never in double: its terms are exact already. */
static inline int F(rest_needs_rescue)(const xent_lse_state *st, double bound)
{
#if XENT_F32
    return xent_f32_rest_inexact(st->rest + st->rest_err, bound);
#else
    (void)st;
    (void)bound;
    return 0;
#endif
}

/* Start the recomputation of a state's rest (see rescue_rest_chunk, then rescue_finish). */
static inline void F(rescue_start)(xent_lse_state *st)
{
    st->rest = st->rest_err = 0;
}

static inline void F(rescue_finish)(xent_lse_state *st, double ties)
{
    st->ties = ties;
    st->sum = st->ties + st->rest;
}

static inline int F(has_nan)(const T *x, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        if (x[i] != x[i]) return 1;
    return 0;
}

/*
 * Fold one chunk into the online log-sum-exp state. The shift is the largest finite entry
 * seen so far (a +inf entry shifts by T_MAX instead, so its exp and the sum become +inf); the
 * sum is rescaled when the shift grows. A NaN anywhere makes the sum NaN. In float, *bound
 * (0 to start) carries sum t |d| of the terms in rest, rescaled with it (see
 * XENT_F32_REST_BUDGET).
 */
static inline void F(lse_chunk_bound)(const T *x, ptrdiff_t n, xent_lse_state *st,
                                      double *bound)
{
    ptrdiff_t whole = n - n % XENT_LANES;
    T tail_group[XENT_LANES], *tail = NULL;
    if (whole < n) {
        tail = tail_group;
        for (ptrdiff_t l = 0; l < XENT_LANES; l++)
            tail[l] = whole + l < n ? x[whole + l] : -(T)INFINITY;
    }
    T cmax = F(max_chunk)(x, whole, tail);
    if (cmax == -(T)INFINITY) {   /* all -inf (contributes 0) or NaN */
        if (F(has_nan)(x, n)) st->sum = st->rest = NAN;
        return;
    }
    T shift = cmax > XENT_T_MAX ? XENT_T_MAX : cmax;
    if (shift > st->shift) {
        /* the terms' error bound scales with them (their errors were made against the old
         * shift); 0 stays 0 (the first chunk: exp(-inf) = 0) */
        if (*bound != 0) *bound *= xent_exp_diff(st->shift, shift);
        xent_lse_rescale(st, shift);
    }
    if (cmax > XENT_T_MAX) {   /* +inf: exp(inf - T_MAX) = inf, which exp_term does not give */
        st->rest += F(has_nan)(x, n) ? NAN : INFINITY;   /* rest_err stays finite */
        st->sum = st->ties + st->rest;
        return;
    }
    double ties = 0, rest = F(sum_exp_chunk)(x, whole, tail, (T)st->shift, &ties, bound);
    st->ties += ties;
    xent_lse_add_rest(st, rest);
    st->sum = st->ties + st->rest;
}

/* lse_chunk_bound without the error bound (for a caller that does not recompute rows). */
static inline void F(lse_chunk)(const T *x, ptrdiff_t n, xent_lse_state *st)
{
    double bound = 0;
    F(lse_chunk_bound)(x, n, st, &bound);
}

#define XENT_CHUNK ((ptrdiff_t)(XENT_CHUNK_BYTES / sizeof(T)))
/* The chunks of the longest float row whose rest is corrected by rest_fix_chunk (256K
 * entries); a longer one that needs it gets rescue_rest_chunk's exact pass. */
#define XENT_FIX_CHUNKS 256

#if XENT_F32
#if XENT_F32
/* exp(d) for d <= 0 to about 6e-4 relative (a cubic on |r| <= ln2/2), 0 below the normal
 * range: the size of a term, for group_rescue_lanes' correction. */
static inline T F(exp_rough)(T d)
{
    T dc = d < XENT_EXP_UNDER ? XENT_EXP_UNDER : d;
    T kr = dc * XENT_LOG2E + XENT_ROUND_MAGIC, k = kr - XENT_ROUND_MAGIC;
    T r = dc - k * XENT_LN2;
    T p = ((r * (1.0f / 6) + 0.5f) * r + 1.0f) * r + 1.0f;
    F(bits_t) kbits, magic_bits, scale_bits;
    T magic = XENT_ROUND_MAGIC, scale;
    memcpy(&kbits, &kr, sizeof kbits);
    memcpy(&magic_bits, &magic, sizeof magic_bits);
    scale_bits = (kbits - magic_bits + XENT_EXP_BIAS) << XENT_MANT_BITS;
    memcpy(&scale, &scale_bits, sizeof scale);
    return d < XENT_EXP_UNDER ? 0 : p * scale;
}
#endif

#if XENT_F32 && defined(__FMA__)
#define XENT_F32_TERM_LN2_FIX 0x1.79a8dcp-29f   /* -log2e (ln2 - LN2) = 2.7478e-9 */
#else
#define XENT_F32_TERM_LN2_FIX 0.0f            /* no FMA: exp_term's ln2 is in two parts */
#endif

/*
 * The cheap recomputation of a float row's rest where the fast terms could miss the budget:
 * a fast term is exp_term(d) of the rounded difference d = x - shift, with the one-part ln2
 * (with FMA), so it is t (1 + err + d LN2_FIX) to far below an ulp, err being d's rounding
 * (TwoSum), and LN2_FIX putting back the ln2 error (as exp_shifted_fast does). The rest is
 * then corrected by sum t (err + d LN2_FIX), t needed only to a few parts in 1e3 (exp_rough:
 * the correction is at most |d| 6.2e-8 of a term, so its own error stays below 4e-9 of the
 * rest). A pass of float lanes over a row still in cache, with no exp of full precision and
 * nothing in double: a confident row of 100 classes took 2.2x the time of the build without
 * the budget with rescue_rest_chunk's exact double pass, about 1.5x with this (one thread).
 * x was summed against shift (its chunk's running shift); the result is against it too.
 * A -inf entry is clamped to a finite one whose term is 0 (no NaN); none is +inf or NaN (a
 * row with one has a rest that carries itself, never recomputed).
 */
#if defined(__AVX512F__) && defined(__GNUC__)
/* acc + t (err + d LN2_FIX) for one group of rest_fix_chunk, the entries outside the mask -inf
 * (term 0); exp_rough's steps written out. */
static inline __m512 F(rest_fix_vec)(const T *x, __mmask16 in, T shift, __m512 acc)
{
    const __m512 sh = _mm512_set1_ps(shift), nsh = _mm512_set1_ps(-shift);
    const __m512 lo = _mm512_set1_ps(-0x1p100f), under = _mm512_set1_ps(XENT_EXP_UNDER);
    const __m512 magic = _mm512_set1_ps(XENT_ROUND_MAGIC), one = _mm512_set1_ps(1.0f);
    __m512 u = _mm512_max_ps(_mm512_mask_loadu_ps(lo, in, x), lo);
    __m512 d = _mm512_sub_ps(u, sh), bv = _mm512_sub_ps(d, u);
    __m512 err = _mm512_add_ps(_mm512_sub_ps(u, _mm512_sub_ps(d, bv)), _mm512_sub_ps(nsh, bv));
    __mmask16 live = _mm512_cmp_ps_mask(d, under, _CMP_NLT_UQ);
    __m512 dc = _mm512_max_ps(d, under);
    __m512 kr = _mm512_fmadd_ps(dc, _mm512_set1_ps(XENT_LOG2E), magic);
    __m512 k = _mm512_sub_ps(kr, magic);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(XENT_LN2), dc);
    __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(1.0f / 6), _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, one);
    p = _mm512_fmadd_ps(p, r, one);
    __m512i bits = _mm512_add_epi32(_mm512_castps_si512(kr),
                                    _mm512_set1_epi32(XENT_EXP_BIAS - (int32_t)0x4b400000));
    __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(bits, XENT_MANT_BITS));
    __m512 t = _mm512_maskz_mul_ps(live, p, scale);
    __m512 corr = _mm512_fmadd_ps(d, _mm512_set1_ps(XENT_F32_TERM_LN2_FIX), err);
    return _mm512_fmadd_ps(t, corr, acc);
}
#endif

static inline double F(rest_fix_chunk)(const T *x, ptrdiff_t n, T shift)
{
#if defined(__AVX512F__) && defined(__GNUC__)
    /* The same arithmetic on one vector (rest_fix_vec), the last partial group a masked load,
     * two accumulators: one chain of multiply-adds made the loop wait on it. */
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    ptrdiff_t g = 0;
    for (; g + 2 * XENT_LANES <= n; g += 2 * XENT_LANES) {
        acc0 = F(rest_fix_vec)(x + g, (__mmask16)0xffff, shift, acc0);
        acc1 = F(rest_fix_vec)(x + g + XENT_LANES, (__mmask16)0xffff, shift, acc1);
    }
    for (; g < n; g += XENT_LANES) {
        __mmask16 in = n - g >= XENT_LANES ? (__mmask16)0xffff
                                           : (__mmask16)((1u << (n - g)) - 1);
        acc0 = F(rest_fix_vec)(x + g, in, shift, acc0);
    }
    return (double)_mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#else
    T fix[XENT_LANES];
    ptrdiff_t whole = n - n % XENT_LANES;
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) fix[l] = 0;
    for (ptrdiff_t g = 0; g <= whole; g += XENT_LANES) {
        T tail[XENT_LANES];
        const T *grp = x + g;
        if (g == whole) {
            if (whole == n) break;
            for (ptrdiff_t l = 0; l < XENT_LANES; l++)
                tail[l] = whole + l < n ? x[whole + l] : -(T)INFINITY;
            grp = tail;
        }
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T u = grp[l] < -0x1p100f ? -0x1p100f : grp[l];
            T d = u - shift, bv = d - u;
            T err = (u - (d - bv)) + (-shift - bv);
            fix[l] += F(exp_rough)(d) * (d * XENT_F32_TERM_LN2_FIX + err);
        }
    }
    return (double)F(lanes_sum)(fix);
#endif
}
#endif

/*
 * Log-sum-exp state of one row (start from xent_lse_init; a state already holding entries
 * gets the row's merged into it). In float, the row's rest is computed a second time, exactly,
 * where the fast terms could miss the budget (see XENT_F32_REST_BUDGET): a pass over a row
 * that is usually still in cache.
 */
static void F(row_lse)(const T *x, ptrdiff_t n, xent_lse_state *st)
{
    if (XENT_F32 && (st->shift != -INFINITY || st->sum != 0)) {   /* not fresh: merged */
        xent_lse_state part = xent_lse_init();
        F(row_lse)(x, n, &part);
        xent_lse_merge(st, &part);
        return;
    }
    double bound = 0;
#if XENT_F32
    T shifts[XENT_FIX_CHUNKS];   /* each chunk's shift, for rest_fix_chunk */
    ptrdiff_t k = 0;
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK, k++) {
        F(lse_chunk_bound)(x + start, xent_chunk_len(n, start, XENT_CHUNK), st, &bound);
        if (k < XENT_FIX_CHUNKS) shifts[k] = (T)st->shift;
    }
    if (k <= XENT_FIX_CHUNKS && F(rest_needs_rescue)(st, bound)) {
        double fix = 0, last = st->shift;
        k = 0;
        for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK, k++) {
            if (shifts[k] == -(T)INFINITY) continue;   /* nothing summed yet */
            double f = F(rest_fix_chunk)(x + start, xent_chunk_len(n, start, XENT_CHUNK),
                                         shifts[k]);
            fix += (double)shifts[k] == last ? f : f * xent_exp_diff(shifts[k], last);
        }
        xent_lse_add_rest(st, fix);
        st->sum = st->ties + st->rest;
        return;
    }
#else
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
        F(lse_chunk_bound)(x + start, xent_chunk_len(n, start, XENT_CHUNK), st, &bound);
#endif
    if (F(rest_needs_rescue)(st, bound)) {
        double ties = 0;
        F(rescue_start)(st);
        for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
            F(rescue_rest_chunk)(x + start, xent_chunk_len(n, start, XENT_CHUNK),
                                 (T)st->shift, &ties, st);
        F(rescue_finish)(st, ties);
    }
}

#if defined(__AVX512F__) && defined(__GNUC__)
/*
 * A block of up to 16 columns of a group's rows, transposed in registers: v[r] holds row r's
 * entries j0 .. j0 + 15 (masked loads past the row's end, which read nothing), and
 * buf[j0 + k] gets column k, for the k < width the row has. Unpacks then two rounds of
 * 128-bit lane shuffles: 64 shuffles for 256 floats (32 for 64 doubles), where a gather costs
 * a cycle or more per element on some AVX-512 cores (the AMD EPYC's: the transpose by
 * gathers took 57% of cross_entropy on rows of 64).
 */
#if XENT_F32
/* col[k] = (v[0][k], ..., v[15][k]): the 16 x 16 transpose of v, in registers. */
static inline void F(transpose_regs)(const __m512 v[16], __m512 col[16])
{
    __m512 t[16];
    /* within 128-bit lanes: t[4q + i] = column i of rows 4q .. 4q + 3, for each lane */
    for (int q = 0; q < 4; q++) {
        __m512 lo01 = _mm512_unpacklo_ps(v[4 * q], v[4 * q + 1]);
        __m512 hi01 = _mm512_unpackhi_ps(v[4 * q], v[4 * q + 1]);
        __m512 lo23 = _mm512_unpacklo_ps(v[4 * q + 2], v[4 * q + 3]);
        __m512 hi23 = _mm512_unpackhi_ps(v[4 * q + 2], v[4 * q + 3]);
        t[4 * q] = _mm512_shuffle_ps(lo01, lo23, 0x44);
        t[4 * q + 1] = _mm512_shuffle_ps(lo01, lo23, 0xee);
        t[4 * q + 2] = _mm512_shuffle_ps(hi01, hi23, 0x44);
        t[4 * q + 3] = _mm512_shuffle_ps(hi01, hi23, 0xee);
    }
    /* across lanes: column 4 l + i gathers lane l of t[i], t[4 + i], t[8 + i], t[12 + i] */
    for (int i = 0; i < 4; i++) {
        __m512 a = _mm512_shuffle_f32x4(t[i], t[4 + i], 0x88);       /* lanes 0, 2 */
        __m512 b = _mm512_shuffle_f32x4(t[i], t[4 + i], 0xdd);       /* lanes 1, 3 */
        __m512 c = _mm512_shuffle_f32x4(t[8 + i], t[12 + i], 0x88);
        __m512 d = _mm512_shuffle_f32x4(t[8 + i], t[12 + i], 0xdd);
        col[i] = _mm512_shuffle_f32x4(a, c, 0x88);
        col[4 + i] = _mm512_shuffle_f32x4(b, d, 0x88);
        col[8 + i] = _mm512_shuffle_f32x4(a, c, 0xdd);
        col[12 + i] = _mm512_shuffle_f32x4(b, d, 0xdd);
    }
}

static inline void F(transpose_block)(const T *x, ptrdiff_t stride, ptrdiff_t nrows,
                                      ptrdiff_t j0, ptrdiff_t width,
                                      T buf[XENT_SMALL_ROW][XENT_LANES])
{
    __mmask16 in = width >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << width) - 1);
    __m512 v[16], col[16];
    for (int r = 0; r < 16; r++)
        v[r] = _mm512_maskz_loadu_ps(in, x + (r < nrows ? r : nrows - 1) * stride + j0);
    F(transpose_regs)(v, col);
    for (int k = 0; k < 16 && k < width; k++) _mm512_storeu_ps((float *)buf[j0 + k], col[k]);
}

/* The way back: out[r * out_stride + j0 + k] = buf[j0 + k][r] for the rows r < nrows and
 * the k < width (<= 16) entries of a block (masked stores: nothing past a row's end). */
static inline void F(untranspose_block)(T buf[XENT_SMALL_ROW][XENT_LANES], ptrdiff_t j0,
                                        ptrdiff_t width, ptrdiff_t nrows, T *out,
                                        ptrdiff_t out_stride)
{
    __mmask16 in = width >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << width) - 1);
    __m512 v[16], row[16];
    for (int k = 0; k < 16; k++)
        v[k] = k < width ? _mm512_loadu_ps((const float *)buf[j0 + k]) : _mm512_setzero_ps();
    F(transpose_regs)(v, row);
    for (int r = 0; r < 16 && r < nrows; r++)
        _mm512_mask_storeu_ps((float *)(out + r * out_stride + j0), in, row[r]);
}
#else
/* col[k] = (v[0][k], ..., v[7][k]): the 8 x 8 transpose of v, in registers. */
static inline void F(transpose_regs)(const __m512d v[8], __m512d col[8])
{
    __m512d t[8];
    /* t[2q] = columns 0, 2, 4, 6 of rows 2q, 2q + 1 (in pairs); t[2q + 1] the odd ones */
    for (int q = 0; q < 4; q++) {
        t[2 * q] = _mm512_unpacklo_pd(v[2 * q], v[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_pd(v[2 * q], v[2 * q + 1]);
    }
    for (int i = 0; i < 2; i++) {
        /* rows 0-3 and 4-7 of columns i, i + 4 (lanes 0, 2) and i + 2, i + 6 (lanes 1, 3) */
        __m512d a = _mm512_shuffle_f64x2(t[i], t[2 + i], 0x88);
        __m512d b = _mm512_shuffle_f64x2(t[i], t[2 + i], 0xdd);
        __m512d c = _mm512_shuffle_f64x2(t[4 + i], t[6 + i], 0x88);
        __m512d d = _mm512_shuffle_f64x2(t[4 + i], t[6 + i], 0xdd);
        col[i] = _mm512_shuffle_f64x2(a, c, 0x88);
        col[2 + i] = _mm512_shuffle_f64x2(b, d, 0x88);
        col[4 + i] = _mm512_shuffle_f64x2(a, c, 0xdd);
        col[6 + i] = _mm512_shuffle_f64x2(b, d, 0xdd);
    }
}

static inline void F(transpose_block)(const T *x, ptrdiff_t stride, ptrdiff_t nrows,
                                      ptrdiff_t j0, ptrdiff_t width,
                                      T buf[XENT_SMALL_ROW][XENT_LANES])
{
    __mmask8 in = width >= 8 ? (__mmask8)0xff : (__mmask8)((1u << width) - 1);
    __m512d v[8], col[8];
    for (int r = 0; r < 8; r++)
        v[r] = _mm512_maskz_loadu_pd(in, x + (r < nrows ? r : nrows - 1) * stride + j0);
    F(transpose_regs)(v, col);
    for (int k = 0; k < 8 && k < width; k++) _mm512_storeu_pd((double *)buf[j0 + k], col[k]);
}

/* The way back (see the float version). */
static inline void F(untranspose_block)(T buf[XENT_SMALL_ROW][XENT_LANES], ptrdiff_t j0,
                                        ptrdiff_t width, ptrdiff_t nrows, T *out,
                                        ptrdiff_t out_stride)
{
    __mmask8 in = width >= 8 ? (__mmask8)0xff : (__mmask8)((1u << width) - 1);
    __m512d v[8], row[8];
    for (int k = 0; k < 8; k++)
        v[k] = k < width ? _mm512_loadu_pd((const double *)buf[j0 + k]) : _mm512_setzero_pd();
    F(transpose_regs)(v, row);
    for (int r = 0; r < 8 && r < nrows; r++)
        _mm512_mask_storeu_pd((double *)(out + r * out_stride + j0), in, row[r]);
}
#endif
#endif

/*
 * buf[j][r] = x[r * stride + j] for the rows r < nrows of a group (n <= XENT_SMALL_ROW), the
 * spare lanes r >= nrows filled with copies of the last row (their results are not used).
 * With AVX-512, by blocks transposed in registers (transpose_block). Otherwise, with 32-bit
 * offsets, the loop is a vector gather per column where the instruction set has one
 * (XENT_GATHER_TUNE asks the compiler for it): about twice as fast as element copies.
 */
static XENT_GATHER_TUNE void F(transpose_rows)(const T *x, ptrdiff_t stride,
                                               ptrdiff_t nrows, ptrdiff_t n,
                                               T buf[XENT_SMALL_ROW][XENT_LANES])
{
#if defined(__AVX512F__) && defined(__GNUC__)
    /* The next group's rows, asked for now: a block's loads go down 16 rows a line at a time,
     * a pattern the hardware prefetchers do not follow (without this the loads took most of
     * the transpose's time on rows of 64). A prefetch past the array's end is harmless. */
    if ((stride - n) * (ptrdiff_t)sizeof(T) < 64) {   /* rows (nearly) back to back */
        const char *next = (const char *)(x + XENT_LANES * stride);
        for (ptrdiff_t b = 0; b < XENT_LANES * stride * (ptrdiff_t)sizeof(T); b += 64)
            __builtin_prefetch(next + b);
    } else {
        for (ptrdiff_t r = XENT_LANES; r < 2 * XENT_LANES; r++)
            for (ptrdiff_t j = 0; j < n; j += XENT_LANES) __builtin_prefetch(x + r * stride + j);
    }
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XENT_LANES)
        F(transpose_block)(x, stride, nrows, j0, n - j0, buf);
    return;
#endif
    if ((XENT_LANES - 1) * stride + n < INT32_MAX) {
        int32_t offset[XENT_LANES];
        for (ptrdiff_t r = 0; r < XENT_LANES; r++)
            offset[r] = (int32_t)((r < nrows ? r : nrows - 1) * stride);
        for (ptrdiff_t j = 0; j < n; j++) {
            const T *column = x + j;
#pragma omp simd
            for (ptrdiff_t r = 0; r < XENT_LANES; r++) buf[j][r] = column[offset[r]];
        }
    } else {
        for (ptrdiff_t r = 0; r < XENT_LANES; r++) {
            const T *row = x + (r < nrows ? r : nrows - 1) * stride;
            for (ptrdiff_t j = 0; j < n; j++) buf[j][r] = row[j];
        }
    }
}

/* exp(x - shift) with the difference's rounding put back, as in exp_term_exact (F(exp)
 * reduces with ln2 in two parts already): the double group kernels' terms. */
static inline T F(exp_small_exact)(T x, T shift)
{
    T d = x - shift;
    T bv = d - x;
    T err = (x - (d - bv)) + (-shift - bv);
    T e = F(exp)(d), fix = e * err;
    /* an infinite entry or difference makes err NaN, or e * err (inf * 0): then no fix */
    return e + (fix == fix ? fix : 0);
}

/* exp(x - shift) for rows_lse_small: exact in double; in float F(exp) of the rounded
 * difference, the rows that could miss the budget corrected by group_rescue_lanes. */
static inline T F(exp_small)(T x, T shift)
{
#if XENT_F32
    return F(exp)(x - shift);
#else
    return F(exp_small_exact)(x, shift);
#endif
}

/*
 * The group kernels' float budget, with nothing added to their loop. Their terms are F(exp)
 * of the rounded difference (ln2 in two parts) summed in double, so a term is off by
 * t |d| XENT_F32_GROUP_TERM_ERR relative (d's rounding) besides exp's own 1.15 ulp, and the
 * sum adds nothing that counts: a rest off by XENT_F32_GROUP_BUDGET (7e-7), plus 1.4e-7 from
 * exp and 6e-8 from rounding the result to float, keeps a result within 1e-6. For any
 * a >= 0, t |d| = e^-|d| |d| <= a t + e^-(a+1) (e^-u (u - a) is largest at u = a + 1), so
 * over the m terms below the shift sum t |d| <= a rest + m e^-(a+1), and a row meets the
 * budget when XENT_F32_GROUP_TERM_ERR (a rest + m e^-(a+1)) <= XENT_F32_GROUP_BUDGET rest:
 * with a = 10.65, when rest >= 8.7e-6 m. Only rows whose max stands 10 or more above the rest
 * are below that (a few in 100000 rows of random logits of std 3): those are corrected.
 */
#define XENT_F32_GROUP_TERM_ERR 0x1.02p-24   /* 2^-24 and the rounding of the test itself */
#define XENT_F32_GROUP_BUDGET 7e-7
#define XENT_F32_GROUP_A 10.65
#define XENT_F32_GROUP_TAIL 8.72e-6          /* >= e^-(a+1) = e^-11.65 = 8.719e-6 */

/* The same test solved for rest: rest < m RESCUE_BELOW, RESCUE_BELOW = TERM_ERR TAIL /
 * (BUDGET - TERM_ERR A) = 8.6938e-6 (rounded up). It runs once per group, where a group of
 * rows of 10 is short work (a test in double with the count of ties took 5% of it), so it
 * takes the row's length n for m (m <= n: more rows recomputed, never fewer) and leaves out a
 * rest of 0 (no terms, or all of them 0: nothing to be off). */
#define XENT_F32_GROUP_RESCUE_BELOW 8.70e-6

#ifndef XENT_F32_GROUP_INEXACT_DEFINED
#define XENT_F32_GROUP_INEXACT_DEFINED
/* rest: the sum of the terms below the shift of a row of n entries. False for NaN and
 * infinite rests. */
static inline int xent_f32_group_inexact(double rest, double below)
{
    return (rest > 0) & (rest < below);
}
#endif

/* Out of line, but not "cold": gcc compiles a cold function for size, without vectors, and
 * a dataset of confident short rows runs through these. */
#if defined(__GNUC__) || defined(__clang__)
#define XENT_APART static __attribute__((noinline))
#else
#define XENT_APART static
#endif

/*
 * The float group kernels' rows that could miss the budget (see xent_f32_group_inexact), as a
 * bit mask of lanes: s[l] the sum of lane l's terms below its shift, n the rows' length.
 * One vector comparison: the test runs once per group.
 */
static inline uint32_t F(group_inexact_lanes)(ptrdiff_t n, const double *s)
{
    uint32_t mask = 0;
#if XENT_F32
    const double below = (double)n * XENT_F32_GROUP_RESCUE_BELOW;
    int any = 0;
    /* first whether any lane needs it (an OR across lanes, which vectorises whole), the
     * mask only then: building it bit by bit took 6% of a group of rows of 2 */
#pragma omp simd reduction(| : any)
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) any |= xent_f32_group_inexact(s[l], below);
    if (!any) return 0;
    for (ptrdiff_t l = 0; l < XENT_LANES; l++)
        mask |= (uint32_t)xent_f32_group_inexact(s[l], below) << l;
#else
    (void)n;
    (void)s;
#endif
    return mask;
}

#if XENT_F32

/*
 * The lanes of mask: s[l], the sum of F(exp) of the rounded differences d = x - shift[l],
 * corrected to the exact terms' sum, buf transposed as transpose_rows leaves it. A term's
 * exact value is exp(d + err) = t (1 + err) to far below an ulp (err: d's rounding, TwoSum),
 * so the sum gets sum t err, where t is needed only to a few parts in 1e3 (exp_rough): the
 * correction is at most |d| 2^-25 of a term, so its own error stays below 1e-10 of the rest.
 * Rarely run, so apart from the group loops (whose code it would crowd: 5% on rows of 10).
 */
XENT_APART void F(group_rescue_lanes)(T buf[XENT_SMALL_ROW][XENT_LANES], ptrdiff_t n,
                                     const T *shift, double *s, uint32_t mask)
{
    T fix[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) fix[l] = 0;
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T x = buf[j][l], sh = shift[l], d = x - sh, bv = d - x;
            T err = (x - (d - bv)) + (-sh - bv);
            T f = F(exp_rough)(d) * err;
            fix[l] += f == f ? f : 0;   /* a -inf entry: err is NaN, its term 0 */
        }
    }
    for (ptrdiff_t l = 0; l < XENT_LANES; l++)
        s[l] = (mask >> l) & 1 ? s[l] + (double)fix[l] : s[l];
}

#endif

/*
 * For the float group kernels: each lane's rest s[l] (the sum of its terms below shift[l],
 * buf transposed as transpose_rows leaves it) corrected to the exact sum where the fast
 * terms could miss the budget (see xent_f32_group_inexact). The decision is the lane's own: its
 * row's result does not depend on the rows beside it. Nothing in double (exp_small is exact
 * there). c: unused (kept for the callers' sake).
 */
static inline void F(group_rescue)(T buf[XENT_SMALL_ROW][XENT_LANES], ptrdiff_t n,
                                   const T *shift, const T *c, double *s)
{
    (void)c;
#if XENT_F32
    uint32_t mask = F(group_inexact_lanes)(n, s);
    if (mask) F(group_rescue_lanes)(buf, n, shift, s, mask);
#else
    (void)buf;
    (void)shift;
    (void)s;
    (void)n;
#endif
}

/*
 * For row_evaluate (xent.evaluate's long rows): a float row's rest and ties computed again
 * exactly, as row_lse does, where the fast terms could miss the budget. Its state's xlogit,
 * sum t (x - shift) against the final shift, bounds the distances the terms were computed at
 * (see XENT_F32_REST_BUDGET). Nothing in double.
 */
static inline void F(eval_rescue)(const T *x, ptrdiff_t n, xent_eval_state *st)
{
#if XENT_F32
    if (!xent_f32_rest_inexact(st->rest, -st->xlogit)) return;
    xent_lse_state lse = xent_lse_init();
    double ties = 0;
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
        F(rescue_rest_chunk)(x + start, xent_chunk_len(n, start, XENT_CHUNK), (T)st->shift,
                             &ties, &lse);
    st->ties = ties;
    st->rest = lse.rest + lse.rest_err;
    st->sum = st->ties + st->rest;
#else
    (void)x;
    (void)n;
    (void)st;
#endif
}

/*
 * Log-sum-exp of up to XENT_LANES short rows (n <= XENT_SMALL_ROW entries) at once, one row
 * per vector lane: a row of 10 logits fills less than one vector, so across rows is the way
 * to vectorise. The rows (stride in elements) are copied transposed into a small buffer, then
 * max and exp-sum run over the entries with every lane busy. Per lane: m the row's max, shift
 * what its terms are shifted by, c its count of entries equal to the shift, s the sum of the
 * other terms. Same rules as row_lse: shift 0 (m -inf) and sums 0 for an all -inf row, a +inf
 * entry shifts by T_MAX, NaN spreads.
 */
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
/*
 * group_lse_lanes' float terms, one column of the transposed group a vector (the lanes its
 * rows), written out as sum_exp_vec is: one compare for the ties and one, masked by it, for
 * the terms below the normal range; exp's steps (its two-part ln2) in its order, 2^k by
 * vscalefps, so the same bits as the loop there; the sums in double lanes, the ties counted
 * as the entries less the others. Returns 0, doing nothing, where a row's max is +inf (its
 * terms are +inf, which this reduction does not give): the loop there serves that group.
 */
static inline int F(group_terms_vec)(T buf[XENT_SMALL_ROW][XENT_LANES], ptrdiff_t n,
                                     const T *m, const T *shift, T *c, double *s)
{
    if (_mm512_cmp_ps_mask(_mm512_loadu_ps(m), _mm512_set1_ps(XENT_T_MAX), _CMP_GT_OQ))
        return 0;
    const __m512 sh = _mm512_loadu_ps(shift), one = _mm512_set1_ps(1.0f);
    const __m512 magic = _mm512_set1_ps(XENT_ROUND_MAGIC);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    __m512 others = _mm512_setzero_ps();
    for (ptrdiff_t j = 0; j < n; j++) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(buf[j]), sh);
        __mmask16 other = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        __mmask16 keep = _mm512_mask_cmp_ps_mask(other, d, _mm512_set1_ps(XENT_EXP_UNDER),
                                                 _CMP_NLT_UQ);
        __m512 k = _mm512_sub_ps(_mm512_fmadd_ps(d, _mm512_set1_ps(XENT_LOG2E), magic), magic);
        __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(XENT_LN2_HI), d);
        r = _mm512_fnmadd_ps(k, _mm512_set1_ps(XENT_LN2_LO), r);
        __m512 term = _mm512_maskz_scalef_ps(keep, F(exp_poly_vec)(r), k);
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(term)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(
                                   _mm512_extractf64x4_pd(_mm512_castps_pd(term), 1))));
        others = _mm512_mask_add_ps(others, other, others, one);
    }
    _mm512_storeu_pd(s, lo);
    _mm512_storeu_pd(s + 8, hi);
    _mm512_storeu_ps(c, _mm512_sub_ps(_mm512_set1_ps((T)n), others));
    return 1;
}
#endif

/* Returns the lanes whose rows could miss the float budget (group_inexact_lanes; 0 in
 * double), for the caller to pass to group_rescue_lanes with buf. (Always inlined: the compiler
 * stopped inlining it into rows_index_loss_small once it grew, which cost 5% on rows of 10.) */
XENT_LANES_INLINE uint32_t F(group_lse_lanes)(const T *x, ptrdiff_t stride,
                                              ptrdiff_t nrows, ptrdiff_t n, T m[XENT_LANES],
                                              T shift[XENT_LANES], T c[XENT_LANES],
                                              double s[XENT_LANES],
                                              T buf[XENT_SMALL_ROW][XENT_LANES])
{
    F(transpose_rows)(x, stride, nrows, n, buf);
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = -(T)INFINITY;
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = buf[j][l] > m[l] ? buf[j][l] : m[l];
    }
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        shift[l] = m[l] > XENT_T_MAX ? XENT_T_MAX : m[l];
        shift[l] = m[l] == -(T)INFINITY ? 0 : shift[l];   /* exp(-inf - 0) = 0 */
        s[l] = c[l] = 0;
    }
#if XENT_F32
#if defined(__AVX512F__) && defined(__GNUC__)
    if (F(group_terms_vec)(buf, n, m, shift, c, s)) return F(group_inexact_lanes)(n, s);
#endif
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {   /* the max's terms apart, as row_lse */
            T tie = buf[j][l] == shift[l] ? 1 : 0;      /* in T: the select stays in T lanes */
            s[l] += (double)(F(exp_small)(buf[j][l], shift[l]) - tie);
            c[l] += tie;
        }
    }
    return F(group_inexact_lanes)(n, s);
#else
    /* A double result is held to 4 ulp: up to 63 terms of one size added in a row round the
     * same way each time (7 ulp on the loss of [0, -30 x 63]), so the lanes carry Kahan's
     * compensation, as the long rows' chains do. */
    double comp[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) comp[l] = 0;
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            T tie = buf[j][l] == shift[l] ? 1 : 0;
            double y = (F(exp_small)(buf[j][l], shift[l]) - tie) - comp[l], t = s[l] + y;
            double lost = (t - s[l]) - y;
            comp[l] = lost == lost ? lost : 0;   /* NaN once the sum is inf (a +inf entry) */
            s[l] = t;
            c[l] += tie;
        }
    }
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) s[l] -= comp[l];
    return 0;
#endif
}

/* Log-sum-exp states of up to XENT_LANES short rows (see group_lse_lanes). */
static void F(rows_lse_small)(const T *x, ptrdiff_t stride, ptrdiff_t nrows,
                              ptrdiff_t n, xent_lse_state *st)
{
    T m[XENT_LANES], shift[XENT_LANES], c[XENT_LANES], buf[XENT_SMALL_ROW][XENT_LANES];
    double s[XENT_LANES];
    uint32_t redo = F(group_lse_lanes)(x, stride, nrows, n, m, shift, c, s, buf);
#if XENT_F32
    if (redo) F(group_rescue_lanes)(buf, n, shift, s, redo);
#else
    (void)redo;
#endif
    for (ptrdiff_t r = 0; r < nrows; r++) {
        st[r].shift = m[r] == -(T)INFINITY ? -INFINITY : (double)shift[r];
        st[r].ties = (double)c[r];
        st[r].rest = s[r];
        st[r].rest_err = 0;
        st[r].sum = (double)c[r] + s[r];
    }
}

/*
 * out[j] = x[j] - logsumexp(x), rounded once from double. out may be x itself: the row is
 * read in full before it is written.
 */
static void F(row_log_softmax)(const T *x, ptrdiff_t n, T *out)
{
    xent_lse_state st = xent_lse_init();
    F(row_lse)(x, n, &st);
    double shift = st.shift, log_sum = xent_lse_log_sum(&st);
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = (T)(((double)x[j] - shift) - log_sum);
}

/*
 * exp((x - shift) - log_sum), a softmax or gradient entry of a row, as exp((x - s0) - (vh + vl))
 * with the parts of softmax_split. In float, x - shift and the subtraction of log_sum each
 * round (by up to |x - shift| 2^-25: 2.6e-6 of an entry near the smallest normal, carried
 * relative by exp, so a small probability missed 1e-6 by up to 4x). softmax_split makes
 * x - s0 exact and vh + vl the rest of the shift (|vl| <= 2^-12), so one TwoSum gives the
 * rounding of d = (x - s0) - vh exactly and exp(d) (1 + err - vl) puts it back (its square,
 * below 3e-8, left out): an entry is then F(exp)'s own 1.15 ulp off. In double, the same
 * for both subtractions (vl is 0 there).
 */
static inline T F(exp_shifted)(T x, T s0, T vh, T vl)
{
#if XENT_F32
    T u = x - s0, d = u - vh, bv = d - u;
    T err = (u - (d - bv)) + (-vh - bv);
    T p = F(exp)(d), fix = p * (err - vl);
    /* an infinite entry makes err NaN (a -inf entry: p = 0) */
    return p + (fix == fix ? fix : 0);
#else
    /* double: both subtractions' roundings by TwoSum, put back as exp(d) (1 + err); their
     * size, up to |x - shift| 2^-53 (a third of an ulp per unit of distance, 400 ulp of an
     * entry near 1e-300), leaves exp's own ulp. The callers pass shift + log_sum as two
     * parts to below an entry's ulp (xent_lse_softmax_exponent): log_sum rounded to double
     * would be off by up to an ulp of itself, relative in every entry (an ulp for each 2 of
     * log_sum) */
    (void)vl;
    T u = x - s0, bu = u - x;
    T eu = (x - (u - bu)) + (-s0 - bu);
    T d = u - vh, bd = d - u;
    T ed = (u - (d - bd)) + (-vh - bd);
    T p = F(exp)(d), fix = p * (eu + ed);
    /* an infinite entry or shift makes the roundings NaN (a -inf entry: p = 0) */
    return p + (fix == fix ? fix : 0);
#endif
}

/*
 * exp_shifted for a float row whose shift + log_sum is finite and below 4096 in magnitude
 * (softmax_split returned 1: no NaN or +inf entry, s0 = 0): the same correction, with
 * exp_term (ln2 in one part, no upper clamp: d <= 0, as vh >= shift >= x) and its ln2 error,
 * k (ln2 - LN2) relative with k = d log2e to within 0.5 (1e-9), put back in the same
 * multiply-add; a -inf entry is clamped to a finite one whose term is 0, so no NaN check. Four
 * vector operations fewer an entry than exp_shifted.
 */
static inline T F(exp_shifted_fast)(T x, T vh, T vl)
{
#if XENT_F32
    T u = x < -0x1p100f ? -0x1p100f : x;
    T d = u - vh, bv = d - u;
    T err = (u - (d - bv)) + (-vh - bv);
    T corr = d * XENT_F32_TERM_LN2_FIX + (err - vl);
    T p = F(exp_term)(d);
    return p + p * corr;
#else
    return F(exp)(x - vh) + 0 * vl;   /* never called: softmax_split returns 0 in double */
#endif
}

#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
/*
 * ta exp_shifted_fast(x, vh, vl) - tb on one vector, written out (the same operations in the
 * same order: the same bits), for the loops that write softmax and gradient entries. They are
 * bound by their vector instructions, and three fewer an entry is a sixth of them: 2^k comes
 * in vscalefps (the add, shift and multiply of the exponent bits), and one mask of the entries
 * whose term is a normal float (the rest are 0) takes the place of exp_term's clamp and select
 * and of the clamp that kept a -inf entry's correction finite (the last multiply-add is
 * masked, so a NaN correction of a -inf entry never reaches the result).
 */
static inline __m512 F(grad_fast_vec)(__m512 x, __m512 vh, __m512 vl, __m512 ta, __m512 tb)
{
    const __m512 magic = _mm512_set1_ps(XENT_ROUND_MAGIC);
    __m512 d = _mm512_sub_ps(x, vh), bv = _mm512_sub_ps(d, x);
    __m512 err = _mm512_add_ps(_mm512_sub_ps(x, _mm512_sub_ps(d, bv)),
                               _mm512_sub_ps(_mm512_sub_ps(_mm512_setzero_ps(), vh), bv));
    __m512 corr = _mm512_fmadd_ps(d, _mm512_set1_ps(XENT_F32_TERM_LN2_FIX),
                                  _mm512_sub_ps(err, vl));
    __mmask16 live = _mm512_cmp_ps_mask(d, _mm512_set1_ps(XENT_EXP_UNDER), _CMP_NLT_UQ);
    __m512 k = _mm512_sub_ps(_mm512_fmadd_ps(d, _mm512_set1_ps(XENT_LOG2E), magic), magic);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(XENT_LN2), d);
    __m512 e = _mm512_scalef_ps(F(exp_poly_vec)(r), k);
    e = _mm512_maskz_fmadd_ps(live, e, corr, e);
    return _mm512_fmsub_ps(ta, e, tb);
}

/* out[k] = ta exp_shifted_fast(x[k], vh, vl) - tb for k < n, the last group masked. */
static inline void F(grad_fast_array)(const T *x, ptrdiff_t n, T vh, T vl, T ta, T tb, T *out)
{
    const __m512 h = _mm512_set1_ps(vh), l = _mm512_set1_ps(vl);
    const __m512 a = _mm512_set1_ps(ta), b = _mm512_set1_ps(tb);
    ptrdiff_t k = 0;
    for (; k + XENT_LANES <= n; k += XENT_LANES)
        _mm512_storeu_ps(out + k, F(grad_fast_vec)(_mm512_loadu_ps(x + k), h, l, a, b));
    if (k < n) {
        __mmask16 in = (__mmask16)((1u << (n - k)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(in, x + k);
        _mm512_mask_storeu_ps(out + k, in, F(grad_fast_vec)(v, h, l, a, b));
    }
}
#endif

/*
 * The parts of a row's shift + log_sum for exp_shifted. In float, where |shift + log_sum| <
 * 4096 it is split into T parts whole (s0 = 0, vh its rounding to T, vl the rest: below half
 * an ulp of 4096, 2^-12); else s0 is the shift (x - shift is exact for every entry whose term
 * is a normal float: such an x is within 87 of a shift of magnitude above 4000, Sterbenz) and
 * vh + vl is log_sum (at most log C). Per row, in double (TwoSum for the whole split). Returns
 * 1 where exp_shifted_fast may be used instead.
 */
static inline int F(softmax_split)(double shift, double log_sum, T *s0, T *vh, T *vl)
{
#if XENT_F32
    double c = shift + log_sum;
    if (fabs(c) < 4096) {   /* false for NaN and infinities */
        double bv = c - shift, err = (shift - (c - bv)) + (log_sum - bv);
        *s0 = 0;
        *vh = (T)c;
        *vl = (T)((c - (double)*vh) + err);
        return 1;   /* exp_shifted_fast applies */
    }
    *s0 = (T)shift;
    *vh = (T)log_sum;
    *vl = (T)(log_sum - (double)*vh);
#else
    *s0 = (T)shift;
    *vh = (T)log_sum;
    *vl = 0;
#endif
    return 0;
}

/*
 * c_hi[r] + c_lo[r]: the exponent of row r's double softmax entries, in two parts
 * (xent_lse_softmax_exponent), for the rows r < n of a group, in vector lanes. T unused.
 */
static void F(rows_softmax_exponent)(const xent_lse_state *st, const double *log_sum,
                                     ptrdiff_t n, double *c_hi, double *c_lo)
{
#pragma omp simd
    for (ptrdiff_t r = 0; r < n; r++)
        xent_lse_softmax_exponent(&st[r], log_sum[r], &c_hi[r], &c_lo[r]);
}

/* out[j] = exp(x[j] - logsumexp(x)) (exp_shifted). out may be x itself. */
static void F(row_softmax)(const T *x, ptrdiff_t n, T *out)
{
    xent_lse_state st = xent_lse_init();
    F(row_lse)(x, n, &st);
    double shift = st.shift, log_sum = xent_lse_log_sum(&st);
#if !XENT_F32
    xent_lse_softmax_exponent(&st, log_sum, &shift, &log_sum);
#endif
    T s0, vh, vl;
    if (F(softmax_split)(shift, log_sum, &s0, &vh, &vl)) {
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
        F(grad_fast_array)(x, n, vh, vl, 1, 0, out);   /* 1 e - 0 is e, bit for bit */
#else
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) out[j] = F(exp_shifted_fast)(x[j], vh, vl);
#endif
        return;
    }
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = F(exp_shifted)(x[j], s0, vh, vl);
}
