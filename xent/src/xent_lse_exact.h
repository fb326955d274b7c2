/*
 * Log-sum-exps in double-double arithmetic (each term to about 2^-97 relative), for the rows
 * where the double kernels' result loses its relative digits, and for logsumexp with weights:
 *
 * - row_lse_dd: a negative max m and log(sum) of nearly the same size cancel in m + log(sum)
 *   (log P(A) of a likely event A from log-probabilities, a shifted distribution), so the
 *   double sum's ulp or two (relative) is an ulp or two of |m|, 5.7e5 ulp of such results
 *   measured. Here the result is off by about 2^-95 |m|: within an ulp wherever |result| >=
 *   2^-42 |m|.
 * - row_lse_weighted_dd: log|sum b exp(x)| and its sign, the terms' sum exact where positive
 *   and negative weights cancel (xent_exactsum.h).
 *
 * The exps in vector lanes (branch-free, a 64-entry table): about twice row_lse's time an
 * entry; the drivers (xent/_multiclass.py) call row_lse_dd only for rows that need it.
 */

/* No contraction of a * b + c into one FMA here: a product rounded on its own is what the
 * TwoSums after it take apart (p = a b, then s = p + t fused would hold the exact product
 * while the error term assumes p: a log of 2^-50 relative, measured, for 2^-100 designed) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

#ifndef XENT_LSE_DD_DEFINED   /* the double-double helpers, once per instruction-set file */
#define XENT_LSE_DD_DEFINED

/* hi + lo, |lo| <= half an ulp of hi */
typedef struct {
    double hi, lo;
} xent_dd;

XENT_LANES_INLINE xent_dd xent_dd_of(double hi, double lo)
{
    xent_dd r = {hi, lo};
    return r;
}

XENT_LANES_INLINE xent_dd xent_dd_fast_two_sum(double a, double b)   /* |a| >= |b| or a = 0 */
{
    double s = a + b;
    xent_dd r = {s, b - (s - a)};
    return r;
}

XENT_LANES_INLINE xent_dd xent_dd_two_sum(double a, double b)
{
    double s = a + b, bb = s - a;
    xent_dd r = {s, (a - (s - bb)) + (b - bb)};
    return r;
}

XENT_LANES_INLINE xent_dd xent_dd_add(xent_dd a, xent_dd b)
{
    xent_dd s = xent_dd_two_sum(a.hi, b.hi), t = xent_dd_two_sum(a.lo, b.lo);
    s = xent_dd_fast_two_sum(s.hi, s.lo + t.hi);
    return xent_dd_fast_two_sum(s.hi, s.lo + t.lo);
}

XENT_LANES_INLINE xent_dd xent_dd_mul(xent_dd a, xent_dd b)
{
    double p = a.hi * b.hi, e = fma(a.hi, b.hi, -p);   /* p + e = a.hi b.hi exactly */
    return xent_dd_fast_two_sum(p, e + (a.hi * b.lo + a.lo * b.hi));
}

/* 2^(j/64), j = 0 .. 63, each as hi + lo (to 2^-106) */
static const double xent_dd_exp2_64[64][2] = {
    {0x1.0000000000000p+0, 0x0.0p+0}, {0x1.02c9a3e778061p+0, -0x1.19083535b085dp-56},
    {0x1.059b0d3158574p+0, 0x1.d73e2a475b465p-55}, {0x1.0874518759bc8p+0, 0x1.186be4bb284ffp-57},
    {0x1.0b5586cf9890fp+0, 0x1.8a62e4adc610bp-54}, {0x1.0e3ec32d3d1a2p+0, 0x1.03a1727c57b53p-59},
    {0x1.11301d0125b51p+0, -0x1.6c51039449b3ap-54}, {0x1.1429aaea92de0p+0, -0x1.32fbf9af1369ep-54},
    {0x1.172b83c7d517bp+0, -0x1.19041b9d78a76p-55}, {0x1.1a35beb6fcb75p+0, 0x1.e5b4c7b4968e4p-55},
    {0x1.1d4873168b9aap+0, 0x1.e016e00a2643cp-54}, {0x1.2063b88628cd6p+0, 0x1.dc775814a8495p-55},
    {0x1.2387a6e756238p+0, 0x1.9b07eb6c70573p-54}, {0x1.26b4565e27cddp+0, 0x1.2bd339940e9d9p-55},
    {0x1.29e9df51fdee1p+0, 0x1.612e8afad1255p-55}, {0x1.2d285a6e4030bp+0, 0x1.0024754db41d5p-54},
    {0x1.306fe0a31b715p+0, 0x1.6f46ad23182e4p-55}, {0x1.33c08b26416ffp+0, 0x1.32721843659a6p-54},
    {0x1.371a7373aa9cbp+0, -0x1.63aeabf42eae2p-54}, {0x1.3a7db34e59ff7p+0, -0x1.5e436d661f5e3p-56},
    {0x1.3dea64c123422p+0, 0x1.ada0911f09ebcp-55}, {0x1.4160a21f72e2ap+0, -0x1.ef3691c309278p-58},
    {0x1.44e086061892dp+0, 0x1.89b7a04ef80d0p-59}, {0x1.486a2b5c13cd0p+0, 0x1.3c1a3b69062f0p-56},
    {0x1.4bfdad5362a27p+0, 0x1.d4397afec42e2p-56}, {0x1.4f9b2769d2ca7p+0, -0x1.4b309d25957e3p-54},
    {0x1.5342b569d4f82p+0, -0x1.07abe1db13cadp-55}, {0x1.56f4736b527dap+0, 0x1.9bb2c011d93adp-54},
    {0x1.5ab07dd485429p+0, 0x1.6324c054647adp-54}, {0x1.5e76f15ad2148p+0, 0x1.ba6f93080e65ep-54},
    {0x1.6247eb03a5585p+0, -0x1.383c17e40b497p-54}, {0x1.6623882552225p+0, -0x1.bb60987591c34p-54},
    {0x1.6a09e667f3bcdp+0, -0x1.bdd3413b26456p-54}, {0x1.6dfb23c651a2fp+0, -0x1.bbe3a683c88abp-57},
    {0x1.71f75e8ec5f74p+0, -0x1.16e4786887a99p-55}, {0x1.75feb564267c9p+0, -0x1.0245957316dd3p-54},
    {0x1.7a11473eb0187p+0, -0x1.41577ee04992fp-55}, {0x1.7e2f336cf4e62p+0, 0x1.05d02ba15797ep-56},
    {0x1.82589994cce13p+0, -0x1.d4c1dd41532d8p-54}, {0x1.868d99b4492edp+0, -0x1.fc6f89bd4f6bap-54},
    {0x1.8ace5422aa0dbp+0, 0x1.6e9f156864b27p-54}, {0x1.8f1ae99157736p+0, 0x1.5cc13a2e3976cp-55},
    {0x1.93737b0cdc5e5p+0, -0x1.75fc781b57ebcp-57}, {0x1.97d829fde4e50p+0, -0x1.d185b7c1b85d1p-54},
    {0x1.9c49182a3f090p+0, 0x1.c7c46b071f2bep-56}, {0x1.a0c667b5de565p+0, -0x1.359495d1cd533p-54},
    {0x1.a5503b23e255dp+0, -0x1.d2f6edb8d41e1p-54}, {0x1.a9e6b5579fdbfp+0, 0x1.0fac90ef7fd31p-54},
    {0x1.ae89f995ad3adp+0, 0x1.7a1cd345dcc81p-54}, {0x1.b33a2b84f15fbp+0, -0x1.2805e3084d708p-57},
    {0x1.b7f76f2fb5e47p+0, -0x1.5584f7e54ac3bp-56}, {0x1.bcc1e904bc1d2p+0, 0x1.23dd07a2d9e84p-55},
    {0x1.c199bdd85529cp+0, 0x1.11065895048ddp-55}, {0x1.c67f12e57d14bp+0, 0x1.2884dff483cadp-54},
    {0x1.cb720dcef9069p+0, 0x1.503cbd1e949dbp-56}, {0x1.d072d4a07897cp+0, -0x1.cbc3743797a9cp-54},
    {0x1.d5818dcfba487p+0, 0x1.2ed02d75b3707p-55}, {0x1.da9e603db3285p+0, 0x1.c2300696db532p-54},
    {0x1.dfc97337b9b5fp+0, -0x1.1a5cd4f184b5cp-54}, {0x1.e502ee78b3ff6p+0, 0x1.39e8980a9cc8fp-55},
    {0x1.ea4afa2a490dap+0, -0x1.e9c23179c2893p-54}, {0x1.efa1bee615a27p+0, 0x1.dc7f486a4b6b0p-54},
    {0x1.f50765b6e4540p+0, 0x1.9d3e12dd8a18bp-54}, {0x1.fa7c1819e90d8p+0, 0x1.74853f3a5931ep-55}
};

/*
 * expm1(r) for |r| <= ln2/128 (a double-double), to about 2^-104 relative: its series, the
 * terms to r^4 in double-double and the rest to r^10 (below 4e-14 of it) in double.
 */
XENT_LANES_INLINE xent_dd xent_dd_expm1_small(xent_dd r)
{
    double x = r.hi;
    /* 1/5! + x/6! + ... + x^5/10!, times x (r^11/11! is below 2^-108 of expm1(r)) */
    double tail = 0x1.27e4fb7789f5cp-22;
    tail = tail * x + 0x1.71de3a556c734p-19;
    tail = tail * x + 0x1.a01a01a01a01ap-16;
    tail = tail * x + 0x1.a01a01a01a01ap-13;
    tail = tail * x + 0x1.6c16c16c16c17p-10;
    tail = tail * x + 0x1.1111111111111p-7;
    tail *= x;
    xent_dd q = xent_dd_add(xent_dd_of(0x1.5555555555555p-5, 0x1.5555555555555p-59),
                            xent_dd_of(tail, 0.0));
    q = xent_dd_add(xent_dd_mul(q, r), xent_dd_of(0x1.5555555555555p-3, 0x1.5555555555555p-57));
    q = xent_dd_add(xent_dd_mul(q, r), xent_dd_of(0.5, 0.0));
    q = xent_dd_add(xent_dd_mul(q, r), xent_dd_of(1.0, 0.0));
    return xent_dd_mul(q, r);
}

/*
 * exp(dh + dl) = 2^*k v, v a double-double in [1, 2) up to rounding, to about 2^-97 relative;
 * |dh| <= 22000 (n below, |n| < 2^21, keeps n C1 exact), |dl| <= an ulp of dh.
 * dh + dl = n ln2/64 + r, ln2/64 in three parts (the first of 32 bits: n C1 and dh - n C1
 * exact), |r| <= ln2/128; v = 2^(j/64) (1 + expm1(r)), n = 64 k + j.
 */
XENT_LANES_INLINE xent_dd xent_dd_exp_parts(double dh, double dl, int64_t *k)
{
    const double c1 = 0x1.62e42ff000000p-7, c2 = -0x1.718432a1b0e26p-41,
                 c3 = -0x1.9ff0342542fc3p-96, shifter = 0x1.8p52;
    /* rint by the shifter (|dh 64/ln2| < 2^51): no libm call, so a loop of it vectorises */
    double n = (dh * 0x1.71547652b82fep+6 + shifter) - shifter;
    double a = dh - n * c1;
    double p = n * c2, pe = fma(n, c2, -p);
    xent_dd r = xent_dd_two_sum(a, -p);
    r = xent_dd_fast_two_sum(r.hi, r.lo + ((dl - pe) - n * c3));
    xent_dd e = xent_dd_expm1_small(r);
    int64_t ni = (int64_t)n, j = ni & 63;
    *k = (ni - j) / 64;
    xent_dd t = xent_dd_of(xent_dd_exp2_64[j][0], xent_dd_exp2_64[j][1]);
    return xent_dd_add(t, xent_dd_mul(t, e));
}

/* 2^k for a normal power of two (-1022 <= k <= 1023), from its bits */
XENT_LANES_INLINE double xent_dd_pow2(int64_t k)
{
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static inline xent_dd xent_dd_exp(double dh, double dl)
{
    int64_t k;
    xent_dd v = xent_dd_exp_parts(dh, dl, &k);
    /* k to int: ldexp takes an int */
    return xent_dd_of(ldexp(v.hi, k), ldexp(v.lo, k));
}

/*
 * log(v) for a double-double v in [sqrt(1/2), sqrt(2)): y = log1p(v - 1) rounded, v - 1
 * exact as a pair (Sterbenz), then log(v) = y + log1p(delta), delta = v exp(-y) - 1 of about
 * 2^-52, log1p(delta) = delta - delta^2 / 2 to far below 2^-100 of y. Near 1 (|y| below
 * ln2/128) delta = ((v - 1) - expm1(y)) / exp(y), from expm1 in double-double: a log near 0
 * keeps its relative digits (a sum of 1 + 1e-20 has the log 1e-20). Returns y, *fix the rest.
 */
static inline double xent_dd_log(xent_dd v, double *fix)
{
    xent_dd u = xent_dd_two_sum(v.hi - 1.0, v.lo);
    double y = log1p(u.hi);
    double delta;
    if (fabs(y) < 0x1.62e42fefa39efp-8) {
        xent_dd em = xent_dd_expm1_small(xent_dd_of(y, 0.0));
        xent_dd num = xent_dd_add(u, xent_dd_of(-em.hi, -em.lo));
        delta = (num.hi + num.lo) / (1.0 + em.hi);
    } else {
        xent_dd p = xent_dd_mul(v, xent_dd_exp(-y, 0.0));
        delta = (p.hi - 1.0) + p.lo;   /* p.hi - 1 exact (Sterbenz) */
    }
    *fix = delta - 0.5 * delta * delta;
    return y;
}

/*
 * m + log(2^scale s) for a positive double-double s, rounded once: s = 2^e v with v in
 * [sqrt(1/2), sqrt(2)) (so that a sum near 1 has e = 0 and its log keeps its digits), and
 * m + (scale + e) ln2 + log(v) summed with ln2 in three parts and TwoSums: m and the rest may
 * cancel, leaving about 2^-97 of the larger as the error.
 */
static inline double xent_dd_log_result(double m, xent_dd s, int scale)
{
    const double l1 = 0x1.62e42ff000000p-1, l2 = -0x1.718432a1b0e26p-35,
                 l3 = -0x1.9ff0342542fc3p-90;
    int e;
    double f = frexp(s.hi, &e);
    if (f < 0x1.6a09e667f3bcdp-1) {
        f *= 2.0;
        e -= 1;
    }
    double fix, y = xent_dd_log(xent_dd_of(f, ldexp(s.lo, -e)), &fix);
    double c = (double)(e + scale);   /* below 2^21: c l1 exact */
    xent_dd a = xent_dd_two_sum(m, c * l1);
    xent_dd b = xent_dd_two_sum(a.hi, y);
    double p = c * l2, pe = fma(c, l2, -p);
    xent_dd t = xent_dd_two_sum(b.hi, p);
    return t.hi + (((a.lo + b.lo) + t.lo) + ((pe + c * l3) + fix));
}
/* w = f 2^e with |f| in [0.5, 1) for a finite w other than 0 (frexp's), from the bits, so that
 * a loop of it vectorises: a subnormal w is scaled by 2^64 first */
XENT_LANES_INLINE int64_t xent_dd_frexp(double w, double *f)
{
    int tiny = fabs(w) < DBL_MIN;
    double ws = w * (tiny ? 0x1p64 : 1.0);
    uint64_t bits;
    memcpy(&bits, &ws, sizeof bits);
    int64_t e = (int64_t)((bits >> 52) & 0x7ff) - 1022 - (tiny ? 64 : 0);
    bits = (bits & 0x800fffffffffffffULL) | ((uint64_t)1022 << 52);
    memcpy(f, &bits, sizeof bits);
    return e;
}

/* Entries a block of the row functions below holds in its buffers (on the stack) */
#define XENT_DD_BLOCK 256
/* Independent double-double sums a block's terms go into, one per vector lane */
#define XENT_DD_LANES 8

/* The terms hi[j] + lo[j] (j < padded, a multiple of XENT_DD_LANES) into the lanes' sums
 * acc_hi + acc_lo, lane j % XENT_DD_LANES, and |hi[j]| into size[lane] */
static inline void xent_dd_lanes_add(double *acc_hi, double *acc_lo, double *size,
                                     const double *hi, const double *lo, ptrdiff_t padded)
{
    for (ptrdiff_t g = 0; g < padded; g += XENT_DD_LANES) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_DD_LANES; l++) {
            xent_dd s = xent_dd_add(xent_dd_of(acc_hi[l], acc_lo[l]),
                                    xent_dd_of(hi[g + l], lo[g + l]));
            acc_hi[l] = s.hi;
            acc_lo[l] = s.lo;
            size[l] += fabs(hi[g + l]);
        }
    }
}

/* The lanes' sums added up, and (unless NULL) their sizes into *total */
static inline xent_dd xent_dd_lanes_sum(const double *acc_hi, const double *acc_lo,
                                        const double *size, double *total)
{
    xent_dd s = xent_dd_of(acc_hi[0], acc_lo[0]);
    double t = size[0];
    for (int l = 1; l < XENT_DD_LANES; l++) {
        s = xent_dd_add(s, xent_dd_of(acc_hi[l], acc_lo[l]));
        t += size[l];
    }
    if (total) *total = t;
    return s;
}
#endif

/*
 * logsumexp of a row in double-double: m = max, S = sum exp(x - m) with each x - m exact
 * (TwoSum), summed in double-double, terms below e^-80 of the max left out (below 2^-115 of
 * S >= 1), then m + log(S) (xent_dd_log_result), where m and log(S) cancel exactly
 * (Sterbenz), rounded once. A row holding NaN, +inf, or nothing above -inf gives the ordinary
 * kernel's rules (NaN, +inf, -inf).
 */
static double F(row_lse_dd)(const T *x, ptrdiff_t n)
{
    double m = -INFINITY;
    for (ptrdiff_t j = 0; j < n; j++) {
        double v = (double)x[j];
        if (v != v) return NAN;
        m = v > m ? v : m;
    }
    if (m == INFINITY || m == -INFINITY) return m;
    double acc_hi[XENT_DD_LANES] = {0}, acc_lo[XENT_DD_LANES] = {0}, size[XENT_DD_LANES] = {0};
    double dh[XENT_DD_BLOCK], dl[XENT_DD_BLOCK], live[XENT_DD_BLOCK];
    for (ptrdiff_t start = 0; start < n; start += XENT_DD_BLOCK) {
        ptrdiff_t len = n - start < XENT_DD_BLOCK ? n - start : XENT_DD_BLOCK;
        ptrdiff_t padded = (len + XENT_DD_LANES - 1) / XENT_DD_LANES * XENT_DD_LANES;
#pragma omp simd
        for (ptrdiff_t j = 0; j < padded; j++) {
            double v = j < len ? (double)x[start + j] : -INFINITY, d = v - m;
            double bd = d - v, e = (v - (d - bd)) + (-m - bd);
            int on = d >= -80.0;   /* also false for -inf: the term is 0 */
            dh[j] = on ? d : 0.0;
            dl[j] = on ? e : 0.0;
            live[j] = on ? 1.0 : 0.0;
        }
        /* the terms, in vector lanes (no select in this loop: gcc would not vectorise it) */
#pragma omp simd
        for (ptrdiff_t j = 0; j < padded; j++) {
            int64_t k;
            xent_dd t = xent_dd_exp_parts(dh[j], dl[j], &k);
            double scale = xent_dd_pow2(k) * live[j];   /* k >= -117 */
            dh[j] = t.hi * scale;
            dl[j] = t.lo * scale;
        }
        xent_dd_lanes_add(acc_hi, acc_lo, size, dh, dl, padded);
    }
    xent_dd s = xent_dd_lanes_sum(acc_hi, acc_lo, size, NULL);
    return xent_dd_log_result(m, s, 0);
}

/*
 * The terms of row_lse_weighted_dd's block at start (up to XENT_DD_BLOCK entries): b exp(x - m)
 * as f 2^(e + k - K) v (b = f 2^e, exp(x - m) = 2^k v, K = top), each as th + tl. Entries of
 * weight 0, or more than 2400 below m, and the padding give 0. Returns the padded length.
 */
static ptrdiff_t F(weighted_terms)(const T *x, const double *b, ptrdiff_t n, ptrdiff_t start,
                                   double m, int64_t top, double *th, double *tl)
{
    double dh[XENT_DD_BLOCK], dl[XENT_DD_BLOCK], fw[XENT_DD_BLOCK], ew[XENT_DD_BLOCK];
    ptrdiff_t len = n - start < XENT_DD_BLOCK ? n - start : XENT_DD_BLOCK;
    ptrdiff_t padded = (len + XENT_DD_LANES - 1) / XENT_DD_LANES * XENT_DD_LANES;
#pragma omp simd
    for (ptrdiff_t j = 0; j < padded; j++) {
        double v = j < len ? (double)x[start + j] : m, w = j < len ? b[start + j] : 0.0;
        double d = v - m, bd = d - v, e = (v - (d - bd)) + (-m - bd);
        int on = w != 0 && d >= -2400.0;
        double f;
        int64_t ex = xent_dd_frexp(on ? w : 1.0, &f);
        dh[j] = on ? d : 0.0;
        dl[j] = on ? e : 0.0;
        fw[j] = on ? f : 0.0;
        ew[j] = (double)(ex - top);
    }
    /* in vector lanes; the power of two in two normal factors, so that a term below 2^-1022
     * rounds (to a subnormal, or 0 below 2^-2000) without a select */
#pragma omp simd
    for (ptrdiff_t j = 0; j < padded; j++) {
        int64_t k;
        xent_dd t = xent_dd_exp_parts(dh[j], dl[j], &k);
        int64_t sc = (int64_t)ew[j] + k;
        int64_t sc1 = sc > -1000 ? sc : -1000, rest = sc - sc1 > -1000 ? sc - sc1 : -1000;
        double scale = xent_dd_pow2(sc1) * xent_dd_pow2(rest);
        double f = fw[j], p = f * t.hi, pe = fma(f, t.hi, -p);
        th[j] = p * scale;
        tl[j] = (pe + f * t.lo) * scale;
    }
    return padded;
}

/*
 * log|sum_j b[j] exp(x[j])| of a row with weights, its sign in *sign (+1, -1; 0 with -inf
 * for a sum of exactly 0). Each term b exp(x - m), m the largest x whose weight is not 0, is
 * f 2^(e + k) v with b = f 2^e (xent_dd_frexp) and exp(x - m) = 2^k v (double-double), scaled by
 * 2^-K, K the row's largest e + k, so that nothing overflows or underflows that matters
 * (weighted_terms); the terms are summed in double-double, or exactly where weights of both
 * signs cancel, and the log taken as row_lse_dd's. Rows the caller must settle by SciPy's
 * rules give NaN with sign NaN: a NaN value with a weight not 0, a weight NaN or infinite,
 * +inf with a weight not 0, or no x above -inf with a weight not 0 (an empty sum).
 */
static double F(row_lse_weighted_dd)(const T *x, const double *b, ptrdiff_t n, double *sign)
{
    double m = -INFINITY;
    int negative = 0;
    *sign = NAN;
    for (ptrdiff_t j = 0; j < n; j++) {
        double v = (double)x[j], w = b[j];
        if (w != w || w - w != 0) return NAN;   /* NaN or infinite weight */
        if (w == 0) continue;
        if (v != v || v == INFINITY) return NAN;
        m = v > m ? v : m;
        negative |= w < 0;
    }
    if (m == -INFINITY) return NAN;
    /* K: the largest e + k, b = f 2^e (f in [0.5, 1)) and exp(x - m) = 2^k v, k as
     * xent_dd_exp_parts takes it */
    int64_t top = INT64_MIN;
#pragma omp simd reduction(max : top)
    for (ptrdiff_t j = 0; j < n; j++) {
        double d = (double)x[j] - m, w = b[j], f;
        int on = w != 0 && d >= -2400.0;   /* e^-2400 of any weight: far below */
        double r = ((on ? d : 0.0) * 0x1.71547652b82fep+6 + 0x1.8p52) - 0x1.8p52;
        int64_t ni = (int64_t)r, k = (ni - (ni & 63)) / 64;
        int64_t e = xent_dd_frexp(on ? w : 1.0, &f) + k;
        top = on && e > top ? e : top;
    }
    /* the terms' sum in double-double lanes beside the sum of their sizes (the lanes' error,
     * below 2^-105 of that size per addition, is then within 2^-58 of the sum for rows of up
     * to a million); where weights of both signs cancel below 2^-30 of that size, the row
     * again, its terms summed exactly (xent_exactsum.h) */
    double acc_hi[XENT_DD_LANES] = {0}, acc_lo[XENT_DD_LANES] = {0}, size[XENT_DD_LANES] = {0};
    double th[XENT_DD_BLOCK], tl[XENT_DD_BLOCK];
    for (ptrdiff_t start = 0; start < n; start += XENT_DD_BLOCK) {
        ptrdiff_t padded = F(weighted_terms)(x, b, n, start, m, top, th, tl);
        xent_dd_lanes_add(acc_hi, acc_lo, size, th, tl, padded);
    }
    double total;
    xent_dd s = xent_dd_lanes_sum(acc_hi, acc_lo, size, &total);
    if (negative && !(fabs(s.hi) >= 0x1p-30 * total)) {
        xent_exact_sum exact;
        xent_exact_init(&exact);
        for (ptrdiff_t start = 0; start < n; start += XENT_DD_BLOCK) {
            ptrdiff_t padded = F(weighted_terms)(x, b, n, start, m, top, th, tl);
            for (ptrdiff_t j = 0; j < padded; j++) {
                xent_exact_add(&exact, th[j]);
                xent_exact_add(&exact, tl[j]);
            }
        }
        s.hi = xent_exact_round(&exact);
        xent_exact_add(&exact, -s.hi);
        s.lo = xent_exact_round(&exact);
    }
    if (s.hi == 0) {
        *sign = 0;
        return -INFINITY;
    }
    *sign = s.hi > 0 ? 1.0 : -1.0;
    return xent_dd_log_result(m, xent_dd_of(fabs(s.hi), s.hi > 0 ? s.lo : -s.lo), (int)top);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
