"""Divergences between a student's and a teacher's logits (xent.divergence): against the
reference, PyTorch (skipped without it) and finite differences, on every kernel variant."""

import numpy as np
import pytest

import xent
from xent import reference

from support import assert_close

FUNCTIONS = {
    "kl": (
        xent.kl_divergence_logits,
        xent.kl_divergence_logits_with_grad,
        reference.kl_divergence_logits,
        reference.kl_divergence_logits_with_grad,
    ),
    "js": (
        xent.js_divergence_logits,
        xent.js_divergence_logits_with_grad,
        reference.js_divergence_logits,
        reference.js_divergence_logits_with_grad,
    ),
    "tv": (
        xent.tv_distance_logits,
        xent.tv_distance_logits_with_grad,
        reference.tv_distance_logits,
        reference.tv_distance_logits_with_grad,
    ),
}
# (family, extra options): every kind of row pass
CASES = [
    ("kl", {}),
    ("kl", {"direction": "reverse"}),
    ("js", {}),
    ("js", {"beta": 0.2}),
    ("js", {"beta": 0.0}),
    ("js", {"beta": 1.0}),
    ("tv", {}),
]
RTOL = {np.float32: 2e-4, np.float64: 1e-10}


def pair(rng, shape, dtype, spread=3.0):
    student = (rng.standard_normal(shape) * spread).astype(dtype)
    teacher = (rng.standard_normal(shape) * spread).astype(dtype)
    return student, teacher


def close(got, want, dtype, scale=1.0):
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64),
        want,
        rtol=RTOL[np.dtype(dtype).type],
        atol=RTOL[np.dtype(dtype).type] * scale,
    )


@pytest.mark.parametrize("family,extra", CASES)
@pytest.mark.parametrize("shape", [(7, 5), (3, 100), (2, 3, 1500), (4, 2500)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_against_reference(isa, rng, dtype, family, extra, shape, temperature):
    loss_fn, grad_fn, ref_loss, ref_grad = FUNCTIONS[family]
    s, t = pair(rng, shape, dtype)
    for reduction in ("mean", "sum", "none"):
        options = dict(temperature=temperature, reduction=reduction, **extra)
        got = loss_fn(s, t, **options)
        close(got, ref_loss(s, t, **options), dtype)
        loss, grad = grad_fn(s, t, **options)
        want_loss, want_grad = ref_grad(s, t, **options)
        close(loss, want_loss, dtype)
        assert grad.dtype == dtype and grad.shape == s.shape
        close(grad, want_grad, dtype, scale=np.abs(want_grad).max())


@pytest.mark.parametrize("family,extra", CASES)
def test_options(rng, family, extra):
    """ignore_mask, the T**2 switch, grad_output, out= in place over the student."""
    loss_fn, grad_fn, ref_loss, ref_grad = FUNCTIONS[family]
    s, t = pair(rng, (6, 4, 33), np.float64)
    mask = rng.random((6, 4)) < 0.3
    for scaled in (True, False):
        options = dict(
            temperature=3.0, ignore_mask=mask, scale_by_temperature_squared=scaled, **extra
        )
        close(loss_fn(s, t, **options), ref_loss(s, t, **options), np.float64)
        go = rng.standard_normal((6, 4))
        want_loss, want_grad = ref_grad(s, t, reduction="none", grad_output=go, **options)
        work = s.copy()
        loss, grad = grad_fn(work, t, reduction="none", grad_output=go, out=work, **options)
        assert grad is work
        close(loss, want_loss, np.float64)
        close(grad, want_grad, np.float64)
        assert np.all(grad[mask] == 0) and np.all(loss[mask] == 0)
    plain = loss_fn(s, t, temperature=3.0, scale_by_temperature_squared=False, **extra)
    scaled = loss_fn(s, t, temperature=3.0, **extra)
    close(scaled, 9.0 * plain, np.float64)


@pytest.mark.parametrize("family,extra", CASES)
@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_half(rng, family, extra, dtype):
    """float16 and bfloat16 are computed in float32: the reference of the rounded inputs."""
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype = ml_dtypes.bfloat16
    loss_fn, grad_fn, ref_loss, ref_grad = FUNCTIONS[family]
    s, t = pair(rng, (5, 300), np.float32)
    s, t = s.astype(dtype), t.astype(dtype)
    got = loss_fn(s, t, reduction="none", temperature=2.0, **extra)
    assert got.dtype == s.dtype
    want = ref_loss(s, t, reduction="none", temperature=2.0, **extra)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-2, atol=2e-3)
    loss, grad = grad_fn(s, t, temperature=2.0, **extra)
    assert grad.dtype == s.dtype
    want_loss, want_grad = ref_grad(s, t, temperature=2.0, **extra)
    np.testing.assert_allclose(
        grad.astype(np.float64), want_grad, rtol=2e-2, atol=2e-2 * np.abs(want_grad).max()
    )


def test_masked_vocabulary(isa, rng, dtype):
    """-inf logits (a masked vocabulary): a zero probability on both sides adds nothing; a
    class the teacher gives mass and the student none makes forward KL infinite."""
    s, t = pair(rng, (4, 70), dtype)
    s[:, 5:9] = -np.inf
    t[:, 5:9] = -np.inf
    for family, extra in CASES:
        loss_fn, _, ref_loss, _ = FUNCTIONS[family]
        close(
            loss_fn(s, t, reduction="none", **extra),
            ref_loss(s, t, reduction="none", **extra),
            dtype,
        )
    s[0, 20] = -np.inf
    got = xent.kl_divergence_logits(s, t, reduction="none")
    assert got[0] == np.inf and np.all(np.isfinite(got[1:]))


@pytest.mark.parametrize("family,extra", CASES)
@pytest.mark.parametrize("k", [1, 5])
def test_sparse_teacher(isa, rng, family, extra, k):
    """teacher_topk: k classes and the tail bucket, against the reference."""
    loss_fn, grad_fn, ref_loss, ref_grad = FUNCTIONS[family]
    s, t = pair(rng, (6, 50), np.float64)
    lp = reference.log_softmax(t / 2.0)
    index = np.argsort(-lp, axis=1)[:, :k]
    topk = (index, np.take_along_axis(lp, index, 1))
    options = dict(teacher_topk=topk, temperature=2.0, **extra)
    close(
        loss_fn(s, reduction="none", **options),
        ref_loss(s, reduction="none", **options),
        np.float64,
    )
    loss, grad = grad_fn(s, **options)
    want_loss, want_grad = ref_grad(s, **options)
    close(loss, want_loss, np.float64)
    close(grad, want_grad, np.float64)
    work = s.copy()
    _, in_place = grad_fn(work, out=work, **options)
    assert in_place is work
    close(in_place, want_grad, np.float64)


def test_sparse_teacher_with_every_class_is_dense(rng):
    """k = C: the tail is empty and the divergence is the dense one."""
    s, t = pair(rng, (5, 12), np.float64)
    lp = reference.log_softmax(t)
    index = np.tile(np.arange(12), (5, 1))
    topk = (index, lp)
    for family, extra in CASES:
        loss_fn = FUNCTIONS[family][0]
        close(loss_fn(s, teacher_topk=topk, **extra), loss_fn(s, t, **extra), np.float64)


def test_sparse_teacher_renormalised_refused(rng):
    s, _ = pair(rng, (3, 10), np.float64)
    index = np.tile(np.arange(3), (3, 1))
    renormalised = np.log(np.full((3, 3), 0.5))
    with pytest.raises(ValueError, match="renormalised"):
        xent.kl_divergence_logits(s, teacher_topk=(index, renormalised))
    with pytest.raises(ValueError, match="repeat"):
        xent.kl_divergence_logits(s, teacher_topk=(np.zeros((3, 2), int), np.full((3, 2), -3.0)))


def test_bad_arguments(rng):
    s, t = pair(rng, (3, 10), np.float64)
    with pytest.raises(ValueError, match="temperature"):
        xent.kl_divergence_logits(s, t, temperature=0)
    with pytest.raises(ValueError, match="beta"):
        xent.js_divergence_logits(s, t, beta=1.5)
    with pytest.raises(ValueError, match="direction"):
        xent.kl_divergence_logits(s, t, direction="sideways")
    with pytest.raises(ValueError, match="teacher"):
        xent.kl_divergence_logits(s, t[:, :5])
    with pytest.raises(ValueError, match="exactly one"):
        xent.kl_divergence_logits(s)
    with pytest.raises(ValueError, match="ignore_mask"):
        xent.kl_divergence_logits(s, t, ignore_mask=np.zeros(4, bool))
    with pytest.raises(ValueError, match="overlap teacher"):
        xent.kl_divergence_logits_with_grad(s, t, out=t)


@pytest.mark.parametrize("family,extra", CASES)
def test_finite_differences(rng, family, extra):
    _, grad_fn, _, _ = FUNCTIONS[family]
    s, t = pair(rng, (3, 9), np.float64, spread=1.5)
    options = dict(temperature=1.7, **extra)
    _, grad = grad_fn(s, t, **options)
    loss_fn = FUNCTIONS[family][0]
    h = 1e-6
    numeric = np.empty_like(s)
    for index in np.ndindex(s.shape):
        up, down = s.copy(), s.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (loss_fn(up, t, **options) - loss_fn(down, t, **options)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def _torch_divergence(torch, family, extra, s, t, temperature, ignore=None):
    F = torch.nn.functional
    lq = F.log_softmax(s / temperature, -1)
    lp = F.log_softmax(t / temperature, -1)
    if family == "kl" and extra.get("direction", "forward") == "forward":
        rows = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)
    elif family == "kl":
        rows = F.kl_div(lp, lq, log_target=True, reduction="none").sum(-1)
    elif family == "js":
        beta = extra.get("beta", 0.5)
        if beta == 0:
            rows = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)
        elif beta == 1:
            rows = F.kl_div(lp, lq, log_target=True, reduction="none").sum(-1)
        else:
            lm = torch.logaddexp(lp + np.log(beta), lq + np.log1p(-beta))
            rows = beta * F.kl_div(lm, lp, log_target=True, reduction="none").sum(-1) + (
                1 - beta
            ) * F.kl_div(lm, lq, log_target=True, reduction="none").sum(-1)
    else:
        rows = 0.5 * (lp.exp() - lq.exp()).abs().sum(-1)
    return rows * temperature**2


@pytest.mark.parametrize("family,extra", CASES)
def test_against_torch(rng, family, extra):
    torch = pytest.importorskip("torch")
    s, t = pair(rng, (8, 40), np.float64)
    ts = torch.tensor(s, requires_grad=True)
    rows = _torch_divergence(torch, family, extra, ts, torch.tensor(t), 2.0)
    loss = rows.sum() / rows.shape[0]  # batchmean
    loss.backward()
    got, grad = FUNCTIONS[family][1](s, t, temperature=2.0, **extra)
    np.testing.assert_allclose(got, loss.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, ts.grad.numpy(), rtol=1e-9, atol=1e-14)


def test_kl_is_torch_batchmean(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    s, t = pair(rng, (16, 300), np.float32)
    T = 4.0
    want = (
        F.kl_div(
            F.log_softmax(torch.tensor(s) / T, -1),
            F.log_softmax(torch.tensor(t) / T, -1),
            log_target=True,
            reduction="batchmean",
        ).item()
        * T
        * T
    )
    assert_close(xent.kl_divergence_logits(s, t, temperature=T), want, np.float32, rtol=2e-5)


def test_threads_do_not_change_bits(rng):
    s, t = pair(rng, (300, 700), np.float32)
    for family, extra in CASES:
        one = FUNCTIONS[family][1](s, t, num_threads=1, **extra)
        two = FUNCTIONS[family][1](s, t, num_threads=2, **extra)
        assert one[0] == two[0] and np.array_equal(one[1], two[1])


def test_check_mode(rng):
    """check=True recomputes with the reference, and passes on a correct result."""
    s, t = pair(rng, (20, 30), np.float32)
    for family, extra in CASES:
        loss_fn, grad_fn = FUNCTIONS[family][:2]
        assert loss_fn(s, t, check=True, **extra) == loss_fn(s, t, **extra)
        loss, grad = grad_fn(s, t, check=True, temperature=1.5, **extra)
        assert np.array_equal(grad, grad_fn(s, t, temperature=1.5, **extra)[1])
    lp = reference.log_softmax(t.astype(np.float64))
    index = np.argsort(-lp, axis=1)[:, :4]
    topk = (index, np.take_along_axis(lp, index, 1))
    loss, grad = xent.js_divergence_logits_with_grad(s, teacher_topk=topk, check=True)
    assert np.isfinite(loss) and grad.shape == s.shape


def _exact_kl_and_grad(student, teacher, temperature, direction, prec=200):
    """KL and its gradient with respect to the student's logits, for one row, at prec bits:
    forward KL(P_teacher || Q_student), gradient (Q - P) / T; reverse KL(Q || P), gradient
    Q (log Q - log P - KL) / T."""
    import mpmath

    with mpmath.workprec(prec):
        s = [mpmath.mpf(float(x)) / temperature for x in student]
        t = [mpmath.mpf(float(x)) / temperature for x in teacher]
        lse_s = mpmath.log(mpmath.fsum(mpmath.exp(y) for y in s))
        lse_t = mpmath.log(mpmath.fsum(mpmath.exp(y) for y in t))
        log_q = [x - lse_s for x in s]
        log_p = [x - lse_t for x in t]
        if direction == "forward":
            kl = mpmath.fsum(mpmath.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))
            grad = [(mpmath.exp(lq) - mpmath.exp(lp)) / temperature for lp, lq in zip(log_p, log_q)]
        else:
            kl = mpmath.fsum(mpmath.exp(lq) * (lq - lp) for lp, lq in zip(log_p, log_q))
            grad = [mpmath.exp(lq) * (lq - lp - kl) / temperature for lp, lq in zip(log_p, log_q)]
        return float(kl), np.array([float(g) for g in grad])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("c,noise", [(10, 1e-5), (300, 1e-3), (2500, 1e-2), (2500, 0.3)])
def test_kl_of_close_distributions_against_mpmath(isa, rng, dtype, direction, c, noise):
    """A student close to its teacher: the KL (second order in the logits' differences, down
    to 1e-11 here) keeps its digits, and so does its gradient (Q - P, a difference of nearly
    equal probabilities), where the textbook form E_P[log P - log Q] keeps only what the two
    log-sum-exps share (5e-4 relative in float32, 1e-9 in float64 before)."""
    # float32's lanes sum in float, within a few ulp here; float64's rounding of 2500 terms
    # reaches about 50 ulp (1e-14)
    rtol = 3e-6 if dtype == np.float32 else (40 + c / 16) * float(np.finfo(dtype).eps)
    for temperature in (1.0, 2.0):
        teacher = (rng.standard_normal(c) * 3).astype(dtype)
        student = (teacher + rng.standard_normal(c) * noise).astype(dtype)
        loss, grad = xent.kl_divergence_logits_with_grad(
            student[None],
            teacher[None],
            temperature=temperature,
            direction=direction,
            reduction="none",
            scale_by_temperature_squared=False,
        )
        kl, want_grad = _exact_kl_and_grad(student, teacher, temperature, direction)
        assert abs(float(loss[0]) - kl) <= rtol * kl, (float(loss[0]), kl)
        err = np.abs(grad[0].astype(np.float64) - want_grad).max()
        assert err <= rtol * np.abs(want_grad).max(), err


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_far_and_off_centre_against_mpmath(isa, rng, dtype, direction):
    """Rows the second-order sums do not serve alone: distributions far apart (KL 50 to 800),
    a first distribution whose mode lies far from the row's first entries (the centre c is
    taken again where it has its mass), and mass of the second distribution where the
    first one's weights underflow (the textbook form takes over)."""
    rows_s, rows_t = [], []
    for gap in (50.0, 100.0, 800.0):
        rows_t.append([gap, 0.0, 0.0] + [-5.0] * 3000)
        rows_s.append([0.0, gap, 0.0] + [-5.0] * 3000)
    # the first distribution's mode late in the row, the differences there of 40
    late_t = (rng.standard_normal(3003) * 2).tolist()
    late_s = (np.asarray(late_t) + 0.01 * rng.standard_normal(3003)).tolist()
    late_t[2900], late_s[2900] = 200.0, 160.0
    late_t[2901], late_s[2901] = 199.0, 159.5
    rows_t.append(late_t)
    rows_s.append(late_s)
    first, second = (rows_t, rows_s) if direction == "forward" else (rows_s, rows_t)
    # the second distribution's mass where the first one's weights underflow
    first.append([0.0] * 10 + [-400.0] * 2993)
    second.append([0.0] * 10 + [0.5] * 2993)
    student = np.array(rows_s, dtype=dtype)
    teacher = np.array(rows_t, dtype=dtype)
    loss, grad = xent.kl_divergence_logits_with_grad(
        student, teacher, direction=direction, reduction="none"
    )
    # half precisions are computed in float32, held against the exact value of their inputs
    eps = float(np.finfo(np.float64 if dtype == np.float64 else np.float32).eps)
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    for row in range(len(student)):
        kl, want_grad = _exact_kl_and_grad(student[row], teacher[row], 1.0, direction)
        assert abs(float(loss[row]) - kl) <= rtol * kl, (row, float(loss[row]), kl)
        # a log-probability is known to eps times the row's largest logit (up to 800 here)
        # and so is the gradient's relative accuracy
        largest = max(np.abs(student[row]).max(), np.abs(teacher[row]).max())
        err = np.abs(grad[row].astype(np.float64) - want_grad).max()
        assert err <= 8 * eps * float(largest) * max(np.abs(want_grad).max(), 1.0), (row, err)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_kl_where_the_ratio_nears_exp_range(isa, dtype):
    """A class where the teacher's probability is exp(90) (float32) or exp(718) (float64)
    times the student's: its term of the second-order sum is beyond exp's range, and once c
    is centred, just inside it, where the vector exp clamps (the textbook form takes over)."""
    edge = 89.85 if dtype == np.float32 else 718.2
    teacher = np.array([[7.75812, 12.150181]], dtype=dtype)
    student = np.array([[64.56619 + edge, 64.56619]], dtype=dtype)
    for direction, (s, t) in (("forward", (student, teacher)), ("reverse", (teacher, student))):
        loss = xent.kl_divergence_logits(s, t, direction=direction, reduction="none")
        kl, _ = _exact_kl_and_grad(s[0], t[0], 1.0, direction)
        assert abs(float(loss[0]) - kl) <= 1e-6 * kl, (direction, float(loss[0]), kl)
