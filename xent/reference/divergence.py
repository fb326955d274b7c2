"""Reference divergences between a student's and a teacher's logits (distillation).

Plain float64 NumPy over whole arrays: the oracle for :mod:`xent.divergence`. With
``P = softmax(teacher / T)`` (the teacher) and ``Q = softmax(student / T)`` (the student):

* forward KL: ``KL(P || Q)``; reverse KL: ``KL(Q || P)``;
* generalised Jensen-Shannon, as Liger-Kernel defines it:
  ``beta KL(P || M) + (1 - beta) KL(Q || M)`` with ``M = beta P + (1 - beta) Q``; at the
  limits ``beta = 0`` gives forward KL and ``beta = 1`` reverse KL;
* total variation: ``sum |P - Q| / 2``.

Each row's value is multiplied by ``T**2`` when ``scale_by_temperature_squared`` (the
default). A sparse teacher ``teacher_topk=(indices, logprobs)`` is compared over k + 1
outcomes: its k classes and one tail bucket holding the rest of each distribution.
"""

import numpy as np

from ._common import reduce_losses
from ._multiclass import log_softmax

__all__ = [
    "js_divergence_logits",
    "js_divergence_logits_with_grad",
    "kl_divergence_logits",
    "kl_divergence_logits_with_grad",
    "tv_distance_logits",
    "tv_distance_logits_with_grad",
]


def _bucket_terms(lp, lq, kind, beta):
    """Per-row divergence over the last axis, and G = d divergence / d Q per outcome."""
    p, q = np.exp(lp), np.exp(lq)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "forward":
            loss = np.where(p > 0, p * (lp - lq), 0.0).sum(-1)
            g = np.where(p > 0, -p / q, 0.0)
        elif kind == "reverse":
            loss = np.where(q > 0, q * (lq - lp), 0.0).sum(-1)
            g = np.where(q > 0, lq - lp, 0.0)
        elif kind == "jsd":
            lm = np.logaddexp(np.log(beta) + lp, np.log1p(-beta) + lq)
            loss = (
                np.where(p > 0, beta * p * (lp - lm), 0.0)
                + np.where(q > 0, (1 - beta) * q * (lq - lm), 0.0)
            ).sum(-1)
            g = np.where(q > 0, (1 - beta) * (lq - lm), 0.0)
        else:  # total variation
            loss = 0.5 * np.abs(p - q).sum(-1)
            g = 0.5 * np.sign(q - p)
    return loss, g


def _bucket_grad(kind, lp, lq, g, qg):
    """The gradient's parts over k + 1 outcomes (the last the tail): (the factor multiplying
    the student's probability outside the top k, the gradient at the top k), from
    d loss / d a_i = q_i (G_o(i) - sum_o Q_o G_o). Forward KL's G = -P / Q is written out
    (q_i - P_i, q_i (1 - P_tail / Q_tail)): Q may underflow to 0 where P does not."""
    q, p = np.exp(lq), np.exp(lp)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "forward":
            tail = np.where(q[:, -1] > 0, 1 - p[:, -1] / q[:, -1], 0.0)
            return tail, q[:, :-1] - p[:, :-1]
        return g[:, -1] - qg, q[:, :-1] * (g[:, :-1] - qg[:, None])


def _divergence(
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
    want_grad,
):
    if kind == "jsd" and beta == 0:
        kind = "forward"
    elif kind == "jsd" and beta == 1:
        kind = "reverse"
    s = np.asarray(student, dtype=np.float64)
    batch, c = s.shape[:-1], s.shape[-1]
    s = s.reshape(-1, c)
    n = s.shape[0]
    lq_full = log_softmax(s / temperature)
    if teacher_topk is None:
        lp = log_softmax(np.asarray(teacher, dtype=np.float64).reshape(n, c) / temperature)
        lq = lq_full
    else:
        index = np.asarray(teacher_topk[0]).reshape(n, -1).astype(np.int64)
        lp_k = np.asarray(teacher_topk[1], dtype=np.float64).reshape(n, -1)
        lq_k = np.take_along_axis(lq_full, index, -1)
        outside = np.ones((n, c), dtype=bool)
        np.put_along_axis(outside, index, False, -1)
        q_tail = np.where(outside, np.exp(lq_full), 0.0).sum(-1)
        # within the rounding error of the sum of k probabilities, the tail is empty
        p_tail = 1 - np.exp(lp_k).sum(-1)
        p_tail = np.where(p_tail > 4 * lp_k.shape[1] * np.finfo(np.float64).eps, p_tail, 0.0)
        with np.errstate(divide="ignore"):
            lp = np.concatenate([lp_k, np.log(p_tail)[:, None]], -1)
            lq = np.concatenate([lq_k, np.log(q_tail)[:, None]], -1)
    loss, g = _bucket_terms(lp, lq, kind, beta)
    factor = temperature**2 if scale_by_temperature_squared else 1.0
    loss = loss * factor
    skip = (
        np.zeros(n, dtype=bool)
        if ignore_mask is None
        else np.asarray(ignore_mask, dtype=bool).reshape(n)
    )
    loss = np.where(skip, 0.0, loss)
    kept = int(np.count_nonzero(~skip))
    result = reduce_losses(loss.reshape(batch), kept, reduction)
    if not want_grad:
        return result
    # d loss / d logits: Q_i (G_o(i) - sum_o Q_o G_o), over 1 / T of the scaled logits
    with np.errstate(invalid="ignore"):
        qg = np.where(np.exp(lq) > 0, np.exp(lq) * g, 0.0).sum(-1)
    q = np.exp(lq_full)
    if teacher_topk is None:
        grad = q - np.exp(lp) if kind == "forward" else q * (g - qg[:, None])
    else:
        tail, top = _bucket_grad(kind, lp, lq, g, qg)
        grad = q * tail[:, None]
        np.put_along_axis(grad, index, top, -1)
    if grad_output is None:
        grad_output = 1.0
    row_scale = (
        np.broadcast_to(np.asarray(grad_output, dtype=np.float64), batch).reshape(n)
        if reduction == "none"
        else np.full(n, float(grad_output))
    )
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            row_scale = row_scale / kept
    row_scale = np.where(skip, 0.0, row_scale * factor / temperature)
    grad = np.where(skip[:, None], 0.0, grad * row_scale[:, None])
    return result, grad.reshape(*batch, c)


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
):
    """KL divergence of softmax(teacher / T) and softmax(student / T): ``direction="forward"``
    is ``KL(teacher || student)``, ``"reverse"`` is ``KL(student || teacher)``.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> np.round(reference.kl_divergence_logits(student, teacher, reduction="none"), 4)
    array([0.4323, 0.7299])
    >>> np.round(
    ...     reference.kl_divergence_logits(student, teacher, direction="reverse", reduction="none"),
    ...     4,
    ... )
    array([0.4107, 0.9957])
    """
    return _divergence(
        direction,
        student,
        teacher,
        teacher_topk,
        temperature,
        0.5,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        None,
        False,
    )


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
):
    """(loss, d loss / d student) of :func:`kl_divergence_logits`.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> loss, grad = reference.kl_divergence_logits_with_grad(student, teacher)
    >>> round(float(loss), 4)
    0.5811
    >>> np.round(grad, 4)
    array([[-0.217 ,  0.1919,  0.0251],
           [-0.2103, -0.0773,  0.2876]])

    A row where ``ignore_mask`` is True gets a zero gradient and leaves the mean:

    >>> loss, grad = reference.kl_divergence_logits_with_grad(
    ...     student, teacher, ignore_mask=np.array([False, True])
    ... )
    >>> np.round(grad[1], 4)
    array([0., 0., 0.])
    """
    return _divergence(
        direction,
        student,
        teacher,
        teacher_topk,
        temperature,
        0.5,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        grad_output,
        True,
    )


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
):
    """Generalised Jensen-Shannon divergence (Liger-Kernel's): ``beta KL(P || M) + (1 - beta)
    KL(Q || M)``, ``M = beta P + (1 - beta) Q``, P the teacher's, Q the student's.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> np.round(reference.js_divergence_logits(student, teacher, reduction="none"), 4)
    array([0.1012, 0.1928])

    ``beta=0`` is the forward KL divergence:

    >>> np.round(reference.js_divergence_logits(student, teacher, beta=0.0, reduction="none"), 4)
    array([0.4323, 0.7299])
    """
    return _divergence(
        "jsd",
        student,
        teacher,
        teacher_topk,
        temperature,
        beta,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        None,
        False,
    )


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
):
    """(loss, d loss / d student) of :func:`js_divergence_logits`.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> loss, grad = reference.js_divergence_logits_with_grad(student, teacher)
    >>> round(float(loss), 4)
    0.147
    >>> np.round(grad, 4)
    array([[-0.0443,  0.041 ,  0.0033],
           [-0.0483, -0.0178,  0.066 ]])

    A row where ``ignore_mask`` is True gets a zero gradient and leaves the mean:

    >>> loss, grad = reference.js_divergence_logits_with_grad(
    ...     student, teacher, ignore_mask=np.array([False, True])
    ... )
    >>> np.round(grad[1], 4)
    array([0., 0., 0.])
    """
    return _divergence(
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
        True,
    )


def tv_distance_logits(
    student,
    teacher=None,
    *,
    teacher_topk=None,
    temperature=1.0,
    reduction="mean",
    ignore_mask=None,
    scale_by_temperature_squared=True,
):
    """Total variation distance ``sum |P - Q| / 2`` of the two softmaxes.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> round(float(reference.tv_distance_logits(student, teacher)), 4)
    0.5046

    At ``temperature=2`` both softmaxes are flatter, and the value is times ``T**2 = 4``:

    >>> round(float(reference.tv_distance_logits(student, teacher, temperature=2.0)), 4)
    1.0698
    """
    return _divergence(
        "tv",
        student,
        teacher,
        teacher_topk,
        temperature,
        0.5,
        reduction,
        ignore_mask,
        scale_by_temperature_squared,
        None,
        False,
    )


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
):
    """(loss, d loss / d student) of :func:`tv_distance_logits`.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    >>> teacher = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    >>> loss, grad = reference.tv_distance_logits_with_grad(student, teacher)
    >>> round(float(loss), 4)
    0.5046
    >>> np.round(grad, 4)
    array([[-0.0889,  0.0727,  0.0162],
           [-0.0814, -0.0299,  0.1113]])

    A row where ``ignore_mask`` is True gets a zero gradient and leaves the mean:

    >>> loss, grad = reference.tv_distance_logits_with_grad(
    ...     student, teacher, ignore_mask=np.array([False, True])
    ... )
    >>> np.round(grad[1], 4)
    array([0., 0., 0.])
    """
    return _divergence(
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
        True,
    )
