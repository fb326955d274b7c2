/*
 * Exact sums of doubles: a small superaccumulator, so that a reduced loss is the exact sum of
 * the per-row values rounded once, whatever the blocks, threads or chunks it was added in.
 *
 * Every finite double is an integer multiple of 2^-1074 below 2^1024: a sum of them is held
 * exactly as signed 32-bit digits in int64 words, word i weighing 2^(32 i - 1074) (68 words
 * cover 2^-1074 .. 2^1102: every double, with room for carries). Adding a double adds its 53-bit mantissa,
 * shifted into place, to the two words it straddles (three at a word's edge); a word has 31
 * spare bits, so 2^30 additions go by before carries need propagating (xent_exact_add counts
 * them). Adding two accumulators is adding their words: exact and associative, so any
 * partition of the rows into blocks, threads or chunks gives the same accumulator. Inf and NaN
 * are kept apart, with IEEE's rules (inf + -inf = NaN).
 *
 * Cost: a handful of integer operations per value, against the ~10 logits' exps of the row
 * that produced it (measured in the report of the change: see git log).
 */
#ifndef XENT_EXACTSUM_H
#define XENT_EXACTSUM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define XENT_EXACT_WORDS 68
#define XENT_EXACT_CARRY_EVERY (1 << 30)

typedef struct {
    int64_t word[XENT_EXACT_WORDS];
    int64_t pending;   /* additions since the last carry propagation */
    int64_t pos_inf, neg_inf, nan;
} xent_exact_sum;

static inline void xent_exact_init(xent_exact_sum *acc) { memset(acc, 0, sizeof *acc); }

/* Bring every word but the top one into [0, 2^32): the value is unchanged. */
static inline void xent_exact_carry(xent_exact_sum *acc)
{
    for (int i = 0; i < XENT_EXACT_WORDS - 1; i++) {
        int64_t w = acc->word[i];
        int64_t carry = w >> 32;   /* arithmetic shift: floor(w / 2^32) */
        acc->word[i] = w - carry * ((int64_t)1 << 32);
        acc->word[i + 1] += carry;
    }
    acc->pending = 0;
}

static inline void xent_exact_add(xent_exact_sum *acc, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int biased = (int)((bits >> 52) & 0x7ff);
    uint64_t mant = bits & (((uint64_t)1 << 52) - 1);
    if (biased == 0x7ff) {   /* inf or NaN */
        if (mant) acc->nan++;
        else if (bits >> 63) acc->neg_inf++;
        else acc->pos_inf++;
        return;
    }
    if (biased) mant |= (uint64_t)1 << 52;   /* normal: the implicit bit */
    else biased = 1;                          /* subnormal: same scale as the smallest normal */
    if (!mant) return;
    /* v = +-mant * 2^(biased - 1075) = +-mant * 2^(pos) units of 2^-1074 */
    int pos = biased - 1;
    int word = pos >> 5, shift = pos & 31;
    /* mant << shift has at most 53 + 31 = 84 bits: split it into 32-bit digits */
    uint64_t low = (mant << shift) & 0xffffffffu;
    uint64_t mid = (shift ? mant >> (32 - shift) : mant >> 32) & 0xffffffffu;
    uint64_t high = shift ? mant >> (64 - shift) : 0;
    int64_t sign = (bits >> 63) ? -1 : 1;
    acc->word[word] += sign * (int64_t)low;
    acc->word[word + 1] += sign * (int64_t)mid;
    acc->word[word + 2] += sign * (int64_t)high;
    if (++acc->pending >= XENT_EXACT_CARRY_EVERY) xent_exact_carry(acc);
}

/* acc += part, exactly (part unchanged). */
static inline void xent_exact_merge(xent_exact_sum *acc, const xent_exact_sum *part)
{
    if (acc->pending + part->pending >= XENT_EXACT_CARRY_EVERY) xent_exact_carry(acc);
    for (int i = 0; i < XENT_EXACT_WORDS; i++) acc->word[i] += part->word[i];
    acc->pending += part->pending;
    if (acc->pending >= XENT_EXACT_CARRY_EVERY) xent_exact_carry(acc);
    acc->pos_inf += part->pos_inf;
    acc->neg_inf += part->neg_inf;
    acc->nan += part->nan;
}

/*
 * The fast way in, for many values: a batch accumulator beside the exact one.
 *
 * Each value v with |v| < 2^20 is cut, by floating-point operations that are exact, into parts
 * on four fixed grids: a_k = v rounded to a multiple of g_k (g = 2^-20, 2^-60, 2^-100, 2^-140),
 * by the classic (v + 1.5 2^52 g_k) - 1.5 2^52 g_k, then v -= a_k. When nothing is left after
 * the fourth grid (every value from about 2^-88 to 2^20 with at most 53 bits), the parts are
 * integers times g_k below 2^40 in magnitude, so up to 2^12 of them add up in a double lane
 * without rounding: the lanes hold exact sums, whatever the order. Values that do not split
 * (tiny, huge, inf, NaN) go to xent_exact_add one by one. The lanes are moved into the exact
 * accumulator every XENT_EXACT_BATCH_FLUSH values and by xent_exact_batch_flush.
 *
 * The result is the same exact sum as xent_exact_add's, so the rounded total keeps its bits;
 * the cost is a dozen vector operations for XENT_EXACT_LANES values instead of a dozen scalar
 * ones and three read-modify-writes for each.
 */
#define XENT_EXACT_LANES 16
#define XENT_EXACT_GRIDS 4
#define XENT_EXACT_BATCH_FLUSH 4096   /* 2^12 parts below 2^40 grid units: below 2^52 */

typedef struct {
    double part[XENT_EXACT_GRIDS][XENT_EXACT_LANES];
    int64_t count;   /* values in the lanes since the last flush (per lane at most this) */
} xent_exact_batch;

static inline void xent_exact_batch_init(xent_exact_batch *b) { memset(b, 0, sizeof *b); }

/* Move the lanes' exact sums into acc and clear them. */
static inline void xent_exact_batch_flush(xent_exact_sum *acc, xent_exact_batch *b)
{
    for (int k = 0; k < XENT_EXACT_GRIDS; k++)
        for (int l = 0; l < XENT_EXACT_LANES; l++) {
            if (b->part[k][l] != 0) xent_exact_add(acc, b->part[k][l]);
            b->part[k][l] = 0;
        }
    b->count = 0;
}

/* acc (through b) += v[0] + ... + v[n - 1], exactly; n <= XENT_EXACT_LANES.
 * Always inlined: this header is included before an instruction set file sets its target, so
 * a call would run a copy compiled for the baseline (scalar: 45 instructions a value, measured
 * with valgrind --tool=callgrind); inlined into a kernel, the loop is vectorised for the
 * kernel's instruction set. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void xent_exact_batch_add(xent_exact_sum *acc, xent_exact_batch *b,
                                        const double *v, int n)
{
    /* 1.5 2^52 g_k: adding and subtracting it rounds |v| < 2^51 g_k to a multiple of g_k */
    const double magic0 = 0x1.8p32, magic1 = 0x1.8p-8, magic2 = 0x1.8p-48, magic3 = 0x1.8p-88;
    int any_slow = 0;
    if (b->count + n > XENT_EXACT_BATCH_FLUSH) xent_exact_batch_flush(acc, b);
    b->count += n;
#pragma omp simd reduction(| : any_slow)
    for (int l = 0; l < n; l++) {
        /* volatile-free: without -ffast-math the compiler keeps (v + M) - M as written */
        double x = v[l];
        double a0 = (x + magic0) - magic0, r = x - a0;
        double a1 = (r + magic1) - magic1;
        r = r - a1;
        double a2 = (r + magic2) - magic2;
        r = r - a2;
        double a3 = (r + magic3) - magic3;
        r = r - a3;
        int fast = (x < 0x1p20) & (x > -0x1p20) & (r == 0);   /* NaN: both compares false */
        b->part[0][l] += fast ? a0 : 0.0;
        b->part[1][l] += fast ? a1 : 0.0;
        b->part[2][l] += fast ? a2 : 0.0;
        b->part[3][l] += fast ? a3 : 0.0;
        any_slow |= !fast;
    }
    /* rare (a value below about 2^-88 or from 2^20 up, inf, NaN): the test again, one by
     * one, rather than a per-value flag stored in the loop above (which cost it a fifth) */
    if (any_slow)
        for (int l = 0; l < n; l++) {
            double x = v[l], r = x;
            r -= (r + magic0) - magic0;
            r -= (r + magic1) - magic1;
            r -= (r + magic2) - magic2;
            r -= (r + magic3) - magic3;
            if (!((x < 0x1p20) & (x > -0x1p20) & (r == 0))) xent_exact_add(acc, x);
        }
}

/* NaN, +inf or -inf if the sum has one of them (then *special is 1), else 0. */
static inline double xent_exact_special(const xent_exact_sum *acc, int *special)
{
    *special = 1;
    if (acc->nan || (acc->pos_inf && acc->neg_inf)) return NAN;
    if (acc->pos_inf) return INFINITY;
    if (acc->neg_inf) return -INFINITY;
    *special = 0;
    return 0;
}

/*
 * The sum's magnitude as 32-bit digits (digit[i] weighs 2^(32 i - 1074); the top one may be
 * larger) and its sign (1 if negative). acc is left carried (same value).
 */
static inline int xent_exact_digits(xent_exact_sum *acc, uint64_t digit[XENT_EXACT_WORDS])
{
    xent_exact_carry(acc);
    /* sign: the top word's; the magnitude's digits, negated in two's complement if < 0 */
    int negative = acc->word[XENT_EXACT_WORDS - 1] < 0;
    if (negative) {
        /* -(value): negate the multi-word number (each word in [0, 2^32), top signed) */
        int64_t borrow = 0;
        for (int i = 0; i < XENT_EXACT_WORDS; i++) {
            int64_t w = -acc->word[i] - borrow;
            borrow = 0;
            if (i < XENT_EXACT_WORDS - 1 && w < 0) {
                w += (int64_t)1 << 32;
                borrow = 1;
            }
            digit[i] = (uint64_t)w;
        }
    } else {
        for (int i = 0; i < XENT_EXACT_WORDS; i++) digit[i] = (uint64_t)acc->word[i];
    }
    return negative;
}

/*
 * The exact sum rounded once to the nearest double (ties to even); +-inf beyond the largest
 * finite double. acc is left carried (same value).
 */
static inline double xent_exact_round(xent_exact_sum *acc)
{
    int special;
    double s = xent_exact_special(acc, &special);
    if (special) return s;
    uint64_t digit[XENT_EXACT_WORDS];
    int negative = xent_exact_digits(acc, digit);
    int top = XENT_EXACT_WORDS - 1;
    while (top >= 0 && digit[top] == 0) top--;
    if (top < 0) return 0.0;
    /* the top three digits (>= 65 significant bits) as an integer, and a sticky bit for any
     * nonzero digit below: rounding the 96-bit integer with the sticky bit in its lowest
     * place rounds as the whole number would */
    unsigned __int128 head = 0;
    int lowest = top - 2 < 0 ? 0 : top - 2;
    for (int i = top; i >= lowest; i--) head = (head << 32) | digit[i];
    int sticky = 0;
    for (int i = lowest - 1; i >= 0; i--) sticky |= digit[i] != 0;
    /* the top digit is below 2^32 too once carried, so head has at most 97 bits; a sum in
     * the subnormal range may be rounded twice here (by the conversion and by ldexp) */
    head = (head << 1) | (unsigned)sticky;
    double r = ldexp((double)head, 32 * lowest - 1074 - 1);
    return negative ? -r : r;
}

/*
 * The exact sum as a few doubles whose exact sum it is: its carried words, each a 32-bit digit
 * times a power of two, so each is one double without rounding. A block's parts summed
 * exactly with other blocks' parts (in any order) give the same once-rounded total as one
 * accumulator over all the rows: how a block's sum leaves its process (xent.dask) without a
 * second pass over its values. Writes at most XENT_EXACT_WORDS doubles to out (the nonzero
 * words, lowest first) and returns their count; a sum that is not finite, or a word beyond the
 * double range (a sum near or past 2^1024), is its once-rounded total alone (+-inf or NaN,
 * or the finite sum that rounds to it). acc is left carried (same value).
 */
static inline int xent_exact_parts(xent_exact_sum *acc, double *out)
{
    int special;
    double s = xent_exact_special(acc, &special);
    if (special) {
        out[0] = s;
        return 1;
    }
    uint64_t digit[XENT_EXACT_WORDS];
    int negative = xent_exact_digits(acc, digit);
    int count = 0;
    for (int i = 0; i < XENT_EXACT_WORDS; i++) {
        if (!digit[i]) continue;
        /* a digit below 2^32 times a power of two: exact, unless past the double range */
        double part = ldexp((double)digit[i], 32 * i - 1074);
        if (isinf(part) || digit[i] >> 53) {
            out[0] = xent_exact_round(acc);
            return 1;
        }
        out[count++] = negative ? -part : part;
    }
    return count;
}

#endif /* XENT_EXACTSUM_H */
