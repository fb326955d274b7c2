"""The generalised Jensen-Shannon divergence and the total variation distance, and their
gradients, against mpmath at 200 bits on every kernel variant: rows of a student close to its
teacher (logits 1e-3 to 1e-9 apart, relative), where both divergences are differences of
nearly equal probabilities, and rows far apart.

The textbook forms (log M as a log-add-exp of log P and log Q, each with the rounding of its
own log-sum-exp; |P - Q| of two rounded exps) had no correct digit of a float64 JSD of rows
1e-9 apart, and were 1e3 (JSD) and 1e-2 (TV) off, relative, in float32 at 1e-3.
"""

import functools

import mpmath
import numpy as np
import pytest

import xent

F32, F64 = np.float32, np.float64
#: Value bounds: float64 in ulps of the exact value (a few ulp for each term and the rounding
#: of sums of up to 300 terms: 9 ulp measured at C = 5000), float32 relative.
VALUE_BOUND = {F64: 16.0, F32: 2e-6}
#: Gradient bounds, as the largest error over the largest exact entry. The far rows' JSD
#: gradient keeps that of the form Q_j (g_j - sum_k Q_k g_k), which cancels where Q is nearly
#: all at one class (1e-14 and 9e-6 measured).
GRAD_BOUND = {("close", F64): 2e-14, ("close", F32): 3e-6, ("far", F64): 2e-13, ("far", F32): 3e-5}


@functools.cache
def _exact(kind, beta, student, teacher, temperature):
    """(divergence, gradient with respect to the student's logits) of one row, at 200 bits,
    for reduction="none" without the T**2 factor. student, teacher: tuples of floats."""
    with mpmath.workprec(200):
        s = [mpmath.mpf(x) / temperature for x in student]
        t = [mpmath.mpf(x) / temperature for x in teacher]
        lse_s = mpmath.log(mpmath.fsum(mpmath.exp(y) for y in s))
        lse_t = mpmath.log(mpmath.fsum(mpmath.exp(y) for y in t))
        q = [mpmath.exp(y - lse_s) for y in s]
        p = [mpmath.exp(y - lse_t) for y in t]
        if kind == "js":
            b = mpmath.mpf(beta)
            m = [b * pi + (1 - b) * qi for pi, qi in zip(p, q)]
            value = mpmath.fsum(
                (b * pi * mpmath.log(pi / mi) if pi > 0 else 0)
                + ((1 - b) * qi * mpmath.log(qi / mi) if qi > 0 else 0)
                for pi, qi, mi in zip(p, q, m)
            )
            g = [(1 - b) * mpmath.log(qi / mi) if qi > 0 else 0 for qi, mi in zip(q, m)]
        else:
            value = mpmath.fsum(abs(pi - qi) for pi, qi in zip(p, q)) / 2
            g = [mpmath.sign(qi - pi) / 2 for pi, qi in zip(p, q)]
        qg = mpmath.fsum(qi * gi for qi, gi in zip(q, g))
        grad = [qi * (gi - qg) / temperature for qi, gi in zip(q, g)]
        return value, np.array([float(x) for x in grad])


def _rows(dtype, closeness, c):
    """A teacher row and a student row: close (the teacher's logits times 1 + closeness
    noise) or far (independent). Not covered: close distributions whose logits differ by a
    large constant (s = t - 3 + tiny), where t - s is rounded before the constant cancels
    (float32 rows of two classes so drawn by chance were 2e-5 off, relative, in JSD, TV and
    KL alike)."""
    seed = 1 if closeness == "far" else int(-np.log10(closeness))
    rng = np.random.default_rng([c, int(np.dtype(dtype).itemsize), seed])
    teacher = (rng.standard_normal(c) * 3).astype(dtype)
    if closeness == "far":
        student = (rng.standard_normal(c) * 3).astype(dtype)
    else:
        student = (teacher * (1 + closeness * rng.standard_normal(c))).astype(dtype)
    return student, teacher


def _check(kind, beta, student, teacher, temperature, dtype, regime):
    options = dict(temperature=temperature, reduction="none", scale_by_temperature_squared=False)
    if kind == "js":
        options["beta"] = beta
        loss_fn, grad_fn = xent.js_divergence_logits, xent.js_divergence_logits_with_grad
    else:
        loss_fn, grad_fn = xent.tv_distance_logits, xent.tv_distance_logits_with_grad
    value, want = _exact(
        kind, beta, tuple(map(float, student)), tuple(map(float, teacher)), temperature
    )
    losses = [loss_fn(student[None], teacher[None], **options)[0]]
    loss, grad = grad_fn(student[None], teacher[None], **options)
    losses.append(loss[0])
    for got in losses:
        diff = abs(mpmath.mpf(float(got)) - value)
        if dtype == F64:
            err = float(diff / mpmath.mpf(float(np.spacing(abs(float(value))))))
        else:
            err = float(diff / abs(value))
        assert err <= VALUE_BOUND[dtype], (float(got), mpmath.nstr(value, 17), err)
    # a gradient that is 0 (where Q is all where Q > P, TV's is) is held to 0 absolutely
    scale = max(np.abs(want).max(), 1e-30)
    err = np.abs(grad[0].astype(np.float64) - want).max() / scale
    assert err <= GRAD_BOUND[regime, dtype] or scale == 1e-30 and err <= 1e15, err


CASES = [("js", 0.5), ("js", 0.2), ("tv", None)]


@pytest.mark.parametrize("kind,beta", CASES)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("closeness", [1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize("c", [2, 7, 300])
def test_close_rows_against_mpmath(isa, kind, beta, dtype, closeness, c):
    """A student 1e-3 to 1e-9 (relative) from its teacher, at two temperatures: the
    divergence (second order in the logits' differences for JSD) and its gradient keep their
    relative digits."""
    student, teacher = _rows(dtype, closeness, c)
    if np.array_equal(student, teacher):  # float32 rows 1e-9 apart: the same rows
        for fn in (xent.js_divergence_logits, xent.tv_distance_logits):
            assert fn(student[None], teacher[None], reduction="none")[0] == 0
        return
    for temperature in (1.0, 2.5):
        _check(kind, beta, student, teacher, temperature, dtype, "close")


@pytest.mark.parametrize("kind,beta", CASES)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("c", [2, 7, 300])
def test_far_rows_against_mpmath(isa, kind, beta, dtype, c):
    """Independent student and teacher rows."""
    student, teacher = _rows(dtype, "far", c)
    for temperature in (1.0, 2.5):
        _check(kind, beta, student, teacher, temperature, dtype, "far")


@pytest.mark.parametrize("kind,beta", CASES)
def test_special_rows_against_mpmath(isa, kind, beta):
    """A class one row excludes (-inf) and one the other excludes; two classes with P and Q
    near 1 at one of them (log P - log Q as the difference of the two logs had 1e4 ulp of the
    TV wrong)."""
    rows = [
        ([0.5, -np.inf, 1.0, 2.0, -1.0], [0.5, 0.3, 1.0, 2.0, -np.inf]),
        ([-5.03908836, 5.85146911], [-5.03908374, 5.85147481]),
    ]
    for student, teacher in rows:
        student, teacher = np.array(student), np.array(teacher)
        _check(kind, beta, student, teacher, 1.0, F64, "close")
