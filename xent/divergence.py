"""Divergences between a student's and a teacher's logits, for distillation: KL (forward and
reverse), the generalised Jensen-Shannon divergence and the total variation distance, with
their gradients with respect to the student's logits.

With ``P = softmax(teacher / T)`` (the teacher) and ``Q = softmax(student / T)`` (the student),
per row:

* ``kl_divergence_logits``: ``KL(P || Q)`` (``direction="forward"``, PyTorch's
  ``F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True)``) or
  ``KL(Q || P)`` (``"reverse"``);
* ``js_divergence_logits``: ``beta KL(P || M) + (1 - beta) KL(Q || M)`` with
  ``M = beta P + (1 - beta) Q`` (Liger-Kernel's generalised JSD; ``beta = 0`` is forward KL,
  ``beta = 1`` reverse KL, as there);
* ``tv_distance_logits``: ``sum |P - Q| / 2``.

**Temperature.** Each row's value is multiplied by ``T**2`` by default
(``scale_by_temperature_squared=True``): the gradient of a divergence at temperature T with
respect to the logits shrinks as 1 / T**2, and Hinton et al.'s distillation loss multiplies by
``T**2`` so that its gradient keeps its size when T changes. Pass False for the divergence
itself.

**One read.** Forward and reverse KL come from one pass over each row pair (the online max and
sum-exp of both rows together, with the weighted sum of their differences alongside); JSD and
total variation need both log-sum-exps before their terms, so they read the row pair a second
time, from cache. Gradients take that second read too. Nothing of size N x C is allocated for
a loss; a gradient is written straight into its output (which may be the student's logits).

**Accuracy.** Every row's value keeps its relative accuracy where the student is close to
the teacher (the divergences are then second order, or for total variation a sum of
differences of nearly equal probabilities): each class's term is taken from
``d = log P - log Q``, the difference of the two logits less that of the two log-sum-exps
(itself from sums of second-order terms), in a form with no first-order parts left to cancel
(JSD as ``beta P chi(log(M / P)) + (1 - beta) Q chi(log(M / Q))``, ``chi(z) = e^z - 1 - z``;
``|P - Q|`` as ``max(P, Q) (-expm1(-|d|))``). Measured against mpmath: float64 within 9 ulp,
float32 within 5e-7 relative, for rows 1e-3 to 1e-9 apart and far apart alike.

float16 and bfloat16 rows are widened to float32 one row pair at a time, in cache.
"""

import numpy as np

from . import _check, _kernels
from . import reference as _reference
from ._threads import get_num_threads, shares_cpus
from ._validation import (
    as_rows,
    bool_option,
    check_enabled,
    check_reduction,
    compute_dtype,
    float_array,
    grad_output_factors,
    gradient_array,
    half_rows,
    store,
    writable_rows,
)

__all__ = [
    "js_divergence_logits",
    "js_divergence_logits_with_grad",
    "kl_divergence_logits",
    "kl_divergence_logits_with_grad",
    "tv_distance_logits",
    "tv_distance_logits_with_grad",
]

_KINDS = _kernels.divergence_kinds()


def tail_mass(top_mass, k, rest=None):
    """The mass outside the top k, ``1 - top_mass`` (or ``rest``), as 0 where it is within the
    rounding error of a sum of k probabilities (then the top k hold the whole distribution:
    with k = C the tail is empty, not 1e-16, which would make a KL divergence infinite)."""
    rest = 1 - top_mass if rest is None else rest
    return np.where(rest > 4 * max(k, 1) * np.finfo(np.float64).eps, rest, 0.0)


class _Problem:
    """The checked arguments of a divergence call."""

    def __init__(
        self,
        kind,
        student,
        teacher,
        teacher_topk,
        temperature,
        beta,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        num_threads,
    ):
        s = float_array(student, "student")
        if s.shape[-1] == 0:
            raise ValueError(f"student has shape {s.shape}: the class axis (last) is empty")
        self.s, self.batch, self.n_classes = s, s.shape[:-1], s.shape[-1]
        self.n_rows = int(np.prod(self.batch, dtype=np.int64))
        self.compute = compute_dtype(s.dtype)
        temperature = float(temperature)
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite number, got {temperature}")
        self.temperature = temperature
        beta = float(beta)
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if kind == "jsd" and beta == 0:  # Liger-Kernel's limits of the generalised JSD
            kind = "forward"
        elif kind == "jsd" and beta == 1:
            kind = "reverse"
        self.kind, self.beta = kind, beta
        self.reduction = check_reduction(reduction)
        scaled = bool_option(scale_by_temperature_squared, "scale_by_temperature_squared")
        self.factor = temperature**2 if scaled else 1.0
        self.threads = get_num_threads(num_threads)
        if ignore_mask is None:
            self.skip = None
            self.kept = self.n_rows
        else:
            mask = np.asarray(ignore_mask)
            if mask.dtype != bool:
                raise TypeError(f"ignore_mask must be boolean, got dtype {mask.dtype}")
            if mask.shape != self.batch:
                raise ValueError(
                    f"ignore_mask has shape {mask.shape}, expected the batch shape {self.batch}"
                )
            self.skip = np.ascontiguousarray(mask.reshape(-1)).view(np.uint8)
            self.kept = self.n_rows - int(np.count_nonzero(mask))
        if (teacher is None) == (teacher_topk is None):
            raise ValueError("give exactly one of teacher (logits) and teacher_topk")
        self.topk = None
        if teacher is not None:
            t = float_array(teacher, "teacher")
            if t.shape != s.shape or t.dtype != s.dtype:
                raise ValueError(
                    f"teacher has shape {t.shape} and dtype {t.dtype}, expected "
                    f"the student's {s.shape} and {s.dtype}"
                )
            self.t = t
        else:
            self.t = None
            self.topk = self._topk(teacher_topk)

    def _topk(self, teacher_topk):
        try:
            index, logprobs = teacher_topk
        except (TypeError, ValueError):
            raise TypeError("teacher_topk must be a pair (indices, logprobs)") from None
        index, logprobs = np.asarray(index), np.asarray(logprobs, dtype=np.float64)
        if index.dtype.kind not in "iu":
            raise TypeError(f"teacher_topk indices must be integers, got dtype {index.dtype}")
        if index.shape != logprobs.shape or index.shape[:-1] != self.batch:
            raise ValueError(
                f"teacher_topk indices {index.shape} and logprobs "
                f"{logprobs.shape} must both have shape {self.batch} + (k,)"
            )
        k = index.shape[-1]
        index = index.reshape(self.n_rows, k).astype(np.intp)
        logprobs = logprobs.reshape(self.n_rows, k)
        if index.size and (index.min() < 0 or index.max() >= self.n_classes):
            raise IndexError(f"teacher_topk indices must be in [0, {self.n_classes})")
        if k > 1 and np.any(np.diff(np.sort(index, axis=1), axis=1) == 0):
            raise ValueError("teacher_topk indices repeat a class within a row")
        if np.any(np.isnan(logprobs)) or np.any(logprobs > 0):
            raise ValueError("teacher_topk logprobs must be log-probabilities (<= 0, not NaN)")
        with np.errstate(under="ignore"):
            mass = np.exp(logprobs).sum(axis=1)
        if np.any(mass > 1 + 1e-6 * max(k, 1)):
            row = int(np.argmax(mass))
            raise ValueError(
                f"teacher_topk logprobs of row {row} hold a mass of {mass[row]!r} "
                f"> 1: they must be the teacher's full-vocabulary "
                f"log-probabilities, not renormalised over the top k"
            )
        return index, logprobs, tail_mass(mass, k)

    def rows(self, x):
        return as_rows(x, self.compute)

    def run(self, kind, coef, grad, want_lse=False):
        """The driver over every row: (per-row losses, per-row (lse_s, lse_t) or None)."""
        n = self.n_rows
        row_loss = np.empty(n, dtype=np.float64)
        lse = np.empty((n, 2), dtype=np.float64) if want_lse else None
        teacher = self.t if self.t is not None else self.s
        half_s = half_rows(self.s)
        scale = 1.0 / self.temperature
        if half_s is not None:
            half_t = half_rows(teacher)
            _kernels.divergence_rows_half(
                half_s[0],
                half_t[0],
                half_s[1],
                scale,
                _KINDS[kind],
                self.beta,
                self.skip,
                coef,
                row_loss,
                lse,
                grad,
                self.threads,
            )
        else:
            _kernels.divergence_rows(
                self.rows(self.s),
                self.rows(teacher),
                scale,
                _KINDS[kind],
                self.beta,
                self.skip,
                coef,
                row_loss,
                lse,
                grad,
                self.threads,
            )
        return row_loss, lse

    def student_topk(self):
        """The student's logits at the teacher's top-k classes, (N, k) float64."""
        rows = self.s.reshape(self.n_rows, self.n_classes)
        return np.take_along_axis(rows, self.topk[0], axis=1).astype(np.float64)

    def sparse_losses(self, lse_s, s_k):
        """Against a top-k teacher, over k + 1 outcomes (the k classes and the tail): per-row
        divergence, and the gradient's parts (the factor of the student's probability
        outside the top k, the values at the top k; see reference.divergence)."""
        lp_k, p_tail = self.topk[1], self.topk[2]
        lq_k = s_k / self.temperature - lse_s[:, None]
        with np.errstate(under="ignore"):
            q_k_total = np.exp(lq_k).sum(axis=1)
        # The student's tail mass, 1 - sum of its top-k probabilities: as -expm1 of their
        # log-sum-exp, exact where that mass is small; it loses relative accuracy only where
        # the tail holds less than about 1e-16 of the mass (then P's tail is that small too,
        # or the divergence is dominated by it being near 0)
        with np.errstate(divide="ignore", under="ignore"):
            lq_tail = np.log(tail_mass(q_k_total, s_k.shape[1], -np.expm1(np.log(q_k_total))))
            lp = np.concatenate([lp_k, np.log(p_tail)[:, None]], axis=1)
        lq = np.concatenate([lq_k, lq_tail[:, None]], axis=1)
        loss, g = _reference.divergence._bucket_terms(lp, lq, self.kind, self.beta)
        with np.errstate(invalid="ignore", under="ignore"):
            q = np.exp(lq)
            qg = np.where(q > 0, q * g, 0.0).sum(axis=1)
        return loss, _reference.divergence._bucket_grad(self.kind, lp, lq, g, qg)

    def reduce(self, row_loss):
        per_row = row_loss * self.factor
        if self.skip is not None:
            per_row = np.where(self.skip.view(bool), 0.0, per_row)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.reduction == "none":
                return per_row.astype(self.s.dtype).reshape(self.batch)
            total = np.sum(per_row)
            if self.reduction == "sum":
                return self.s.dtype.type(total)
            return self.s.dtype.type(total / np.float64(self.kept))


def _loss(
    kind,
    student,
    teacher,
    teacher_topk,
    temperature,
    beta,
    reduction,
    ignore_mask,
    scale_by_temperature_squared,
    num_threads,
    check,
    name,
):
    problem = _Problem(
        kind,
        student,
        teacher,
        teacher_topk,
        temperature,
        beta,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        num_threads,
    )
    if problem.topk is None:
        row_loss, _ = problem.run(problem.kind, None, None)
    else:
        row_loss, lse = problem.run("softmax", None, None, want_lse=True)
        row_loss = problem.sparse_losses(lse[:, 0], problem.student_topk())[0]
    result = problem.reduce(row_loss)
    if check_enabled(check):
        expected = _reference_call(
            name,
            problem,
            student,
            teacher,
            teacher_topk,
            beta,
            scale_by_temperature_squared,
            ignore_mask,
            None,
        )
        _check.compare(name, result, expected, problem.s.dtype)
    return result


def _reference_call(
    name,
    problem,
    student,
    teacher,
    teacher_topk,
    beta,
    scaled,
    ignore_mask,
    grad_output,
    with_grad=False,
):
    """The reference's result for the same call (its *_with_grad with with_grad)."""
    fn = getattr(_reference, name + ("_with_grad" if with_grad else ""))
    options = dict(
        teacher_topk=teacher_topk,
        temperature=problem.temperature,
        reduction=problem.reduction,
        ignore_mask=ignore_mask,
        scale_by_temperature_squared=scaled,
    )
    if name.startswith("kl"):
        options["direction"] = problem.kind if problem.kind in ("forward", "reverse") else "forward"
    if name.startswith("js"):
        options["beta"] = beta
    if with_grad:
        options["grad_output"] = grad_output
    return fn(student, teacher, **options)


def _with_grad(
    kind,
    student,
    teacher,
    teacher_topk,
    temperature,
    beta,
    reduction,
    ignore_mask,
    scale_by_temperature_squared,
    grad_output,
    out,
    num_threads,
    check,
    name,
):
    problem = _Problem(
        kind,
        student,
        teacher,
        teacher_topk,
        temperature,
        beta,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        num_threads,
    )
    factor, row_factors = grad_output_factors(grad_output, problem.reduction, problem.batch)
    checking = check_enabled(check)
    if checking:  # copied now: the gradient may overwrite the student's logits
        saved = problem.s.copy()
    s = problem.s
    grad = gradient_array(
        out,
        s,
        teacher=problem.t,
        teacher_topk=None if problem.topk is None else problem.topk[0],
        grad_output=grad_output,
    )
    n, c = problem.n_rows, problem.n_classes
    if problem.reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = float(np.float64(factor) / np.float64(problem.kept))
    # d loss / d student = (d loss / d scaled logits) / T, the loss times factor T**2 or 1
    coef = np.full(n, factor * problem.factor / problem.temperature)
    if row_factors is not None:
        coef *= row_factors
    half = half_rows(s) is not None
    dest = None if half else writable_rows(grad, problem.rows(s))
    buffer = dest if dest is not None else np.empty((n, c), dtype=problem.compute)
    if problem.topk is None:
        row_loss, _ = problem.run(problem.kind, coef, buffer)
    else:
        index = problem.topk[0]
        s_k = problem.student_topk()  # read before the gradient may overwrite the student
        _, lse = problem.run("softmax", None, None, want_lse=True)
        row_loss, (tail, top) = problem.sparse_losses(lse[:, 0], s_k)
        # outside the top k: coef q_i tail; at the top k: coef top
        problem.run("softmax", coef * tail, buffer)
        with np.errstate(over="ignore"):
            np.put_along_axis(buffer, index, (coef[:, None] * top).astype(buffer.dtype), axis=1)
        if problem.skip is not None:
            buffer[problem.skip.view(bool)] = 0
    if dest is None and n and c:
        store(grad, buffer, problem.threads)
    loss = problem.reduce(row_loss)
    if checking:
        expected_loss, expected_grad = _reference_call(
            name,
            problem,
            saved,
            teacher,
            teacher_topk,
            beta,
            scale_by_temperature_squared,
            ignore_mask,
            grad_output,
            with_grad=True,
        )
        _check.compare(f"{name} (loss)", loss, expected_loss, s.dtype)
        _check.compare(f"{name} (gradient)", grad, expected_grad, s.dtype)
    return loss, grad


_COMMON_DOC = """
    Parameters
    ----------
    student : array_like, shape (..., C)
        The student's logits (float16, bfloat16, float32 or float64); classes on the last axis.
    teacher : array_like, shape (..., C), optional
        The teacher's logits, in the student's dtype. Give this or ``teacher_topk``.
    teacher_topk : (indices, logprobs), each of shape (..., k), optional
        A sparse teacher: its k most likely classes and their log-probabilities under the
        teacher's full softmax at the distillation temperature (``log_softmax(t / T)``
        gathered, *not* renormalised over the k: a mass above 1 is refused). The rest of the
        teacher's mass, ``1 - sum(exp(logprobs))``, is kept as one tail outcome, compared with
        the student's mass outside the same k classes: the divergence is taken over k + 1
        outcomes, and nothing is renormalised. The temperature applies to the student only.
    temperature : float, optional
        T > 0: both sets of logits are divided by it.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"``: the mean over the rows not ignored (PyTorch's ``"batchmean"``; NaN if
        every row is ignored). ``"sum"``; ``"none"``: one value per row, shape ``(...)``.
    ignore_mask : array_like of bool, shape (...), optional
        Rows where True contribute 0 (and a zero gradient) and do not count in the mean.
    scale_by_temperature_squared : bool, optional
        Multiply each row's value (and so the gradient) by ``T**2`` (default True), the usual
        distillation scaling that keeps the gradient's size independent of T.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`.
    check : bool or None, optional
        Recompute with :mod:`xent.reference` and raise :class:`xent.CheckError` on
        disagreement (``None``: only if ``XENT_CHECK=1``).
"""

_GRAD_DOC = """
    grad_output : scalar or array_like, optional
        The gradient flowing into the loss: one value per row for ``reduction="none"``, else a
        scalar (default 1).
    out : numpy.ndarray, optional
        Where to write the gradient: the student's shape and dtype; may be ``student`` itself
        (then nothing of size N x C is allocated), never the teacher.

    Returns
    -------
    loss : scalar or numpy.ndarray
        As the function without ``_with_grad`` returns it.
    grad : numpy.ndarray
        d loss / d student, in the student's dtype (``out`` if given): PyTorch's autograd
        gradient of the same expression.
"""


def _check_direction(direction):
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    return direction


@shares_cpus
def kl_divergence_logits(
    student,
    teacher=None,
    *,
    teacher_topk=None,
    temperature=1.0,
    direction="forward",
    reduction="mean",
    ignore_mask=None,
    scale_by_temperature_squared=True,
    num_threads=None,
    check=None,
):
    return _loss(
        _check_direction(direction),
        student,
        teacher,
        teacher_topk,
        temperature,
        0.5,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        num_threads,
        check,
        "kl_divergence_logits",
    )


@shares_cpus
def kl_divergence_logits_with_grad(
    student,
    teacher=None,
    *,
    teacher_topk=None,
    temperature=1.0,
    direction="forward",
    reduction="mean",
    ignore_mask=None,
    scale_by_temperature_squared=True,
    grad_output=None,
    out=None,
    num_threads=None,
    check=None,
):
    return _with_grad(
        _check_direction(direction),
        student,
        teacher,
        teacher_topk,
        temperature,
        0.5,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        grad_output,
        out,
        num_threads,
        check,
        "kl_divergence_logits",
    )


@shares_cpus
def js_divergence_logits(
    student,
    teacher=None,
    *,
    teacher_topk=None,
    temperature=1.0,
    beta=0.5,
    reduction="mean",
    ignore_mask=None,
    scale_by_temperature_squared=True,
    num_threads=None,
    check=None,
):
    return _loss(
        "jsd",
        student,
        teacher,
        teacher_topk,
        temperature,
        beta,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        num_threads,
        check,
        "js_divergence_logits",
    )


@shares_cpus
def js_divergence_logits_with_grad(
    student,
    teacher=None,
    *,
    teacher_topk=None,
    temperature=1.0,
    beta=0.5,
    reduction="mean",
    ignore_mask=None,
    scale_by_temperature_squared=True,
    grad_output=None,
    out=None,
    num_threads=None,
    check=None,
):
    return _with_grad(
        "jsd",
        student,
        teacher,
        teacher_topk,
        temperature,
        beta,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        grad_output,
        out,
        num_threads,
        check,
        "js_divergence_logits",
    )


@shares_cpus
def tv_distance_logits(
    student,
    teacher=None,
    *,
    teacher_topk=None,
    temperature=1.0,
    reduction="mean",
    ignore_mask=None,
    scale_by_temperature_squared=True,
    num_threads=None,
    check=None,
):
    return _loss(
        "tv",
        student,
        teacher,
        teacher_topk,
        temperature,
        0.5,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        num_threads,
        check,
        "tv_distance_logits",
    )


@shares_cpus
def tv_distance_logits_with_grad(
    student,
    teacher=None,
    *,
    teacher_topk=None,
    temperature=1.0,
    reduction="mean",
    ignore_mask=None,
    scale_by_temperature_squared=True,
    grad_output=None,
    out=None,
    num_threads=None,
    check=None,
):
    return _with_grad(
        "tv",
        student,
        teacher,
        teacher_topk,
        temperature,
        0.5,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        grad_output,
        out,
        num_threads,
        check,
        "tv_distance_logits",
    )


kl_divergence_logits.__doc__ = (
    """KL divergence between the softmaxes of a teacher's and a
    student's logits at temperature T: ``direction="forward"`` is ``KL(P || Q)`` (P the
    teacher's, Q the student's: PyTorch's ``F.kl_div(F.log_softmax(s / T, -1),
    F.log_softmax(t / T, -1), log_target=True)`` summed over classes), ``"reverse"`` is
    ``KL(Q || P)``. One read of each row pair.
"""
    + _COMMON_DOC
    + """
    Returns
    -------
    scalar or numpy.ndarray
        In the student's dtype; times ``T**2`` unless switched off.

    Notes
    -----
    A student close to its teacher has a KL of second order in the logits' differences,
    which ``E_P[log P] - E_P[log Q]`` would bury under the rounding of the two log-sum-exps.
    xent sums second-order terms of ``r = (p - q) / T - c`` instead (``KL = a + log1p(b - a)``
    with ``a = E_P[r]``, ``b = E_P[expm1(-r) + r]``), so a KL of 1e-11 keeps about 1e-6
    relative accuracy in float32 and 1e-14 in float64 (see the distillation guide).

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> round(float(xent.kl_divergence_logits(student, teacher)), 4)
    0.5811
    >>> np.round(xent.kl_divergence_logits(student, teacher, reduction="none"), 4)
    array([0.4323, 0.7299])

    ``direction="reverse"`` is ``KL(student || teacher)``, another number:

    >>> np.round(xent.kl_divergence_logits(student, teacher, direction="reverse",
    ...                                    reduction="none"), 4)
    array([0.4107, 0.9957])
"""
)
kl_divergence_logits_with_grad.__doc__ = (
    """:func:`kl_divergence_logits` and its gradient with
    respect to the student's logits.
"""
    + _COMMON_DOC
    + _GRAD_DOC
    + """
    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> loss, grad = xent.kl_divergence_logits_with_grad(student, teacher)
    >>> round(float(loss), 4)
    0.5811
    >>> np.round(grad, 4)
    array([[-0.217 ,  0.1919,  0.0251],
           [-0.2103, -0.0773,  0.2876]])

    An ignored row gets a zero gradient and leaves the mean (over one row here):

    >>> loss, grad = xent.kl_divergence_logits_with_grad(student, teacher,
    ...                                                  ignore_mask=np.array([False, True]))
    >>> round(float(loss), 4)
    0.4323
    >>> np.round(grad, 4)
    array([[-0.434 ,  0.3838,  0.0502],
           [ 0.    ,  0.    ,  0.    ]])
"""
)
js_divergence_logits.__doc__ = (
    """Generalised Jensen-Shannon divergence (Liger-Kernel's):
    ``beta KL(P || M) + (1 - beta) KL(Q || M)``, ``M = beta P + (1 - beta) Q``, P the teacher's
    and Q the student's softmax at temperature T. ``beta = 0.5`` is the symmetric JSD;
    ``beta = 0`` gives forward KL and ``beta = 1`` reverse KL (the limits, as Liger-Kernel).
"""
    + _COMMON_DOC
    + """    beta : float in [0, 1], optional
        The teacher's weight in the mixture M (default 0.5).

    Returns
    -------
    scalar or numpy.ndarray
        In the student's dtype; times ``T**2`` unless switched off.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> round(float(xent.js_divergence_logits(student, teacher)), 4)
    0.147
    >>> np.round(xent.js_divergence_logits(student, teacher, reduction="none"), 4)
    array([0.1012, 0.1928])

    ``beta=0`` is the forward KL divergence:

    >>> np.round(xent.js_divergence_logits(student, teacher, beta=0.0, reduction="none"), 4)
    array([0.4323, 0.7299])
"""
)
js_divergence_logits_with_grad.__doc__ = (
    """:func:`js_divergence_logits` and its gradient
    with respect to the student's logits.
"""
    + _COMMON_DOC
    + _GRAD_DOC
    + """
    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> loss, grad = xent.js_divergence_logits_with_grad(student, teacher)
    >>> round(float(loss), 4)
    0.147
    >>> np.round(grad, 4)
    array([[-0.0443,  0.041 ,  0.0033],
           [-0.0483, -0.0178,  0.066 ]])

    An ignored row gets a zero gradient and leaves the mean (over one row here):

    >>> loss, grad = xent.js_divergence_logits_with_grad(student, teacher,
    ...                                                  ignore_mask=np.array([False, True]))
    >>> round(float(loss), 4)
    0.1012
    >>> np.round(grad, 4)
    array([[-0.0885,  0.0819,  0.0066],
           [ 0.    ,  0.    ,  0.    ]])
"""
)
tv_distance_logits.__doc__ = (
    """Total variation distance ``sum |P - Q| / 2`` between the
    teacher's and the student's softmax at temperature T (its gradient takes sign(0) = 0).
"""
    + _COMMON_DOC
    + """
    Returns
    -------
    scalar or numpy.ndarray
        In the student's dtype; times ``T**2`` unless switched off.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> round(float(xent.tv_distance_logits(student, teacher)), 4)
    0.5046
    >>> np.round(xent.tv_distance_logits(student, teacher, reduction="none"), 4)
    array([0.434 , 0.5752])

    At ``temperature=2`` both softmaxes are flatter, and the value is times ``T**2 = 4``:

    >>> round(float(xent.tv_distance_logits(student, teacher, temperature=2.0)), 4)
    1.0698
"""
)
tv_distance_logits_with_grad.__doc__ = (
    """:func:`tv_distance_logits` and its gradient with
    respect to the student's logits.
"""
    + _COMMON_DOC
    + _GRAD_DOC
    + """
    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> loss, grad = xent.tv_distance_logits_with_grad(student, teacher)
    >>> round(float(loss), 4)
    0.5046
    >>> np.round(grad, 4)
    array([[-0.0889,  0.0727,  0.0162],
           [-0.0814, -0.0299,  0.1113]])

    An ignored row gets a zero gradient and leaves the mean (over one row here):

    >>> loss, grad = xent.tv_distance_logits_with_grad(student, teacher,
    ...                                                ignore_mask=np.array([False, True]))
    >>> round(float(loss), 4)
    0.434
    >>> np.round(grad, 4)
    array([[-0.1778,  0.1453,  0.0324],
           [ 0.    ,  0.    ,  0.    ]])
"""
)
