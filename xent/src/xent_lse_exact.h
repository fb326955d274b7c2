/*
 * The log-sum-exp of a row in double-double arithmetic (about 2^-100 relative in each term
 * and in their sum), for the rows where the double kernels' result loses its relative digits:
 * a negative max m and log(sum) of nearly the same size cancel in m + log(sum) (log P(A) of a
 * likely event A from log-probabilities, a shifted distribution), so the double sum's ulp or
 * two (relative) is an ulp or two of |m|, 1.2e4 ulp of a result of 1.3e-5. Here the result is
 * off by about 2^-100 |m|: within an ulp wherever |result| >= 2^-45 |m|. About a hundred
 * times slower than row_lse an entry, so the driver (xent/_multiclass.py) calls it only for
 * such rows.
 */

#ifndef XENT_LSE_DD_DEFINED   /* the double-double helpers, once per instruction-set file */
#define XENT_LSE_DD_DEFINED

/* hi + lo, |lo| <= half an ulp of hi */
typedef struct {
    double hi, lo;
} xent_dd;

static inline xent_dd xent_dd_fast_two_sum(double a, double b)   /* |a| >= |b| or a = 0 */
{
    double s = a + b;
    xent_dd r = {s, b - (s - a)};
    return r;
}

static inline xent_dd xent_dd_two_sum(double a, double b)
{
    double s = a + b, bb = s - a;
    xent_dd r = {s, (a - (s - bb)) + (b - bb)};
    return r;
}

static inline xent_dd xent_dd_add(xent_dd a, xent_dd b)
{
    xent_dd s = xent_dd_two_sum(a.hi, b.hi), t = xent_dd_two_sum(a.lo, b.lo);
    s = xent_dd_fast_two_sum(s.hi, s.lo + t.hi);
    return xent_dd_fast_two_sum(s.hi, s.lo + t.lo);
}

static inline xent_dd xent_dd_mul(xent_dd a, xent_dd b)
{
    double p = a.hi * b.hi, e = fma(a.hi, b.hi, -p);   /* p + e = a.hi b.hi exactly */
    return xent_dd_fast_two_sum(p, e + (a.hi * b.lo + a.lo * b.hi));
}

/* 1/j! for j = 3 .. 10, each as hi + lo */
static const double xent_dd_inv_fact[8][2] = {
    {0x1.5555555555555p-3, 0x1.5555555555555p-57},  {0x1.5555555555555p-5, 0x1.5555555555555p-59},
    {0x1.1111111111111p-7, 0x1.1111111111111p-63},  {0x1.6c16c16c16c17p-10, -0x1.f49f49f49f49fp-65},
    {0x1.a01a01a01a01ap-13, 0x1.a01a01a01a01ap-73}, {0x1.a01a01a01a01ap-16, 0x1.a01a01a01a01ap-76},
    {0x1.71de3a556c734p-19, -0x1.c154f8ddc6c00p-73}, {0x1.27e4fb7789f5cp-22, 0x1.cbbc05b4fa99ap-76},
};

/*
 * exp(dh + dl) for |dh| <= 90, |dl| <= an ulp of dh, as a double-double. dh + dl = k ln2 + r
 * with ln2 in three parts (the first of 32 bits, so k ln2_1 and dh - k ln2_1 are exact;
 * 3e-44 left out), |r| <= 0.35; expm1(r / 256) by its series to the 10th power (the next
 * term below 2^-106 of it), then eight doublings expm1(2y) = expm1(y) (expm1(y) + 2), which
 * keep a small result's relative digits, and 2^k (1 + expm1(r)).
 */
static inline xent_dd xent_dd_exp(double dh, double dl)
{
    const double ln2_1 = 0x1.62e42ff000000p-1, ln2_2 = -0x1.718432a1b0e26p-35,
                 ln2_3 = -0x1.9ff0342542fc3p-90;
    double k = nearbyint(dh * 0x1.71547652b82fep+0);
    double a = dh - k * ln2_1;
    double p = k * ln2_2, pe = fma(k, ln2_2, -p);
    xent_dd r = xent_dd_two_sum(a, -p);
    r = xent_dd_fast_two_sum(r.hi, r.lo + ((dl - pe) - k * ln2_3));
    xent_dd s = {r.hi * 0x1p-8, r.lo * 0x1p-8};
    xent_dd q = {xent_dd_inv_fact[7][0], xent_dd_inv_fact[7][1]};
    for (int j = 6; j >= 0; j--) {
        xent_dd c = {xent_dd_inv_fact[j][0], xent_dd_inv_fact[j][1]};
        q = xent_dd_add(xent_dd_mul(q, s), c);
    }
    xent_dd half = {0.5, 0.0};
    q = xent_dd_add(xent_dd_mul(q, s), half);          /* sum_{j>=2} s^(j-2) / j! */
    xent_dd e = xent_dd_add(s, xent_dd_mul(xent_dd_mul(s, s), q));   /* expm1(s) */
    for (int i = 0; i < 8; i++) {
        xent_dd twice = {2.0 * e.hi, 2.0 * e.lo};
        e = xent_dd_add(xent_dd_mul(e, e), twice);
    }
    xent_dd one = {1.0, 0.0}, v = xent_dd_add(one, e);
    xent_dd out = {ldexp(v.hi, (int)k), ldexp(v.lo, (int)k)};
    return out;
}
#endif

/*
 * logsumexp of a row in double-double: m = max, S = sum exp(x - m) with each x - m exact
 * (TwoSum) and terms below e^-80 of the max left out (below 2^-115 of S >= 1), then
 * log(S) = y + log1p(S exp(-y) - 1) with y = log(S.hi) rounded, and m + y, exact where they
 * cancel (Sterbenz), plus that correction, rounded once. A row holding NaN, +inf, or nothing
 * above -inf gives the ordinary kernel's rules (NaN, +inf, -inf).
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
    xent_dd s = {0.0, 0.0};
    for (ptrdiff_t j = 0; j < n; j++) {
        double v = (double)x[j], d = v - m;
        if (d < -80.0) continue;   /* also -inf */
        double bd = d - v, dl = (v - (d - bd)) + (-m - bd);
        s = xent_dd_add(s, xent_dd_exp(d, dl));
    }
    double y = log(s.hi);
    xent_dd p = xent_dd_mul(s, xent_dd_exp(-y, 0.0));   /* 1 + delta, |delta| ~ 2^-52 */
    double delta = (p.hi - 1.0) + p.lo;
    double fix = delta - 0.5 * delta * delta;
    xent_dd t = xent_dd_two_sum(m, y);
    return t.hi + (t.lo + fix);
}
