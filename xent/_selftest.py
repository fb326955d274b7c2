"""``xent selftest``: every public function against :mod:`xent.reference`, on every kernel
variant this CPU supports, at a few shapes and dtypes.

The first thing to run on a new machine, or after a build with other compiler flags: a
kernel variant that computes wrong numbers shows up here as a row marked FAIL and a non-zero
exit status. Functions are looked up on :mod:`xent` when called, so that what runs is what a
user's ``xent.softmax`` would run.
"""

import math
import sys

import numpy as np

from . import _dispatch, info, reference
from ._check import TOLERANCES

#: Kernel variants, best first; each that this CPU and build support is tested.
ISAS = ("avx512", "avx2", "baseline")
#: Logits shapes (rows, classes): one row of a few classes, a block's worth, a long row
#: that spans several of the kernels' blocks.
SHAPES = ((1, 3), (33, 257), (4, 40000))
#: The dtypes tested; float16 only where the function takes it (see :data:`CHECKS`).
DTYPES = ("float32", "float64", "float16")


def _xent():
    import xent

    return xent


def _logits(rng, shape, dtype):
    return (rng.standard_normal(shape) * 3).astype(dtype)


def _labels(rng, shape, ignore=False):
    rows, classes = shape
    t = rng.integers(0, classes, rows)
    if ignore and rows > 2:
        t[::3] = -100
    return t


def _probs(rng, shape, dtype):
    p = rng.random(shape) + 0.01
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


def _unit(rng, shape, dtype):
    return rng.uniform(0.01, 0.99, shape).astype(dtype)


def _as64(x):
    return np.asarray(x, dtype=np.float64)


# Each check: (rng, shape, dtype) -> list of (xent's result, the reference's result).


def _ce(**options):
    def check(rng, shape, dtype):
        x, t = _logits(rng, shape, dtype), _labels(rng, shape, ignore=True)
        if options.get("weight") is True:
            options_now = dict(options, weight=rng.random(shape[1]) + 0.5)
        else:
            options_now = options
        return [
            (
                _xent().cross_entropy(x, t, **options_now),
                reference.cross_entropy(_as64(x), t, **options_now),
            )
        ]

    return check


def _ce_with_grad(rng, shape, dtype):
    x, t = _logits(rng, shape, dtype), _labels(rng, shape, ignore=True)
    loss, grad = _xent().cross_entropy_with_grad(x, t, label_smoothing=0.1)
    return [
        (loss, reference.cross_entropy(_as64(x), t, label_smoothing=0.1)),
        (grad, reference.cross_entropy_grad(_as64(x), t, label_smoothing=0.1)),
    ]


def _nll(rng, shape, dtype):
    logp = reference.log_softmax(_logits(rng, shape, "float64")).astype(dtype)
    t = _labels(rng, shape, ignore=True)
    return [
        (
            _xent().nll_loss(logp, t, reduction="none"),
            reference.nll_loss(_as64(logp), t, reduction="none"),
        )
    ]


def _rowwise(name):
    def check(rng, shape, dtype):
        x = _logits(rng, shape, dtype)
        return [(getattr(_xent(), name)(x), getattr(reference, name)(_as64(x)))]

    return check


def _binary(name, inputs, with_grad):
    def check(rng, shape, dtype):
        x = inputs(rng, shape, dtype)
        y = rng.random(shape).astype(dtype)
        fn = getattr(_xent(), name + ("_with_grad" if with_grad else ""))
        expected = getattr(reference, name)(_as64(x), _as64(y), reduction="sum")
        if not with_grad:
            return [(fn(x, y, reduction="sum"), expected)]
        loss, grad = fn(x, y, reduction="sum")
        return [
            (loss, expected),
            (grad, getattr(reference, name + "_grad")(_as64(x), _as64(y), reduction="sum")),
        ]

    return check


def _info(name, reference_name=None, inputs=_probs, two=False):
    def check(rng, shape, dtype):
        args = [inputs(rng, shape, dtype)] + ([_probs(rng, shape, dtype)] if two else [])
        expected = getattr(reference, reference_name or name)(*map(_as64, args))
        return [(getattr(info, name)(*args), expected)]

    return check


def _perplexity(rng, shape, dtype):
    x, t = _logits(rng, shape, dtype), _labels(rng, shape)
    return [(info.perplexity(x, t), reference.perplexity(_as64(x), t))]


def _evaluate(rng, shape, dtype):
    x, t = _logits(rng, shape, dtype), _labels(rng, shape, ignore=True)
    got = _xent().evaluate(x, t, topk=(1, 2)).as_dict()
    expected = reference.evaluate(_as64(x), t, topk=(1, 2))
    return [(got[key], expected[key]) for key in expected]


def _linear_inputs(rng, shape, dtype):
    rows, vocab = shape
    hidden = rng.standard_normal((rows, 16)).astype(dtype)
    weight = (rng.standard_normal((vocab, 16)) / 2).astype(dtype)
    return hidden, weight, rng.integers(0, vocab, rows)


def _linear(rng, shape, dtype):
    h, w, t = _linear_inputs(rng, shape, dtype)
    return [
        (
            _xent().linear_cross_entropy(h, w, t, reduction="none"),
            reference.linear_cross_entropy(_as64(h), _as64(w), t, reduction="none"),
        )
    ]


def _linear_with_grad(rng, shape, dtype):
    h, w, t = _linear_inputs(rng, shape, dtype)
    loss, grad_h, grad_w = _xent().linear_cross_entropy_with_grad(h, w, t)
    expected_h, expected_w = reference.linear_cross_entropy_grad(_as64(h), _as64(w), t)
    return [
        (loss, reference.linear_cross_entropy(_as64(h), _as64(w), t)),
        (grad_h, expected_h),
        (grad_w, expected_w),
    ]


_ALL = DTYPES
_FLOATS = ("float32", "float64")
#: (function as a user names it, check, dtypes it takes).
CHECKS = [
    ("cross_entropy", _ce(), _ALL),
    ("cross_entropy reduction=none", _ce(reduction="none"), _ALL),
    ("cross_entropy weight=", _ce(weight=True), _ALL),
    ("cross_entropy label_smoothing=", _ce(label_smoothing=0.2), _ALL),
    ("cross_entropy_with_grad", _ce_with_grad, _ALL),
    ("nll_loss", _nll, _ALL),
    ("logsumexp", _rowwise("logsumexp"), _ALL),
    ("log_softmax", _rowwise("log_softmax"), _ALL),
    ("softmax", _rowwise("softmax"), _ALL),
    ("binary_cross_entropy", _binary("binary_cross_entropy", _unit, False), _FLOATS),
    ("binary_cross_entropy_with_grad", _binary("binary_cross_entropy", _unit, True), _FLOATS),
    (
        "binary_cross_entropy_with_logits",
        _binary("binary_cross_entropy_with_logits", _logits, False),
        _FLOATS,
    ),
    (
        "binary_cross_entropy_with_logits_with_grad",
        _binary("binary_cross_entropy_with_logits", _logits, True),
        _FLOATS,
    ),
    ("info.entropy", _info("entropy"), _FLOATS),
    ("info.cross_entropy", _info("cross_entropy", "cross_entropy_dist", two=True), _FLOATS),
    ("info.kl_divergence", _info("kl_divergence", two=True), _FLOATS),
    ("info.self_information", _info("self_information"), _FLOATS),
    ("info.binary_entropy", _info("binary_entropy", inputs=_unit), _FLOATS),
    ("info.entropy_from_logits", _info("entropy_from_logits", inputs=_logits), _FLOATS),
    ("info.perplexity", _perplexity, _FLOATS),
    ("evaluate", _evaluate, _ALL),
    ("linear_cross_entropy", _linear, _FLOATS),
    ("linear_cross_entropy_with_grad", _linear_with_grad, _FLOATS),
]


def worst_error(pairs, dtype):
    """Worst relative error of xent's results against the reference's, and the tolerance.

    The error of one value is ``|got - expected| / (|expected| + atol / rtol)``: at most
    ``rtol`` exactly when ``|got - expected| <= atol + rtol * |expected|``, the test of
    ``check=True``. Where both are NaN (or the same infinity) the error is 0; where one is,
    infinite.
    """
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    worst = 0.0
    for got, expected in pairs:
        got, expected = _as64(got), _as64(expected)
        if got.shape != expected.shape:
            return math.inf, rtol
        same = (got == expected) | (np.isnan(got) & np.isnan(expected))
        with np.errstate(invalid="ignore"):
            err = np.abs(got - expected) / (np.abs(expected) + atol / rtol)
        err = np.where(same, 0.0, np.where(np.isnan(err), np.inf, err))
        if err.size:
            worst = max(worst, float(err.max()))
    return worst, rtol


def supported_isas():
    """The kernel variants of :data:`ISAS` this CPU and build can run."""
    return [isa for isa in ISAS if _dispatch.isa_supported(isa)]


def run_checks(isas=None, seed=0):
    """Run every check on every kernel variant; the variant in use is restored after.

    Returns
    -------
    list of tuple
        ``(function, isa, dtype, worst relative error, tolerance, ok, note)``, one per
        function, variant and dtype (the worst over the shapes).
    """
    previous = _dispatch.current_isa()
    rows = []
    try:
        for isa in isas or supported_isas():
            _dispatch.set_isa(isa)
            for name, check, dtypes in CHECKS:
                for dtype in dtypes:
                    rng = np.random.default_rng(seed)
                    worst, tolerance, note = 0.0, TOLERANCES[np.dtype(dtype)][0], ""
                    for shape in SHAPES:
                        try:
                            error, tolerance = worst_error(check(rng, shape, dtype), dtype)
                        except Exception as exc:  # a crash is a failure to report, not to hide
                            error, note = math.inf, f"{type(exc).__name__}: {exc}"
                        worst = max(worst, error)
                        if note:
                            break
                    rows.append((name, isa, dtype, worst, tolerance, worst <= tolerance, note))
    finally:
        _dispatch.set_isa(previous)
    return rows


def selftest(args=None, file=None):
    """``xent selftest``: print the table; return 0 if every row agrees, else 1."""
    file = file or sys.stdout
    isas = supported_isas()
    print(
        f"xent selftest: {len(CHECKS)} functions against xent.reference on kernel variants "
        f"{', '.join(isas)} (in use: {_dispatch.current_isa()}), shapes "
        f"{', '.join(f'{r}x{c}' for r, c in SHAPES)}",
        file=file,
    )
    rows = run_checks(isas)
    width = max(len(row[0]) for row in rows)
    print(
        f"{'function':<{width}}  {'isa':<8}  {'dtype':<7}  {'worst rel err':>13}  "
        f"{'tolerance':>9}  ok",
        file=file,
    )
    for name, isa, dtype, worst, tolerance, ok, note in rows:
        print(
            f"{name:<{width}}  {isa:<8}  {dtype:<7}  {worst:>13.2e}  {tolerance:>9.0e}  "
            f"{'ok' if ok else 'FAIL'}{'  ' + note if note else ''}",
            file=file,
        )
    failed = [row for row in rows if not row[5]]
    if failed:
        print(
            f"xent selftest: {len(failed)} of {len(rows)} checks FAILED: "
            f"{', '.join(sorted({f'{r[0]} ({r[1]}, {r[2]})' for r in failed}))}",
            file=file,
        )
        return 1
    print(f"xent selftest: all {len(rows)} checks agree with the reference", file=file)
    return 0
