/*
 * The vectorised elementary functions every kernel builds on: exp, log and log1p of T, written
 * branch-free so that the loops calling them vectorise, and the element type's constants.
 * Part of one instantiation (see xent_instantiate.h): T, F and XENT_F32 are set.
 */

#ifndef XENT_LANES_INLINE
#if defined(__GNUC__) || defined(__clang__)
/* inlined even where it is used twice: a call in a loop would keep the loop scalar (F(exp):
 * once the float rows' exact terms used it too, gcc called it out of line from the gradient
 * loop's tail, 22% of cross_entropy_with_grad on rows of 10; the KL gradient's loops stayed
 * scalar) */
#define XENT_LANES_INLINE static inline __attribute__((always_inline))
#else
#define XENT_LANES_INLINE static inline
#endif
#endif

#if XENT_F32
typedef uint32_t F(bits_t);
#define XENT_MANT_BITS 23
#define XENT_EXP_BIAS 127
#define XENT_ROUND_MAGIC 0x1.8p23f          /* adding it rounds |v| < 2^22 to an integer */
#define XENT_LOG2E 0x1.715476p+0f
#define XENT_LN2_HI 0x1.62ep-1f             /* 12 bits: k * LN2_HI is exact for |k| < 2^12 */
#define XENT_LN2_LO 0x1.0bfbe8p-15f
#define XENT_LN2 0x1.62e430p-1f                /* ln2 rounded: 1.9e-9 relative off */
#define XENT_EXP_UNDER (-87.33654f)         /* below: exp is subnormal, returned as 0 */
#define XENT_EXP_CLAMP 88.37f               /* k stays <= 127 */
#define XENT_EXP_OVER 88.72284f             /* above: +inf */
#define XENT_T_MAX FLT_MAX
#define XENT_T_MIN FLT_MIN                   /* smallest normal */
#define XENT_SUBNORMAL_SCALE 0x1p24f         /* lifts a subnormal into the normal range */
#define XENT_SUBNORMAL_SCALE_EXP 24
#define XENT_SQRT2 0x1.6a09e6p+0f
#else
typedef uint64_t F(bits_t);
#define XENT_MANT_BITS 52
#define XENT_EXP_BIAS 1023
#define XENT_ROUND_MAGIC 0x1.8p52
#define XENT_LOG2E 0x1.71547652b82fep+0
#define XENT_LN2_HI 0x1.62e42fee00000p-1    /* 32 bits: k * LN2_HI is exact for |k| < 2^21 */
#define XENT_LN2_LO 0x1.a39ef35793c76p-33
#define XENT_LN2 0x1.62e42fefa39efp-1
#define XENT_EXP_UNDER (-708.3964185322641)
#define XENT_EXP_CLAMP 709.08
#define XENT_EXP_OVER 709.782712893384
#define XENT_T_MAX DBL_MAX
#define XENT_T_MIN DBL_MIN
#define XENT_SUBNORMAL_SCALE 0x1p54
#define XENT_SUBNORMAL_SCALE_EXP 54
#define XENT_SQRT2 0x1.6a09e667f3bcdp+0
#endif

/*
 * exp(y), branch-free so that it vectorises: y = k ln2 + r with |r| <= ln2/2, exp(r) by a
 * polynomial, times 2^k built in the exponent bits. In float the polynomial is
 * 1 + r + r^2 q(r) with q of degree 4, minimax for the relative error on |r| <= 0.3466
 * (3.1e-9, a twentieth of an ulp; found by a Remez exchange in mpmath); in double it is the
 * Taylor polynomial of degree 13 (truncation below a tenth of an ulp). exp(0) is exactly 1.
 * Returns 0 where exp(y) is subnormal, +inf above the largest finite result, NaN for NaN.
 * Measured error (tests/test_math.py, every variant): float at most 0.88 ulp with FMA (AVX2,
 * AVX-512) and 1.15 ulp without (baseline), 0.26 on average; double at most 1.0 ulp from
 * glibc's exp. (The Taylor polynomial of degree 7 this replaced gave 1.22 ulp.)
 */
XENT_LANES_INLINE T F(exp_poly)(T yc, T *scale, int exact_ln2)
{
    T kr = yc * XENT_LOG2E + XENT_ROUND_MAGIC;        /* round(y / ln2), held in the low bits */
    T k = kr - XENT_ROUND_MAGIC;
    /* k ln2 in two parts keeps r exact; with ln2 rounded to one T, r is off by |k| 1.9e-9
     * (float), which a sum of terms exp(y) of size 2^k may well afford (see exp_term) */
#if defined(__FMA__)
    T r = exact_ln2 ? (yc - k * XENT_LN2_HI) - k * XENT_LN2_LO : yc - k * XENT_LN2;   /* fused */
#else
    /* without FMA, k * ln2 rounded to T would put 2^-20 into r (float): always two parts */
    (void)exact_ln2;
    T r = (yc - k * XENT_LN2_HI) - k * XENT_LN2_LO;
#endif
    F(bits_t) kbits, magic_bits, scale_bits;
    T magic = XENT_ROUND_MAGIC;
    memcpy(&kbits, &kr, sizeof kbits);
    memcpy(&magic_bits, &magic, sizeof magic_bits);
    scale_bits = (kbits - magic_bits + XENT_EXP_BIAS) << XENT_MANT_BITS;   /* 2^k */
    memcpy(scale, &scale_bits, sizeof *scale);
#if XENT_F32
    T p = 0x1.6a243ap-10f;                            /* 0.0013814602 */
    p = p * r + 0x1.1239e0p-7f;                       /* 0.0083687152 */
    p = p * r + 0x1.5558f2p-5f;                       /* 0.0416683879 */
    p = p * r + 0x1.555492p-3f;                       /* 0.1666652065 */
    p = p * r + 0x1.fffffcp-2f;                       /* 0.4999999345 */
    p = p * r + 1.0f;
    p = p * r + 1.0f;
#else
    T p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
#endif
    return p;
}

XENT_LANES_INLINE T F(exp)(T y)
{
    T yc = y < XENT_EXP_UNDER ? XENT_EXP_UNDER : y;   /* NaN passes both clamps */
    yc = yc > XENT_EXP_CLAMP ? XENT_EXP_CLAMP : yc;
    T scale, e = F(exp_poly)(yc, &scale, 1) * scale;
    e = y < XENT_EXP_UNDER ? 0 : e;
    e = y > XENT_EXP_OVER ? (T)INFINITY : e;
    return e;
}

/*
 * exp(y) as a term of a sum of exps: y <= 0 or NaN, and exp(0) exactly 1; 0 where exp(y) is
 * subnormal (or y = -inf). Since the max's own terms are summed apart (see sum_exp_group),
 * the other terms may make up a tiny result on their own (logsumexp([0, -80]) = 1.8e-35), so a
 * term below the normal range must be 0, never rounded up to one near the smallest normal.
 * In float it reduces y with ln2 in one part, so a term of size 2^k is off by |k| 1.9e-9
 * relative (2.4e-7 for a term near the smallest normal); skipping F(exp)'s upper clamp and
 * its second reduction step makes the log-sum-exp loops a third shorter, which is their speed
 * (they are bound by exp, not by memory). The float rows count it in their error bound, with
 * the rounding of y itself, and the rows that bound could put above 1e-6 have their terms
 * computed again with the exact reduction (see XENT_F32_REST_BUDGET in xent_lse.h). In
 * double the one-part reduction would be off by |k| 1.1e-16 relative (~100 ulp for a result
 * near 1e-300), so the reduction is exact there.
 */
static inline T F(exp_term)(T y)
{
    T scale, yc = y < XENT_EXP_UNDER ? XENT_EXP_UNDER : y;
    T e = F(exp_poly)(yc, &scale, !XENT_F32) * scale;
    return y < XENT_EXP_UNDER ? 0 : e;
}

/* The bits of a T, and back, without aliasing trouble (compiles to nothing or a move). */
static inline F(bits_t) F(to_bits)(T v)
{
    F(bits_t) b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static inline T F(from_bits)(F(bits_t) b)
{
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/*
 * log(x), branch-free: x = 2^e m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) with
 * s = (m - 1) / (m + 1), by its odd series (to s^9 in float, s^21 in double: the truncation
 * is below a tenth of an ulp). A subnormal x is scaled into the normal range first.
 * log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN gives NaN. Measured (tests/test_math.py,
 * every variant): at most 1.9 ulp in float, 2.0 in double; log1p at most 2.4 and 2.0.
 */
static inline T F(log)(T x)
{
    const F(bits_t) mant_mask = ((F(bits_t))1 << XENT_MANT_BITS) - 1;
    const F(bits_t) one_bits = (F(bits_t))XENT_EXP_BIAS << XENT_MANT_BITS;   /* bits of 1.0 */
    T sub = x < XENT_T_MIN ? (T)XENT_SUBNORMAL_SCALE_EXP : 0;
    T xs = x < XENT_T_MIN ? x * XENT_SUBNORMAL_SCALE : x;
    F(bits_t) b = F(to_bits)(xs);
    /* The biased exponent as a T, exactly: put it in the mantissa of 2^MANT_BITS, subtract. */
    F(bits_t) raw_exp = (b >> XENT_MANT_BITS) & (2 * XENT_EXP_BIAS + 1);
    T e = F(from_bits)(raw_exp | ((F(bits_t))(XENT_EXP_BIAS + XENT_MANT_BITS) << XENT_MANT_BITS)) -
          F(from_bits)((F(bits_t))(XENT_EXP_BIAS + XENT_MANT_BITS) << XENT_MANT_BITS);
    e = e - (T)XENT_EXP_BIAS - sub;
    T m = F(from_bits)((b & mant_mask) | one_bits);   /* in [1, 2) */
    T big = m > XENT_SQRT2 ? (T)1 : (T)0;
    m = m > XENT_SQRT2 ? m * (T)0.5 : m;
    e = e + big;
    T s = (m - 1) / (m + 1), z = s * s;
#if XENT_F32
    T p = 1.0f / 9;
    p = p * z + 1.0f / 7;
    p = p * z + 1.0f / 5;
    p = p * z + 1.0f / 3;
#else
    T p = 1.0 / 21;
    p = p * z + 1.0 / 19;
    p = p * z + 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
#endif
    T log_m = 2 * s + 2 * s * z * p;
    T r = e * XENT_LN2_HI + (log_m + e * XENT_LN2_LO);
    r = x == 0 ? -(T)INFINITY : r;
    r = x < 0 ? (T)NAN : r;
    r = x == (T)INFINITY ? (T)INFINITY : r;
    r = x != x ? x : r;
    return r;
}

/*
 * log(1 + y) accurate for small y: with u = 1 + y rounded, log(u) - ((u - 1) - y) / u
 * corrects the rounding of u (Goldberg's trick).
 */
static inline T F(log1p)(T y)
{
    T u = 1 + y;
    T r = F(log)(u) - ((u - 1) - y) / u;
    r = u == 1 ? y : r;
    r = y == (T)INFINITY ? (T)INFINITY : r;
    r = y == -1 ? -(T)INFINITY : r;
    return r;
}

/* Elementwise exp, log and log1p over arrays (for their accuracy tests). */
static void F(exp_array)(const T *x, ptrdiff_t n, T *out)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) out[i] = F(exp)(x[i]);
}

static void F(log_array)(const T *x, ptrdiff_t n, T *out)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) out[i] = F(log)(x[i]);
}

static void F(log1p_array)(const T *x, ptrdiff_t n, T *out)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) out[i] = F(log1p)(x[i]);
}

#ifndef XENT_LOG_LANES_DEFINED
#define XENT_LOG_LANES_DEFINED
/*
 * log(x) of a double, branch-free so that a loop over rows vectorises, and to within 1 ulp
 * (the log of a row's sum of exps, xent_lse_log_sum, was a scalar glibc call per row: a row of
 * 10 logits spent a seventh of its time there). Defined once per instruction-set file, in
 * double whatever T is: a loss is formed in double.
 *
 * x = 2^k (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)), f = m - 1 exact. With s = f / (2 + f),
 * log(1 + f) = 2 atanh(s) = 2s + s R, R = sum_{j>=1} 2 s^(2j) / (2j + 1), and since
 * s (2 + f) = f, 2s = f - hfsq + s hfsq with hfsq = f^2 / 2. So
 *     log(1 + f) = f - (hfsq - s (hfsq + R)),
 * where f is exact and every rounded part is smaller than f by a factor of at least 4: the
 * result is within 1 ulp (F(log)'s 2 atanh(s) form puts s's own rounding into the result:
 * 2 ulp; glibc's log is within about 0.5). |s| <= 0.1716, so s^2 <= 0.0295 and R to s^20 leaves a truncation below 2^-56
 * relative. k ln2 in two parts (LN2_HI has 32 bits: k LN2_HI is exact).
 * log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN gives NaN; subnormals scaled first.
 * Measured against mpmath over the whole double range in tests/test_math.py.
 */
XENT_LANES_INLINE double xent_log_lanes(double x)
{
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    double sub = x < DBL_MIN ? 54.0 : 0.0;
    double xs = x < DBL_MIN ? x * 0x1p54 : x;
    uint64_t b;
    memcpy(&b, &xs, sizeof b);
    /* the biased exponent as a double, exactly: put it in the mantissa of 2^52, subtract */
    uint64_t raw_exp = (b >> 52) & 0x7ff;
    uint64_t two52 = (uint64_t)(1023 + 52) << 52;
    double e, two52d, m;
    uint64_t eb = raw_exp | two52, mb = (b & (((uint64_t)1 << 52) - 1)) | ((uint64_t)1023 << 52);
    memcpy(&e, &eb, sizeof e);
    memcpy(&two52d, &two52, sizeof two52d);
    memcpy(&m, &mb, sizeof m);   /* in [1, 2) */
    e = (e - two52d) - 1023.0 - sub;
    double big = m > 0x1.6a09e667f3bcdp+0 ? 1.0 : 0.0;
    m = m > 0x1.6a09e667f3bcdp+0 ? m * 0.5 : m;
    e = e + big;
    double f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f);
    double r_sum = xent_log_series(s * s);   /* R */
    double r = e * ln2_hi - ((hfsq - (s * (hfsq + r_sum) + e * ln2_lo)) - f);
    r = x == 0 ? -INFINITY : r;
    r = x < 0 ? NAN : r;
    r = x == INFINITY ? INFINITY : r;
    r = x != x ? x : r;
    return r;
}

/*
 * log(1 + y) for y >= 0 (or inf, NaN), branch-free: with u = 1 + y rounded, log(u) corrected
 * by ((u - 1) - y) / u, u's rounding error (Goldberg). Where u rounds to 1 this gives y
 * exactly (0 - (0 - y) / 1); inf for inf. xent_log1p_pos, the scalar form, skips the
 * correction for y >= 1 to save a division (1.5 ulp there, measured against mpmath); here
 * one division serves a vector of rows, so it is always made.
 * Measured against mpmath (tests/test_math.py): log at most 0.72 ulp with FMA, 0.75
 * without; log1p at most 0.99 and 1.02.
 */
XENT_LANES_INLINE double xent_log1p_lanes(double y)
{
    double u = 1.0 + y;
    double r = xent_log_lanes(u) - ((u - 1.0) - y) / u;
    return u == INFINITY ? u : r;   /* inf - inf / inf would be NaN; NaN stays NaN */
}
#endif

/* Elementwise xent_log_lanes and xent_log1p_lanes over double arrays (for their tests). */
static void F(log_lanes_array)(const double *x, ptrdiff_t n, int plus_one, double *out)
{
    if (plus_one) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) out[i] = xent_log1p_lanes(x[i]);
    } else {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) out[i] = xent_log_lanes(x[i]);
    }
}
