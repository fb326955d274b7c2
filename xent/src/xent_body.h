/*
 * Row kernels of xent, written once and compiled once per (element type, instruction set).
 *
 * xent_kernels.h includes this file several times, each time with
 *   XENT_T        the element type, float or double,
 *   XENT_F32      1 for float, 0 for double,
 *   XENT_NAME(n)  a name mangler such as n##_f32_avx2,
 * and inside a `#pragma GCC target(...)` region, so that one portable build carries an AVX-512,
 * an AVX2 and a baseline copy of every kernel and picks one at run time.
 *
 * The loops are plain C with `#pragma omp simd`: the compiler vectorises them for whichever
 * instruction set the region targets (and for NEON on ARM). No -ffast-math: inf and NaN
 * behave as IEEE says, and the reductions are reordered only where a pragma says so, which
 * keeps every result a pure function of the row (the same bits on any number of threads).
 *
 * Kernels trust their arguments: the Python layer has validated shapes, dtypes and labels.
 */

#define T XENT_T
#define F XENT_NAME

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
static inline T F(exp_poly)(T yc, T *scale, int exact_ln2)
{
    T kr = yc * XENT_LOG2E + XENT_ROUND_MAGIC;        /* round(y / ln2), held in the low bits */
    T k = kr - XENT_ROUND_MAGIC;
    /* k ln2 in two parts keeps r exact; with ln2 rounded to one T, r is off by |k| 1.9e-9
     * (float), which a sum of terms exp(y) of size 2^k may well afford (see exp_term) */
    T r = exact_ln2 ? (yc - k * XENT_LN2_HI) - k * XENT_LN2_LO : yc - k * XENT_LN2;
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

static inline T F(exp)(T y)
{
    T yc = y < XENT_EXP_UNDER ? XENT_EXP_UNDER : y;   /* NaN passes both clamps */
    yc = yc > XENT_EXP_CLAMP ? XENT_EXP_CLAMP : yc;
    T scale, e = F(exp_poly)(yc, &scale, 1) * scale;
    e = y < XENT_EXP_UNDER ? 0 : e;
    e = y > XENT_EXP_OVER ? (T)INFINITY : e;
    return e;
}

/*
 * exp(y) as a term of a sum of exps: y <= 0 or NaN, and exp(0) exactly 1. Where exp(y) is
 * subnormal (or y = -inf) it returns a number no larger than the smallest normal T instead of
 * 0, which a sum holding the max's 1 rounds away; and it reduces y with ln2 in one part, so a
 * term of size 2^k is off by |k| 1.9e-9 relative (float). Terms far below the max (large |k|)
 * weigh in only when there are about 2^|k| of them: a row of a million terms is off by at most
 * 20 x 1.9e-9 = 4e-8 of its sum, well inside the 1e-6 the losses are held to. Skipping
 * F(exp)'s clamps, selects and second reduction step makes the log-sum-exp loops a third
 * shorter, which is their speed (they are bound by exp, not by memory).
 */
static inline T F(exp_term)(T y)
{
    T scale, yc = y < XENT_EXP_UNDER ? XENT_EXP_UNDER : y;
    return F(exp_poly)(yc, &scale, 0) * scale;
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

/*
 * out[i] = h[i] widened exactly to T, where h holds IEEE float16 (bfloat == 0) or bfloat16
 * (bfloat == 1) bits. bfloat16 is the top half of a float. float16's exponent and mantissa,
 * moved to a float's places, are off by the bias difference, 2^(127 - 15): one multiply puts
 * normals and subnormals right; inf and NaN (payload kept) get the all-ones exponent instead.
 * Branch-free, so it vectorises with or without F16C.
 */
static void F(widen_half)(const uint16_t *h, ptrdiff_t n, int bfloat, T *out)
{
    if (bfloat) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)h[i] << 16;
            float f;
            memcpy(&f, &b, sizeof f);
            out[i] = (T)f;
        }
        return;
    }
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) {
        uint32_t v = h[i], magnitude = (v & 0x7fffu) << 13, bits;
        float f;
        memcpy(&f, &magnitude, sizeof f);
        f *= 0x1p112f;
        memcpy(&bits, &f, sizeof bits);
        bits = magnitude >= (0x7c00u << 13) ? magnitude | 0x7f800000u : bits;
        bits |= (v & 0x8000u) << 16;
        memcpy(&f, &bits, sizeof f);
        out[i] = (T)f;
    }
}

/*
 * out[i] = x[i] (a float value) rounded to the nearest float16 (bfloat == 0) or bfloat16 bits,
 * ties to even, as numpy and ml_dtypes round: beyond the largest finite value inf, subnormals
 * kept, NaN a NaN of the same sign (float16 keeps the payload's top bits, as numpy does;
 * bfloat16 gives the quiet NaN ml_dtypes gives). Branch-free, for numpy's conversion of
 * subnormal float16 results is slower by two orders of magnitude (small gradients are).
 */
static void F(narrow_half)(const T *x, ptrdiff_t n, int bfloat, uint16_t *out)
{
    if (bfloat) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            float f = (float)x[i];
            uint32_t u;
            memcpy(&u, &f, sizeof u);
            uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
            uint32_t nan = (u >> 16 & 0x8000u) | 0x7fc0u;
            out[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
        }
        return;
    }
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) {
        float f = (float)x[i], magnitude, tiny;
        uint32_t u, a, tiny_bits;
        memcpy(&u, &f, sizeof u);
        a = u & 0x7fffffffu;
        memcpy(&magnitude, &a, sizeof magnitude);
        /* below 2^-14: adding 0.5 lines the value up with the subnormal spacing 2^-24, and the
         * hardware rounds it to even; its low bits are then the float16's */
        tiny = magnitude + 0.5f;
        memcpy(&tiny_bits, &tiny, sizeof tiny_bits);
        uint32_t sub = tiny_bits - 0x3f000000u;
        uint32_t normal = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;   /* rebias */
        uint32_t nan = 0x7c00u + ((a & 0x7fffffu) >> 13);
        nan = nan == 0x7c00u ? 0x7c01u : nan;
        uint32_t h = a < 0x38800000u ? sub : normal;
        h = a >= 0x47800000u ? 0x7c00u : h;          /* 65520 and up round to inf */
        h = a > 0x7f800000u ? nan : h;
        out[i] = (uint16_t)(h | ((u >> 16) & 0x8000u));
    }
}

/*
 * The row loops work on groups of XENT_LANES entries (64 bytes: one AVX-512 vector, two AVX2
 * vectors, four SSE vectors) with one accumulator per lane, so they vectorise whole at any
 * width; a row's last partial group is copied into a group padded with -inf, whose exp is 0.
 * This keeps short rows (C = 10) off a scalar remainder loop, and fixes the order of every
 * sum whatever the vector width.
 */
#define XENT_LANES ((ptrdiff_t)(64 / sizeof(T)))

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
static inline T F(max_chunk)(const T *x, ptrdiff_t whole, const T *tail)
{
    T m[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = -(T)INFINITY;
    for (ptrdiff_t g = 0; g < whole; g += XENT_LANES) F(max_group)(x + g, m);
    if (tail) F(max_group)(tail, m);
    return F(lanes_max)(m);
}

/*
 * One group's exp(x - shift) into the lane sums s, and its entries equal to the shift into
 * the lane counts c. Their terms are exactly 1 and are kept out of s: a float lane holding 1
 * would round every small term added to it to a multiple of 2^-24, and in a confident row
 * (the target the max, every other term small) the loss is log(1 + the small terms), so it
 * would lose its relative accuracy. Every entry <= shift (lse_chunk deals with +inf before).
 */
static inline void F(sum_exp_group)(const T *g, T shift, T *s, T *c)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        T tie = g[l] == shift ? 1 : 0;                   /* then exp_term gives exactly 1 */
        s[l] += F(exp_term)(g[l] - shift) - tie;
        c[l] += tie;
    }
}

/*
 * Sum of exp(x - shift) over a chunk (its whole groups and its padded tail group, as in
 * max_chunk), in T lanes: a chunk is short enough. The count of entries equal to the shift
 * is added to *ties. One loop for both parts, so the constants are set up once per chunk.
 */
static inline double F(sum_exp_chunk)(const T *x, ptrdiff_t whole, const T *tail, T shift,
                                      double *ties)
{
    T s[XENT_LANES], c[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) s[l] = c[l] = 0;
    for (ptrdiff_t g = 0; g < whole; g += XENT_LANES) {
        /* The next chunk (or, for contiguous rows, the next row) is fetched while this one
         * is busy with exp: its max pass then finds it in cache. A hint: never faults. */
        __builtin_prefetch(x + whole + XENT_LANES + g, 0, 3);
        F(sum_exp_group)(x + g, shift, s, c);
    }
    if (tail) F(sum_exp_group)(tail, shift, s, c);
    *ties += F(lanes_sum)(c);
    return F(lanes_sum)(s);
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
 * sum is rescaled when the shift grows. A NaN anywhere makes the sum NaN.
 */
static inline void F(lse_chunk)(const T *x, ptrdiff_t n, xent_lse_state *st)
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
        if (F(has_nan)(x, n)) st->sum = NAN;
        return;
    }
    T shift = cmax > XENT_T_MAX ? XENT_T_MAX : cmax;
    if (shift > st->shift) {
        if (st->sum != 0) st->sum *= exp(st->shift - (double)shift);   /* NaN stays NaN */
        st->shift = shift;
    }
    if (cmax > XENT_T_MAX) {   /* +inf: exp(inf - T_MAX) = inf, which exp_term does not give */
        st->sum += F(has_nan)(x, n) ? NAN : INFINITY;
        return;
    }
    double ties = 0, sum = F(sum_exp_chunk)(x, whole, tail, (T)st->shift, &ties);
    st->sum += ties + sum;
}

#define XENT_CHUNK ((ptrdiff_t)(XENT_CHUNK_BYTES / sizeof(T)))

/* Log-sum-exp state of one row (start from xent_lse_init). */
static void F(row_lse)(const T *x, ptrdiff_t n, xent_lse_state *st)
{
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
        F(lse_chunk)(x + start, xent_chunk_len(n, start, XENT_CHUNK), st);
}

/*
 * Log-sum-exp states of up to XENT_LANES short rows (n <= XENT_SMALL_ROW entries) at once, one
 * row per vector lane: a row of 10 logits fills less than one vector, so across rows is the
 * way to vectorise. The rows (stride in elements) are copied transposed into a small buffer,
 * then max and exp-sum run over the entries with every lane busy. Same rules as row_lse:
 * shift -inf and sum 0 for an all -inf row, a +inf entry shifts by T_MAX, NaN spreads.
 */
static void F(rows_lse_small)(const T *x, ptrdiff_t stride, ptrdiff_t nrows, ptrdiff_t n,
                              xent_lse_state *st)
{
    T buf[XENT_SMALL_ROW][XENT_LANES], m[XENT_LANES], shift[XENT_LANES];
    double s[XENT_LANES];
    for (ptrdiff_t r = 0; r < XENT_LANES; r++)
        for (ptrdiff_t j = 0; j < n; j++) buf[j][r] = r < nrows ? x[r * stride + j] : 0;
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = -(T)INFINITY;
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) m[l] = buf[j][l] > m[l] ? buf[j][l] : m[l];
    }
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        shift[l] = m[l] > XENT_T_MAX ? XENT_T_MAX : m[l];
        shift[l] = m[l] == -(T)INFINITY ? 0 : shift[l];   /* exp(-inf - 0) = 0 */
        s[l] = 0;
    }
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) s[l] += (double)F(exp)(buf[j][l] - shift[l]);
    }
    for (ptrdiff_t r = 0; r < nrows; r++) {
        st[r].shift = m[r] == -(T)INFINITY ? -INFINITY : (double)shift[r];
        st[r].sum = s[r];
    }
}

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
 * out[j] = x[j] - logsumexp(x), rounded once from double. out may be x itself: the row is
 * read in full before it is written.
 */
static void F(row_log_softmax)(const T *x, ptrdiff_t n, T *out)
{
    xent_lse_state st = xent_lse_init();
    F(row_lse)(x, n, &st);
    double shift = st.shift, log_sum = log(st.sum);
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = (T)(((double)x[j] - shift) - log_sum);
}

/* out[j] = exp(x[j] - logsumexp(x)). out may be x itself. */
static void F(row_softmax)(const T *x, ptrdiff_t n, T *out)
{
    xent_lse_state st = xent_lse_init();
    F(row_lse)(x, n, &st);
    double shift = st.shift, log_sum = log(st.sum);
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = F(exp)((T)(((double)x[j] - shift) - log_sum));
}

/* ---- gradients of the cross-entropy ------------------------------------------------------ */

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

/* ---- information quantities of distributions --------------------------------------------- */

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

/* ---- evaluation: loss, rank and entropy of a row in one read ---------------------------- */

/*
 * Sum of e = exp(x[i] - shift) over the whole groups, and in *xlogit the sum of e (x[i] - shift)
 * (a term is 0 where e is 0, so -inf entries add nothing; NaN spreads). The same lanes and order as
 * sum_exp_chunk, with the entropy's sum alongside.
 */
static inline double F(sum_exp_xlogit_groups)(const T *x, ptrdiff_t n, T shift, double *xlogit)
{
    T s[XENT_LANES], b[XENT_LANES];
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) s[l] = b[l] = 0;
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
        }
    }
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
    if (cmax == -(T)INFINITY) {   /* all -inf (contributes 0) or NaN */
        if (F(has_nan)(x, n)) st->sum = st->xlogit = NAN;
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
        }
        st->shift = shift;
    }
    double b, b_tail = 0;
    double sum = F(sum_exp_xlogit_groups)(x, whole, (T)st->shift, &b);
    if (whole < n) sum += F(sum_exp_xlogit_groups)(tail, XENT_LANES, (T)st->shift, &b_tail);
    st->sum += sum;
    st->xlogit += b + b_tail;
}

/*
 * One read of a row: its log-sum-exp parts, the entropy's sum and the target's rank (start
 * from xent_eval_init). Online over chunks of XENT_CHUNK_BYTES, so any length works.
 */
static void F(row_evaluate)(const T *x, ptrdiff_t n, T target, xent_eval_state *st)
{
    for (ptrdiff_t start = 0; start < n; start += XENT_CHUNK)
        F(evaluate_chunk)(x + start, xent_chunk_len(n, start, XENT_CHUNK), target, st);
}

/* ---- elementwise: surprisal, binary entropy, binary cross-entropy ------------------------ */

/* Entries outside [0, 1] (NaN included) among x[0..n): the Python layer names the first. */
static inline ptrdiff_t F(count_outside_unit)(const T *x, ptrdiff_t n)
{
    ptrdiff_t bad = 0;
#pragma omp simd reduction(+ : bad)
    for (ptrdiff_t i = 0; i < n; i++) bad += !(x[i] >= 0 && x[i] <= 1);
    return bad;
}

/* out = -scale log p (scale = 1 / log(base)); returns the count of p outside [0, 1]. */
static ptrdiff_t F(self_information_array)(const T *p, ptrdiff_t n, double scale, T *out)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) out[i] = (T)(-scale * (double)F(log)(p[i]));
    return F(count_outside_unit)(p, n);
}

/* out = scale (-p log p - (1 - p) log(1 - p)), 0 log 0 = 0; returns the count outside [0, 1]. */
static ptrdiff_t F(binary_entropy_array)(const T *p, ptrdiff_t n, double scale, T *out)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) {
        double a = (double)p[i] * (double)F(log)(p[i]);
        double b = (1.0 - (double)p[i]) * (double)F(log1p)(-p[i]);
        a = p[i] == 0 ? 0.0 : a;
        b = p[i] == 1 ? 0.0 : b;
        out[i] = (T)(-scale * (a + b) + 0.0);   /* + 0.0: 0 log 0 gives +0, not -0 */
    }
    return F(count_outside_unit)(p, n);
}

/*
 * Binary cross-entropy of probabilities x against targets y with elementwise weights w, as
 * PyTorch: -w (y max(log x, -100) + (1 - y) max(log1p(-x), -100)). Writes loss (unless NULL)
 * and, unless grad is NULL, grad = g w (x - y) / max(x (1 - x), eps) with g = scale * gout.
 * eps is PyTorch's: 1e-12 rounded to float, 9.999999960041972e-13, for any input dtype.
 * Returns the sum of the losses; *bad counts x or y outside [0, 1]. grad may be x.
 */
static double F(row_bce)(const T *x, const T *y, const T *w, ptrdiff_t n, T *loss, T *grad,
                         double scale, const T *gout, ptrdiff_t *bad)
{
    double total = 0;
    *bad = F(count_outside_unit)(x, n) + F(count_outside_unit)(y, n);
#pragma omp simd reduction(+ : total)
    for (ptrdiff_t i = 0; i < n; i++) {
        T log_x = F(log)(x[i]), log_1mx = F(log1p)(-x[i]);
        log_x = log_x < -100 ? (T)-100 : log_x;   /* also maps -inf to -100 */
        log_1mx = log_1mx < -100 ? (T)-100 : log_1mx;
        double l = -(double)w[i] * ((double)y[i] * log_x + (1.0 - (double)y[i]) * log_1mx);
        total += l;
        if (loss) loss[i] = (T)l;
    }
    if (grad) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            double xi = (double)x[i], d = xi * (1.0 - xi);
            d = d < XENT_BCE_EPSILON ? XENT_BCE_EPSILON : d;
            grad[i] = (T)(scale * (double)gout[i] * (double)w[i] * (xi - (double)y[i]) / d);
        }
    }
    return total;
}

/*
 * Binary cross-entropy of logits x, stable at any |x|: with L = 1 + (pw - 1) y,
 * w ((1 - y) x + L (log1p(exp(-|x|)) + max(-x, 0))). Writes loss (unless NULL) and, unless
 * grad is NULL, grad = g w (L sigmoid(x) - pw y). Returns the sum; *bad counts y outside
 * [0, 1]. grad may be x.
 */
static double F(row_bce_logits)(const T *x, const T *y, const T *w, const T *pw, ptrdiff_t n,
                                T *loss, T *grad, double scale, const T *gout, ptrdiff_t *bad)
{
    double total = 0;
    *bad = F(count_outside_unit)(y, n);
#pragma omp simd reduction(+ : total)
    for (ptrdiff_t i = 0; i < n; i++) {
        T ax = x[i] < 0 ? -x[i] : x[i];
        T softplus = F(log1p)(F(exp)(-ax)) + (x[i] < 0 ? -x[i] : 0);   /* log(1 + e^-x) */
        double big_l = 1.0 + ((double)pw[i] - 1.0) * (double)y[i];
        double l = (double)w[i] * ((1.0 - (double)y[i]) * (double)x[i] + big_l * softplus);
        total += l;
        if (loss) loss[i] = (T)l;
    }
    if (grad) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            T ax = x[i] < 0 ? -x[i] : x[i];
            T e = F(exp)(-ax);
            T sig = x[i] >= 0 ? 1 / (1 + e) : e / (1 + e);
            double big_l = 1.0 + ((double)pw[i] - 1.0) * (double)y[i];
            grad[i] = (T)(scale * (double)gout[i] * (double)w[i] *
                          (big_l * (double)sig - (double)pw[i] * (double)y[i]));
        }
    }
    return total;
}

#define XENT_FILL(ret, name, S, params) tab->name##_##S = F(name);
static void F(fill_table)(xent_kernel_table *tab) { XENT_KERNELS(XENT_FILL, T, XENT_SFX) }
#undef XENT_FILL

#undef XENT_CHUNK
#undef XENT_LANES
#undef XENT_MANT_BITS
#undef XENT_EXP_BIAS
#undef XENT_ROUND_MAGIC
#undef XENT_LOG2E
#undef XENT_LN2_HI
#undef XENT_LN2_LO
#undef XENT_EXP_UNDER
#undef XENT_EXP_CLAMP
#undef XENT_EXP_OVER
#undef XENT_T_MAX
#undef XENT_T_MIN
#undef XENT_SUBNORMAL_SCALE
#undef XENT_SUBNORMAL_SCALE_EXP
#undef XENT_SQRT2
#undef T
#undef F
