"""The weighted log-sum-exp ``log|sum_i b_i exp(a_i)|`` of rows, to the last bit or two.

Design
------
Forming ``a_i + log(b_i)`` per entry (the obvious reduction to the unweighted kernel) rounds
every term before the sum, and a difference of the positive and negative weights' sums
multiplies those roundings by its condition number: tens of ulp, or every digit where the two
sums nearly cancel. Here each term is carried in double-double (about 84 correct bits) and
the sum is exact to far beyond that, so the only roundings left that matter are the final
one and, where ``m + log(D)`` below cancels, a relative 2**-80 or so of ``m``:

1. ``m``, the row's largest ``a_i`` among the weights that are not 0; ``d_i = a_i - m`` with
   its rounding error kept (TwoSum), so ``d_i`` is exact as a pair.
2. ``exp(d_i)`` in double-double: ``d = (k + j/256) log 2 + r`` with ``log 2 / 256`` in three
   parts (Cody-Waite), ``2**(j/256)`` from a double-double table, ``exp(r)`` for
   ``|r| <= log(2)/512`` as ``1 + r + r**2/2`` error-free plus a cubic tail in double (its
   rounding is about 2**-84 of the term).
3. ``b_i = f_i 2**e_i`` (frexp) and each term ``f_i 2**(j/256) exp(r)`` as a double-double
   scaled by ``2**(k_i + e_i - K)``, ``K`` the row's largest ``k_i + e_i``: nothing
   overflows whatever the weights, and the row's largest term is about 1.
4. The sum ``D`` of the terms' high and low parts: three passes of Rump-Ogita-Oishi's
   extraction (each pass splits every value at a power of two chosen by the row's length
   and largest value, so the parts above it sum exactly in any order), which leaves about
   100 bits of ``D`` however much it cancels.
5. ``log(D)`` in double-double: numpy's ``log`` (or ``log1p`` of ``D - 1``, exact as a pair,
   when ``D`` is within [0.5, 2]) and one Newton step with the double-double ``exp`` above.
6. The result ``m + K log 2 + log(D)`` summed with TwoSum and rounded once.

Every step is a whole-array numpy operation over the rows, taken in blocks of rows that fit
in the cache: about 5 times SciPy's time (4096 x 1000 float64: 0.30 s, SciPy 0.06 s).
"""

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

#: 2**(j/256) for j = 0..255 as double-double: a term's 2**(j/256) factor to about 2**-106.
_TABLE_BITS = 8
_TABLE_SIZE = 1 << _TABLE_BITS


def _exp2_table():
    with localcontext() as ctx:
        ctx.prec = 60
        exact = [Decimal(2) ** (Decimal(j) / _TABLE_SIZE) for j in range(_TABLE_SIZE)]
        hi = np.array([float(v) for v in exact])
        lo = np.array([float(v - Decimal(h)) for v, h in zip(exact, hi.tolist())])
    return hi, lo


def _ln2_parts(divisor):
    """log(2) / divisor as three doubles, the first two of 32 significant bits: n times
    either is exact for |n| < 2**21, which covers every n = rint(x 256 / log 2) with
    |x| <= _D_FLOOR and every row's power of two K."""
    with localcontext() as ctx:
        ctx.prec = 60
        rest = Fraction(Decimal(2).ln()) / divisor
    parts = []
    for _ in range(2):
        exponent = rest.numerator.bit_length() - rest.denominator.bit_length()
        unit = Fraction(2) ** (exponent - 31)
        part = Fraction(round(rest / unit)) * unit
        parts.append(float(part))
        rest -= part
    parts.append(float(rest))
    return tuple(parts)


_EXP2_HI, _EXP2_LO = _exp2_table()
_C1, _C2, _C3 = _ln2_parts(_TABLE_SIZE)
#: log(2) in three parts: the result's K log 2.
_LN2 = _ln2_parts(1)
_INV_C = _TABLE_SIZE / np.log(2.0)
#: Terms with d = a - m below -_D_FLOOR are left out: e**-2000 times the largest weight,
#: 2**1024, is below 2**-1800, far under any nonzero row's largest term (b e**0 >= 2**-1074).
_D_FLOOR = 2000.0
_SPLITTER = 134217729.0  # 2**27 + 1, Dekker's split
#: 1/n! for n = 3..9: exp(r)'s tail r**3 (1/6 + r/24 + ...); r**10/10! is below 2**-115.
_TAIL = [float(Fraction(1, f)) for f in (6, 24, 120, 720, 5040, 40320, 362880)]
#: Entries a block of rows takes (a few arrays of it fit in L2).
_BLOCK = 1 << 15


def _two_sum(x, y):
    """s + e == x + y exactly, s = fl(x + y) (Knuth's TwoSum: no order between x and y)."""
    s = x + y
    t = s - x
    return s, (x - (s - t)) + (y - t)


def _split(x):
    """x == hi + lo with hi of 26 bits, lo of 27 (Dekker); x below 2**996 in magnitude."""
    c = _SPLITTER * x
    hi = c - (c - x)
    return hi, x - hi


def _two_prod(x, y):
    """p + e == x * y exactly, p = fl(x * y) (Dekker's TwoProduct, without an FMA)."""
    p = x * y
    xh, xl = _split(x)
    yh, yl = _split(y)
    return p, ((xh * yh - p) + xh * yl + xl * yh) + xl * yl


def _exp_dd(x_hi, x_lo):
    """exp(x_hi + x_lo) as (mantissa_hi, mantissa_lo, power of two k): the mantissa in about
    [1, 2) to about 2**-84 relative, for |x_hi| <= _D_FLOOR; x_lo at most an ulp of x_hi."""
    n = np.rint(x_hi * _INV_C)
    # x - n log(2)/256: the first two products exact, the first difference exact (Sterbenz)
    r_hi, r_lo = _two_sum(x_hi - n * _C1, -n * _C2)
    r_lo = r_lo + (x_lo - n * _C3)
    r_hi, r_lo = _two_sum(r_hi, r_lo)
    # exp(r) = 1 + r + r**2/2 + r**3 (1/6 + ...): the first three error-free, the tail
    # (below 4e-10) in double, its rounding about 2**-84 of the whole
    sq_hi, sq_lo = _two_prod(r_hi, r_hi)
    tail = _TAIL[-1]
    for c in _TAIL[-2::-1]:
        tail = tail * r_hi + c
    tail = tail * (sq_hi * r_hi)
    s, e1 = _two_sum(1.0, r_hi)
    s, e2 = _two_sum(s, 0.5 * sq_hi)
    s, e3 = _two_sum(s, tail)
    # r_lo's share: r_lo exp(r_hi), to first order in r_hi
    lo = e1 + e2 + e3 + 0.5 * sq_lo + r_lo * (1.0 + r_hi + 0.5 * sq_hi)
    j = n.astype(np.int64)
    k, j = j >> _TABLE_BITS, j & (_TABLE_SIZE - 1)
    t_hi, t_lo = _EXP2_HI[j], _EXP2_LO[j]
    p_hi, p_lo = _two_prod(t_hi, s)
    p_lo = p_lo + (t_hi * lo + t_lo * s)
    return p_hi, p_lo, k


def _extract_sum(parts, n_values):
    """sum of the rows of the arrays in ``parts`` (each (R, C)), as (hi, lo): about 100 bits
    of it however much it cancels. Rump, Ogita and Oishi's ExtractVector, three passes: the
    values split at sigma = 2**(ceil(log2(n_values + 2)) + ceil(log2(max |value|))), the
    parts above it summing exactly in any order; the remainders go to the next pass."""
    headroom = int(np.ceil(np.log2(n_values + 2)))
    sums = []
    for _ in range(3):
        top = np.max([np.max(np.abs(p), axis=-1) for p in parts], axis=0)
        _, exponent = np.frexp(top)
        sigma = np.ldexp(np.where(top > 0, 1.0, 0.0), exponent + headroom)[:, None]
        total = 0.0
        rest = []
        for p in parts:
            q = (sigma + p) - sigma
            total = total + q.sum(axis=-1)  # exact: see above
            rest.append(p - q)
        parts = rest
        sums.append(total)
    leftover = sum(p.sum(axis=-1) for p in parts)  # below 2**-90 or so of the largest value
    hi, lo = _two_sum(sums[0], sums[1])
    hi, lo2 = _two_sum(hi, sums[2])
    return _two_sum(hi, lo + lo2 + leftover)


def _log_dd(d_hi, d_lo):
    """log(d_hi + d_lo) for a positive double-double, as (hi, lo): numpy's log (log1p of
    d - 1 where d is within [0.5, 2], so a result near 0 keeps its digits) and one Newton
    step with _exp_dd, which leaves about 2**-80 of |log d|, or of |log d|'s ulp near 0."""
    near_one = (d_hi >= 0.5) & (d_hi <= 2.0)
    u_hi, u_lo = _two_sum(d_hi, -1.0)  # d - 1, exact as a pair
    u_lo = u_lo + d_lo
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = np.where(near_one, np.log1p(u_hi + u_lo), np.log(d_hi))
    guess = np.where(np.isfinite(guess), guess, 0.0)
    e_hi, e_lo, k = _exp_dd(guess, np.zeros_like(guess))
    e_hi, e_lo = np.ldexp(e_hi, k), np.ldexp(e_lo, k)
    # the residual d - e (near 1: (d - 1) - (e - 1), both exact pairs), then / e
    f_hi, f_lo = _two_sum(e_hi, -1.0)
    f_lo = f_lo + e_lo
    res_near = (u_hi - f_hi) + (u_lo - f_lo)
    res_far = (d_hi - e_hi) + (d_lo - e_lo)  # d and e within a factor 2: exact first part
    step = np.where(near_one, res_near, res_far) / e_hi
    return guess, step


def weighted_rows(a, b):
    """log|sum b exp(a)| and its sign over the last axis of the float64 arrays a and b (same
    shape (R, C), C > 0), for rows of finite weights whose largest a among the weights that
    are not 0 is finite; other rows (a NaN, an infinity, no such a) give (nan, nan), the
    caller's to fill in. Returns (result, sign) as
    float64 arrays (R,); a sum of exactly 0 gives (-inf, 0)."""
    rows, cols = a.shape
    result = np.full(rows, np.nan)
    sign = np.full(rows, np.nan)
    step = max(1, _BLOCK // max(cols, 1))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        result[start:stop], sign[start:stop] = _weighted_block(a[start:stop], b[start:stop])
    return result, sign


def _weighted_block(a, b):
    with np.errstate(invalid="ignore", over="ignore"):
        live = (b != 0) & (a > -np.inf)
        m = np.max(np.where(live, a, -np.inf), axis=-1)
        # NaN, an infinite weight, or +inf with a weight not 0: the caller's rows
        special = np.isnan(b) | np.isinf(b) | ((b != 0) & ~(a < np.inf))
        finite_m = np.isfinite(m) & ~np.any(special, axis=-1)
        m0 = np.where(finite_m, m, 0.0)[:, None]
        # a - m exactly as a pair; dead entries (b == 0, a == -inf, far below m) give 0
        d_hi, d_lo = _two_sum(np.where(live, a, m0), -m0)
        live = live & (d_hi >= -_D_FLOOR) & np.isfinite(d_hi)
        d_hi = np.where(live, d_hi, 0.0)
        d_lo = np.where(live, d_lo, 0.0)
    p_hi, p_lo, k = _exp_dd(d_hi, d_lo)
    f, e = np.frexp(np.where(live, b, 0.0))
    t_hi, t_lo = _two_prod(f, p_hi)
    t_lo = t_lo + f * p_lo
    power = np.where(live, k + e, np.iinfo(np.int32).min)
    top = np.max(power, axis=-1)
    top = np.where(top == np.iinfo(np.int32).min, 0, top)
    shift = np.maximum(power - top[:, None], -2000).astype(np.int32)
    t_hi, t_lo = np.ldexp(t_hi, shift), np.ldexp(t_lo, shift)
    s_hi, s_lo = _extract_sum([t_hi, t_lo], 2 * a.shape[-1])
    sign = np.sign(s_hi)
    zero = s_hi == 0
    s_hi, s_lo = np.where(zero, 1.0, np.abs(s_hi)), np.where(s_hi < 0, -s_lo, s_lo)
    l_hi, l_lo = _log_dd(s_hi, s_lo)
    # m + K log 2 + log D: K log(2)'s first two parts exact, everything summed with TwoSum,
    # so m and log D may cancel and leave about 2**-80 of |m| (not m's ulp) as the error
    top = top.astype(np.float64)
    hi, lo = _two_sum(m0[:, 0], top * _LN2[0])
    hi, lo2 = _two_sum(hi, top * _LN2[1])
    hi, lo3 = _two_sum(hi, l_hi)
    result = hi + (lo + lo2 + lo3 + l_lo + top * _LN2[2])
    result = np.where(zero, -np.inf, result)
    result = np.where(finite_m, result, np.nan)
    sign = np.where(finite_m, sign, np.nan)
    return result, sign
