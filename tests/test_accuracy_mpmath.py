"""Accuracy of small and large results against mpmath at 200 bits, on every kernel variant.

Rows are built from a few distinct values with multiplicities (a max repeated ``ties`` times
and others ``gap`` below it), so a row of a million entries has an exact value mpmath computes
in microseconds, and the gaps reach the edge of each dtype's range: logsumexp([0, -700]) is
1e-304, a confident row's loss log1p(sum of the others' exps) as small as the smallest normal.

Bounds (the issue's goals): float64 within 4 ulp of the exact value for results from 1e-300 to
1e4; float32 within 1e-6 relative down to the smallest normal. Checked: logsumexp, the loss
of a row whose target is its max (tiny) and of one whose target is another entry (large),
log-softmax of every entry, the target's gradient entry p_t - 1, every other gradient entry
p_j and every softmax entry, and binary cross-entropy with logits and its gradient.
"""

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xent

from support import hypothesis_settings

mpmath.mp.prec = 200

F32, F64 = np.float32, np.float64
#: The magnitudes of results the bounds hold for.
RANGE = {F64: (1e-300, 1e4), F32: (float(np.finfo(F32).tiny), 1e4)}
#: The largest gap below the max whose exp is still a normal number.
MAX_GAP = {F64: 700.0, F32: 86.0}


def error(got, exact, dtype):
    """Error of got against exact (an mpf): in ulps of exact for float64, relative for
    float32 (the unit of each dtype's bound)."""
    diff = abs(mpmath.mpf(float(got)) - exact)
    if dtype == F64:
        return float(diff / mpmath.mpf(float(np.spacing(abs(float(exact))))))
    return float(diff / abs(exact))


BOUND = {F64: 4.0, F32: 1e-6}


def in_range(exact, dtype):
    low, high = RANGE[dtype]
    return low <= abs(exact) <= high


def check(got, exact, dtype, what, bound=None):
    """got within the dtype's bound of exact (an mpf), where exact is in the dtype's range.
    The float32 bound is a flat 1e-6: the kernels' fast float terms round x - max in float32
    (up to |x - max| 2^-24 off: 5e-6 for a term near the smallest normal), but a row whose
    terms could carry that into its result has them computed again exactly. ``bound``
    replaces the dtype's where given."""
    if in_range(exact, dtype):
        err = error(got, exact, dtype)
        bound = BOUND[dtype] if bound is None else bound
        assert err <= bound, (
            f"{what}: got {float(got)!r}, exact {mpmath.nstr(exact, 20)}, error {err:.3g} "
            f"({'ulp' if dtype == F64 else 'relative'}, bound {bound:.3g})"
        )


def build_row(top, ties, gaps, counts, dtype, order_seed):
    """The row (shuffled) and its exact log-sum-exp of the dtype's own entries."""
    values = [dtype(top)] * ties
    for gap, count in zip(gaps, counts):
        values += [dtype(dtype(top) - dtype(gap))] * count
    row = np.array(values, dtype=dtype)
    np.random.default_rng(order_seed).shuffle(row)
    distinct, mult = np.unique(row, return_counts=True)
    shift = mpmath.mpf(float(distinct[-1]))
    rest = mpmath.fsum(
        int(k) * mpmath.exp(mpmath.mpf(float(v)) - shift) for v, k in zip(distinct[:-1], mult[:-1])
    )
    ties = int(mult[-1])
    # log(ties + rest) without forming 1 + rest, which would cancel at any precision
    return row, shift, mpmath.log(ties) + mpmath.log1p(rest / ties)


def rows(dtype, max_count=3):
    """Rows whose results are tiny (big gaps) or huge (a huge max, a target far below)."""
    gap = st.one_of(
        st.floats(0, 4),
        st.floats(0, MAX_GAP[dtype]),
        st.floats(MAX_GAP[dtype] * 0.8, MAX_GAP[dtype]),
    )
    top = st.one_of(st.just(0.0), st.floats(-1e3, 1e3), st.floats(1e3, 9e3))
    return st.tuples(
        top,
        st.integers(1, 3),
        st.lists(gap, min_size=0, max_size=6),
        st.lists(st.integers(1, max_count), min_size=6, max_size=6),
        st.integers(0, 2**32 - 1),
    )


def _check_row(dtype, top, ties, gaps, counts, order_seed):
    row, shift, log_sum = build_row(top, ties, gaps, counts, dtype, order_seed)
    x = row[None, :]
    c = row.size
    # logsumexp: shift + log_sum (a max >= 0 adds without cancelling)
    if shift >= 0:
        check(xent.logsumexp(x)[0], shift + log_sum, dtype, f"logsumexp of {row!r}")
    # loss of the max (tiny) and of the lowest entry (large)
    targets = [int(np.argmax(row)), int(np.argmin(row))]
    losses = xent.cross_entropy(x.repeat(2, axis=0), np.array(targets), reduction="none")
    log_softmax = xent.log_softmax(x)[0]
    for t, got in zip(targets, losses):
        exact = shift - mpmath.mpf(float(row[t])) + log_sum
        check(got, exact, dtype, f"loss of class {t} of {row!r}")
    for j in range(c):
        exact = mpmath.mpf(float(row[j])) - shift - log_sum
        check(log_softmax[j], exact, dtype, f"log_softmax[{j}] of {row!r}")
    # the target's gradient entry p_t - 1 = expm1(log_softmax[t]) (reduction="sum": g = 1)
    _, grad = xent.cross_entropy_with_grad(x, np.array([targets[0]]), reduction="sum")
    exact = mpmath.expm1(mpmath.mpf(float(row[targets[0]])) - shift - log_sum)
    check(grad[0, targets[0]], exact, dtype, f"gradient of the max of {row!r}")
    # the other entries p_j = exp(x_j - logsumexp), and softmax's: x - max rounds by up to
    # |x - max| 2^-25 in float (2.6e-6 near the smallest normal) and 2^-53 in double (~400
    # ulp of an entry near 1e-300), which exp carries relative unless put back; and in double
    # log_sum's own rounding (an ulp of a log_sum of 2 to 4 is 3 ulp of an entry) is put
    # back too
    softmax = xent.softmax(x)[0]
    for j in range(c):
        exact = mpmath.exp(mpmath.mpf(float(row[j])) - shift - log_sum)
        if j != targets[0]:
            check(grad[0, j], exact, dtype, f"gradient[{j}] of {row!r}")
        check(softmax[j], exact, dtype, f"softmax[{j}] of {row!r}")


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@hypothesis_settings(60)
@given(data=st.data())
def test_rows_against_mpmath(isa, dtype, data):
    _check_row(dtype, *data.draw(rows(dtype)))


@pytest.mark.parametrize("classes", [2, 10, 100, 5000])
@pytest.mark.parametrize("top", [1.52978866, -3.7, 100.25])
def test_rounded_differences_float64(isa, classes, top):
    """float64 entries far below a max of another magnitude: x - max needs more than 53 bits
    (1.53 - 67.53 is rounded by up to 7e-15), and a tiny loss log1p(exp(x - max)) carried
    that rounding, 45 ulp (found by test_rows_against_mpmath). The kernels put it back."""
    row = np.full(classes, top, dtype=F64)
    row[1:] = top - np.linspace(66.0, 400.0, classes - 1)
    order = np.random.default_rng(classes).permutation(classes)
    row = row[order]
    t = int(np.argmax(row))
    exact_sum = mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - mpmath.mpf(top)) for v in row)
    exact_loss = mpmath.log1p(exact_sum - 1)
    loss = xent.cross_entropy(row[None, :], np.array([t]), reduction="none")[0]
    check(loss, exact_loss, F64, f"C={classes}, max {top}")
    assert in_range(exact_loss, F64)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("classes", [16, 33, 40, 64])
@pytest.mark.parametrize("gap", [5.0, 30.0, 300.0, 690.0])
def test_short_confident_rows_of_equal_terms(isa, dtype, classes, gap):
    """Rows short enough for the group kernels (one row per vector lane), the max once and
    every other entry the same: their terms are equal, so an uncompensated sum rounds the same
    way at each step (7 ulp on [0, -30 x 63] in float64). Rows of a group differ in size."""
    rows_ = np.full((3, classes), -gap, dtype=dtype)
    rows_[:, 0] = 0
    rows_[1, classes // 2 :] = -np.inf  # fewer terms in the same group
    rows_[2, 1] = dtype(-gap / 2)
    losses = xent.cross_entropy(rows_, np.zeros(3, np.intp), reduction="none")
    if np.exp(-gap / 2) < np.finfo(dtype).tiny:  # float32: every term below the range
        np.testing.assert_array_equal(losses, 0)
        return
    for r in range(3):
        exact = mpmath.log1p(
            mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in rows_[r, 1:] if v > -np.inf)
        )
        check(losses[r], exact, dtype, f"C={classes}, gap {gap}, row {r}")


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("classes", [1, 2, 1000, 100_000, 1 << 20])
def test_long_confident_rows(isa, dtype, classes):
    """C up to 1M: the max once, every other entry far below it, the loss down to tiny."""
    gap = MAX_GAP[dtype] * 0.95
    row = np.full(classes, -gap, dtype=dtype)
    row[classes // 3] = 0
    exact_sum = (classes - 1) * mpmath.exp(mpmath.mpf(float(dtype(-gap))))
    losses = xent.cross_entropy(row[None, :], np.array([classes // 3]), reduction="none")
    if classes > 1:
        check(losses[0], mpmath.log1p(exact_sum), dtype, f"C={classes}")
    else:
        assert losses[0] == 0
    check(xent.logsumexp(row[None, :])[0], mpmath.log1p(exact_sum), dtype, f"lse C={classes}")


@pytest.mark.parametrize("classes", [3000, 1 << 16, 1 << 20])
@pytest.mark.parametrize("seed", range(3))
def test_entries_of_wide_float64_rows(isa, classes, seed):
    """Softmax and gradient entries of float64 rows of up to a million classes within 4 ulp:
    their log_sum (7 to 14 here) rounded to double is up to 8 ulp of every entry (relative),
    so the kernels carry its low part. 48 distinct values, each many times, keep the exact
    sum cheap."""
    rng = np.random.default_rng(seed)
    values = rng.normal(scale=2.0, size=48) - rng.uniform(0, 50)
    counts = np.full(48, classes // 48)
    counts[: classes % 48] += 1
    row = np.repeat(values, counts)
    rng.shuffle(row)
    log_sum = mpmath.log(
        mpmath.fsum(int(k) * mpmath.exp(mpmath.mpf(float(v))) for v, k in zip(values, counts))
    )
    first = {float(v): int(np.flatnonzero(row == v)[0]) for v in values}
    softmax = xent.softmax(row[None, :])[0]
    target = int(np.argmax(row))
    _, grad = xent.cross_entropy_with_grad(row[None, :], np.array([target]), reduction="sum")
    for v, j in first.items():
        exact = mpmath.exp(mpmath.mpf(v) - log_sum)
        check(softmax[j], exact, F64, f"softmax entry {v!r}, C={classes}")
        if j != target:
            check(grad[0, j], exact, F64, f"gradient entry {v!r}, C={classes}")


@pytest.mark.parametrize("seed", range(3))
def test_linear_head_gradient_entries_of_wide_float64_rows(seed):
    """linear_cross_entropy_with_grad's float64 softmax entries within 4 ulp: with an identity
    weight the logits are the hidden rows exactly and grad_hidden is d loss / d logits."""
    rng = np.random.default_rng(seed)
    vocab = 4096
    values = rng.normal(scale=2.0, size=32)
    row = rng.permutation(np.repeat(values, vocab // 32))
    hidden = np.stack([row, row[::-1]])
    target = np.array([int(np.argmin(row)), int(np.argmin(row[::-1]))])
    _, grad_hidden, _ = xent.linear_cross_entropy_with_grad(
        hidden, np.eye(vocab), target, reduction="sum"
    )
    log_sum = mpmath.log(
        mpmath.fsum((vocab // 32) * mpmath.exp(mpmath.mpf(float(v))) for v in values)
    )
    for r, x in enumerate(hidden):
        for v in values:
            j = int(np.flatnonzero(x == v)[0])
            if j != target[r]:
                exact = mpmath.exp(mpmath.mpf(float(v)) - log_sum)
                check(grad_hidden[r, j], exact, F64, f"linear gradient entry {v!r}, row {r}")


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_issue_examples(isa, dtype):
    if dtype == F64:
        assert xent.logsumexp(np.array([[0.0, -40.0]]))[0] == 4.248354255291589e-18
        loss = xent.cross_entropy(np.array([[0.0, -30.0]]), np.array([0]), reduction="none")
        check(loss[0], mpmath.log1p(mpmath.exp(-30)), dtype, "cross_entropy([[0, -30]], [0])")
    x = np.array([-10.0, -15.0, 20.0], dtype=dtype)
    y = np.array([0.0, 0.0, 1.0], dtype=dtype)
    loss, grad = xent.binary_cross_entropy_with_logits_with_grad(x, y, reduction="none")
    for xi, li in zip([-10, -15, 20], loss):
        check(li, mpmath.log1p(mpmath.exp(-abs(xi))), dtype, f"BCE logits {xi}")
    check(grad[2], -1 / (1 + mpmath.exp(20)), dtype, "BCE gradient at 20")


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@hypothesis_settings(80)
@given(data=st.data())
def test_bce_with_logits_against_mpmath(isa, dtype, data):
    limit = 700.0 if dtype == F64 else 85.0
    x = dtype(data.draw(st.floats(-limit, limit)))
    y = dtype(data.draw(st.sampled_from([0.0, 1.0, 0.25])))
    pw = dtype(data.draw(st.sampled_from([1.0, 3.0])))
    loss, grad = xent.binary_cross_entropy_with_logits_with_grad(
        np.array([x]), np.array([y]), pos_weight=np.array([pw]), reduction="sum"
    )
    mx, my, mpw = (mpmath.mpf(float(v)) for v in (x, y, pw))
    softplus = lambda v: mpmath.log1p(mpmath.exp(v))  # noqa: E731
    exact = mpw * my * softplus(-mx) + (1 - my) * softplus(mx)
    check(loss, exact, dtype, f"BCE logits x={x!r} y={y!r} pw={pw!r}")
    sig, sig_neg = 1 / (1 + mpmath.exp(-mx)), 1 / (1 + mpmath.exp(mx))  # no 1 - sig: it cancels
    exact_grad = (1 - my) * sig - mpw * my * sig_neg
    if y != dtype(0.25):  # a soft label's gradient cancels where sigmoid(x) = y: ill-posed
        check(grad[0], exact_grad, dtype, f"BCE gradient x={x!r} y={y!r} pw={pw!r}")


def _check_row_paths(row, what):
    """Every result of one float32 row that carries its rest's relative error (the loss of
    its max and of its lowest entry, logsumexp, log-softmax of both, the max's gradient
    entry, xent.evaluate's loss), against mpmath with the flat bound; and the paths that
    promise the same bits for the row agree (loss with and without the gradient, one thread
    or two, evaluate and cross_entropy on short rows)."""
    distinct, mult = np.unique(row, return_counts=True)
    shift = mpmath.mpf(float(distinct[-1]))
    rest = mpmath.fsum(
        int(k) * mpmath.exp(mpmath.mpf(float(v)) - shift) for v, k in zip(distinct[:-1], mult[:-1])
    )
    log_sum = mpmath.log(int(mult[-1])) + mpmath.log1p(rest / int(mult[-1]))
    x = row[None, :]
    top, low = int(np.argmax(row)), int(np.argmin(row))
    losses = xent.cross_entropy(np.repeat(x, 2, axis=0), np.array([top, low]), reduction="none")
    for t, got in zip((top, low), losses):
        check(got, shift - mpmath.mpf(float(row[t])) + log_sum, F32, f"{what}: loss of {t}")
    if shift >= 0:
        check(xent.logsumexp(x)[0], shift + log_sum, F32, f"{what}: logsumexp")
    log_softmax = xent.log_softmax(x)[0]
    for t in (top, low):
        exact = mpmath.mpf(float(row[t])) - shift - log_sum
        check(log_softmax[t], exact, F32, f"{what}: log_softmax[{t}]")
    loss, grad = xent.cross_entropy_with_grad(x, np.array([top]), reduction="none")
    exact = mpmath.expm1(-log_sum)
    check(grad[0, top], exact, F32, f"{what}: gradient of the max")
    exact = mpmath.exp(mpmath.mpf(float(row[low])) - shift - log_sum)
    check(grad[0, low], exact, F32, f"{what}: gradient of the lowest entry")
    check(xent.softmax(x)[0, low], exact, F32, f"{what}: softmax of the lowest entry")
    assert loss[0] == losses[0], f"{what}: the loss with the gradient is another"
    two = xent.cross_entropy(
        np.repeat(x, 2, axis=0), np.array([top, low]), reduction="none", num_threads=2
    )
    assert np.array_equal(two, losses), f"{what}: two threads give other bits"
    report = xent.evaluate(x, np.array([top]))
    check(report.loss, log_sum, F32, f"{what}: evaluate's loss")
    if row.size <= 64:  # the group kernels: evaluate's loss is cross_entropy's, bit for bit
        assert np.float32(report.loss) == losses[0], f"{what}: evaluate's loss is another"


#: Tops of another magnitude than the gaps: x - max is then rounded in float32.
TOPS_F32 = [1.52978866, -3.7, 100.25]


@pytest.mark.parametrize("classes", [2, 16, 64, 65, 1000, 4097, 100_000, 1 << 20])
@pytest.mark.parametrize("top", TOPS_F32)
def test_float32_gaps_to_the_range_edge(isa, classes, top):
    """float32 rows whose other entries lie from 40 to 86 below the max (terms down to the
    smallest normal), C from 2 to 1M (the group kernels up to 64, the long rows above, cut
    among threads from 262144): the loss of a confident row down to 1e-37 within 1e-6 of
    mpmath. Before, x - max rounded in float32 put up to 4e-6 into it."""
    rng = np.random.default_rng(classes)
    gaps = [40.3, 66.17, 79.9, 86.0]
    counts = rng.multinomial(classes - 1, [0.1, 0.2, 0.3, 0.4])
    values = [np.float32(top)]
    for gap, count in zip(gaps, counts):
        values += [np.float32(np.float32(top) - np.float32(gap))] * int(count)
    row = rng.permutation(np.array(values, dtype=F32))
    _check_row_paths(row, f"C={classes}, top {top}")


@pytest.mark.parametrize("classes", [10, 64, 1000, 32000])
def test_float32_rows_with_and_without_a_second_pass(isa, rng, classes):
    """A row of random logits (std 3: its terms meet the budget, computed once) and the same
    row made confident (one entry raised 30 above the max, and to 86 above the min: every
    term still a normal float; recomputed exactly), on the group kernels (C <= 64) and the
    long rows, within the flat bound on every path."""
    row = (rng.standard_normal(classes) * 3).astype(F32)
    _check_row_paths(row, f"random C={classes}")
    for lift in (30.0, 86.0 - float(row.max() - row.min())):
        confident = row.copy()
        confident[classes // 2] = np.float32(row.max() + lift)
        _check_row_paths(confident, f"confident (+{lift}) C={classes}")


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("classes", [10, 64, 1000, 5000])
def test_half_rows_take_the_float32_second_pass(isa, half, classes):
    """float16 and bfloat16 rows are computed in float32 (short rows by the float32 group
    kernels, long ones widened a chunk at a time, the second pass widening them again): their
    results are the float32 path's on the widened row, rounded to the half dtype, for a row
    that is computed once and one that is computed twice."""
    if half == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        hdtype = np.dtype(ml_dtypes.bfloat16)
    else:
        hdtype = np.dtype(np.float16)
    rng = np.random.default_rng(classes)
    random_row = rng.standard_normal(classes) * 3
    confident = random_row.copy()
    confident[0] = random_row.max() + (80.0 if half == "bfloat16" else 9.0)
    for row in (random_row, confident):
        h = row.astype(hdtype)[None, :]
        wide = h.astype(F32)
        t = np.array([0])
        for name, call in [
            ("loss", lambda a: xent.cross_entropy(a, t, reduction="none")),
            ("logsumexp", lambda a: xent.logsumexp(a)),
            ("log_softmax", lambda a: xent.log_softmax(a)),
            ("gradient", lambda a: xent.cross_entropy_with_grad(a, t, reduction="none")[1]),
        ]:
            got, want = call(h), call(wide).astype(hdtype)
            assert np.array_equal(got.astype(F32), want.astype(F32)), f"{half} C={classes} {name}"


def _exact_logsumexp(row):
    return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))


@pytest.mark.parametrize("classes", [2, 5, 64, 100, 3000])
def test_float32_logsumexp_where_max_and_log_sum_cancel(isa, classes):
    """A float32 logsumexp near 0 under a negative max: max + log(sum) cancels, and the
    result keeps 1e-6 relative only if the sum is far more exact than float32 terms give
    (those rows are computed again in float64). Log-probabilities (their logsumexp is the
    few-ulp offset their rounding left, about 1e-8), and rows whose result is near +-0.5."""
    rng = np.random.default_rng(classes)
    logits = rng.standard_normal((6, classes)) * 2
    log_probs = xent.log_softmax(logits.astype(np.float32))
    # peaked rows: a max far below 0 at times, so a float64 sum's ulp or two of it is over
    # 1e-6 of a result near 1e-9 (those go on to double-double)
    peaked = xent.log_softmax((rng.standard_normal((12, classes)) * 6).astype(np.float32))
    shifted = (logits - xent.logsumexp(logits)[:, None] + [[0.5], [-0.5], [0.01]] * 2).astype(
        np.float32
    )
    rows = np.concatenate([log_probs, peaked, shifted])
    got = xent.logsumexp(rows)
    _, lse = xent.cross_entropy(rows, np.zeros(len(rows), np.intp), return_lse=True)
    for r, row in enumerate(rows):
        exact = _exact_logsumexp(row)
        check(got[r], exact, F32, f"logsumexp of row {r} (C={classes})")
        check(lse[r], exact, F32, f"return_lse of row {r} (C={classes})")


@pytest.mark.parametrize("classes", [2, 5, 64, 100, 3000])
def test_float64_logsumexp_where_max_and_log_sum_cancel(isa, classes):
    """A float64 logsumexp under a negative max, smaller than half of it: log P(A) of a
    likely event A from log-probabilities (a subset of a row's entries) and rows shifted to
    results near +-0.5, 1e-3, 1e-6 and 1e-9. The double sum's error is an ulp or two of
    |max|, thousands of the result (5.7e5 ulp measured); these rows are computed again in
    double-double. Results below 2^-45 |max| (the residue of an already normalised row) are
    left out: see _F64_RESIDUE."""
    rng = np.random.default_rng(classes + 1)
    logits = rng.standard_normal((8, classes)) * 2
    log_probs = xent.log_softmax(logits)
    likely = np.where(rng.random(log_probs.shape) < 0.9, log_probs, -np.inf)
    likely[:, 0] = log_probs[:, 0]
    offsets = np.array([[0.5], [-0.5], [1e-3], [-1e-6], [1e-9], [0.01], [3e-12], [-2e-13]])
    shifted = log_probs + offsets
    rows = np.concatenate([likely, shifted])
    got = xent.logsumexp(rows)
    _, lse = xent.cross_entropy(rows, np.zeros(len(rows), np.intp), return_lse=True)
    for r, row in enumerate(rows):
        exact = _exact_logsumexp(row[np.isfinite(row)])
        if abs(exact) < 2.0**-45 * abs(row.max()):
            continue  # a normalised row's residue (likely holding every entry)
        check(got[r], exact, F64, f"logsumexp of row {r} (C={classes})")
        check(lse[r], exact, F64, f"return_lse of row {r} (C={classes})")


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("classes", [3, 10, 64, 1000])
def test_target_gradient_entry_on_both_sides_of_one_half(isa, dtype, classes):
    """The target's gradient entry p_t - 1: expm1 of its log-softmax where p_t is above 1/2
    (it cancels), exp - 1 below (it does not); both within the dtype's bound, each target
    of a row in turn (its max among them)."""
    rng = np.random.default_rng(classes)
    row = (rng.standard_normal(classes) * rng.choice([0.3, 3.0, 12.0])).astype(dtype)
    row[0] = row.max() + dtype(0.8)  # a target whose p_t lies near 1/2 on either side
    targets = np.arange(classes) if classes <= 64 else rng.integers(0, classes, 64)
    x = np.repeat(row[None, :], len(targets), axis=0)
    _, grad = xent.cross_entropy_with_grad(x, targets, reduction="sum")
    log_sum = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
    for r, t in enumerate(targets):
        exact = mpmath.expm1(mpmath.mpf(float(row[t])) - log_sum)
        check(grad[r, t], exact, dtype, f"gradient of target {t} of C={classes}")
