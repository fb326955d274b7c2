"""Losses over classes: :func:`cross_entropy`, :func:`nll_loss` and their modules, each loss a
custom operator (``torch.ops.xent.cross_entropy``, ``torch.ops.xent.nll_loss``)."""

import torch

import xent as _xent

from ._common import (
    FLOAT_DTYPES,
    FLOAT_NAMES,
    LossOp,
    call_op,
    check_class_weight,
    check_index_target,
    check_saved,
    class_last,
    class_problem,
    empty_grad,
    legacy_reduction,
    loop_vmap,
    as_numpy,
    operand_array,
    refuse_double_backward,
    scaled,
    to_tensor,
    wants_grad,
)


# ---- cross_entropy -------------------------------------------------------------------------------


def _grad_like(logits, class_dim):
    """An empty tensor shaped and strided as xent's gradient: the class dim innermost."""
    moved = torch.movedim(logits, class_dim, -1) if class_dim != logits.ndim - 1 else logits
    empty = torch.empty(moved.shape, dtype=logits.dtype)
    return torch.movedim(empty, -1, class_dim) if class_dim != logits.ndim - 1 else empty


def _cross_entropy_impl(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    num_threads: int | None,
    with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    class_dim = 1 if input.ndim >= 2 else 0
    x = class_last(input, class_dim)
    t = (
        operand_array(torch.movedim(target, class_dim, -1))
        if target.dtype.is_floating_point
        else as_numpy(target)
    )
    options = dict(
        weight=operand_array(weight),
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        num_threads=num_threads,
    )
    if with_grad:
        loss, grad = _xent.cross_entropy_with_grad(x, t, **options)
        grad = torch.movedim(to_tensor(grad, input.dtype), -1, class_dim)
    else:
        loss, grad = _xent.cross_entropy(x, t, **options), empty_grad(input.dtype)
    return to_tensor(loss, input.dtype), grad


_cross_entropy_op = torch.library.custom_op("xent::cross_entropy", mutates_args=())(
    _cross_entropy_impl
)


@_cross_entropy_op.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, num_threads, with_grad):
    class_dim = 1 if input.ndim >= 2 else 0
    batch = input.shape[:class_dim] + input.shape[class_dim + 1 :]
    loss = input.new_empty(batch if reduction == "none" else ())
    return loss, _grad_like(input, class_dim) if with_grad else input.new_empty(0)


def _cross_entropy_setup(ctx, inputs, output):
    input, target, weight, ignore_index, reduction, label_smoothing, _, _ = inputs
    ctx.class_dim = 1 if input.ndim >= 2 else 0
    ctx.input_shape = input.shape
    ctx.reduction, ctx.label_smoothing = reduction, label_smoothing
    ctx.n_rows = input.numel() // max(input.shape[ctx.class_dim], 1)
    ctx.weight_dtype = None if weight is None else weight.dtype
    probabilities = target.dtype.is_floating_point
    keep = probabilities and (target.requires_grad or (weight is not None and weight.requires_grad))
    ctx.save_for_backward(
        output[1], input if keep else None, target if keep else None, weight if keep else None
    )


def _cross_entropy_backward(ctx, grad_loss, _):
    refuse_double_backward("cross_entropy")
    grad, logits, target, weight = ctx.saved_tensors
    class_dim, reduction = ctx.class_dim, ctx.reduction
    # the incoming gradient per row, broadcast along the class dim
    row_scale = grad_loss.unsqueeze(class_dim) if reduction == "none" else grad_loss
    grad_input = grad_target = grad_weight = None
    if ctx.needs_input_grad[0]:
        check_saved(grad, ctx.input_shape, "cross_entropy")
        grad_input = scaled(grad, grad_loss, row_scale)
    if logits is not None:
        # loss per row = -sum_j w_j q_j log_softmax(x)_j, q = (1 - eps) p + eps / C
        compute = torch.promote_types(logits.dtype, torch.float32)
        log_p = torch.log_softmax(logits.detach().to(compute), class_dim)
        scale = row_scale / ctx.n_rows if reduction == "mean" else row_scale
        eps = ctx.label_smoothing
        if ctx.needs_input_grad[1]:
            grad_target = log_p * (scale * -(1.0 - eps))
            if weight is not None:
                grad_target = grad_target * _along(weight, class_dim, logits.ndim)
            grad_target = grad_target.to(target.dtype)
        if ctx.needs_input_grad[2]:
            n_classes = logits.shape[class_dim]
            q = target.detach().to(compute) * (1.0 - eps) + eps / n_classes
            # A probability of exactly 0 contributes 0, even against a -inf logit.
            terms = torch.where(q == 0, torch.zeros((), dtype=compute), q * log_p) * -scale
            other_dims = [d for d in range(logits.ndim) if d != class_dim]
            grad_weight = terms.sum(dim=other_dims) if other_dims else terms
            grad_weight = grad_weight.to(ctx.weight_dtype)
    return grad_input, grad_target, grad_weight, None, None, None, None, None


def _along(weight, class_dim, ndim):
    """The (C,) weight shaped to broadcast along the class dim of an ndim-d tensor."""
    return weight.detach().reshape((-1,) + (1,) * (ndim - 1 - class_dim))


_cross_entropy_op.register_autograd(_cross_entropy_backward, setup_context=_cross_entropy_setup)
_CROSS_ENTROPY = LossOp(
    _cross_entropy_op, _cross_entropy_impl, _cross_entropy_setup, _cross_entropy_backward, True
)
_cross_entropy_op.register_vmap(loop_vmap(_cross_entropy_op, 2))


def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    num_threads=None,
):
    """Cross-entropy of CPU tensors by xent, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : torch.Tensor
        Unnormalised scores of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``: classes
        on dim 1 (dim 0 of a 1-d input), as in PyTorch. float16, bfloat16, float32 or
        float64 (the half types are computed in float32 and returned in their dtype). Must be
        on the CPU.
    target : torch.Tensor
        Class indices of the input's shape without the class dim (an integer dtype; PyTorch
        takes int64 or uint8), or class probabilities of the input's shape (a floating
        dtype). A probability target that requires grad gets its gradient.
    weight : torch.Tensor, optional
        Per-class weights, shape ``(C,)``. Differentiable with probability targets only; with
        class indices a weight that requires grad is refused, as in PyTorch.
    ignore_index : int, optional
        Class-index rows with this target contribute neither to the loss nor to the mean's
        denominator, and get a zero gradient (default -100). Must be negative with
        probability targets.
    reduction : {"mean", "sum", "none"}, optional
        As in PyTorch: ``"none"`` returns one loss per row (the input's shape without the
        class dim); ``"mean"`` divides the sum by the total weight of the non-ignored rows
        (class indices) or by the number of rows (probabilities).
    label_smoothing : float, optional
        In [0, 1]: the target is mixed with the uniform distribution, as in PyTorch.
    num_threads : int or None, optional
        Threads xent uses; see :func:`xent.get_num_threads`.

    Returns
    -------
    torch.Tensor
        The loss in the input's dtype: 0-d for ``"mean"`` and ``"sum"``, the batch shape for
        ``"none"``. It has a ``grad_fn`` when the input (or a probability target, or with one
        the weight) requires grad.

    Raises
    ------
    TypeError
        A non-tensor argument, a non-strided (sparse) tensor, an input dtype other than
        float16/bfloat16/float32/float64, a target dtype that is neither integer nor
        floating.
    ValueError
        A tensor that is not on the CPU (CUDA, meta, ...), mismatched shapes, bad options, a
        class-index target with a weight that requires grad.
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``.

    Notes
    -----
    The forward pass calls :func:`xent.cross_entropy_with_grad` when the input requires grad
    (and grad mode is on), which computes the loss and ``d loss / d input`` together; the
    backward pass then costs one multiplication by the incoming gradient, or nothing for
    ``loss.backward()`` on a reduced loss. Otherwise it calls :func:`xent.cross_entropy` and
    keeps nothing. The saved gradient takes the input's size in memory until the backward.

    First derivatives only: a backward pass through this loss with ``create_graph=True``
    (the first step of a double backward: gradient penalties, Hessian-vector products,
    meta-learning) raises ``RuntimeError`` rather than return a gradient whose own
    derivative would silently be taken as zero; use ``torch.nn.functional.cross_entropy``
    there.

    The gradient of an ``(N, C, d1, ...)`` input is a view with the class dim innermost in
    memory (xent's layout), not a contiguous tensor. Where xent's values differ from
    PyTorch's (non-finite logits, a zero probability against a -inf logit) see
    :func:`xent.cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3]], requires_grad=True)
    >>> target = torch.tensor([0, 1])
    >>> loss = xent.torch.cross_entropy(logits, target)
    >>> round(loss.item(), 4)
    0.3391
    >>> loss.backward()
    >>> logits.grad
    tensor([[-0.1072,  0.0876,  0.0196],
            [ 0.0797, -0.1770,  0.0973]])

    The same numbers as PyTorch's own loss:

    >>> round(torch.nn.functional.cross_entropy(logits, target).item(), 4)
    0.3391
    >>> xent.torch.cross_entropy(logits.detach(), target, reduction="none")
    tensor([0.2413, 0.4368])
    """
    class_dim = class_problem(input, target)
    n_classes = input.shape[class_dim]
    probabilities = target.dtype.is_floating_point
    if probabilities:
        if target.dtype not in FLOAT_DTYPES:
            raise TypeError(f"probability target must be {FLOAT_NAMES}, got {target.dtype}")
        if target.shape != input.shape:
            raise ValueError(
                f"probability target has shape {tuple(target.shape)}, expected "
                f"the input's shape {tuple(input.shape)} (for class indices "
                f"use an integer dtype)"
            )
    else:
        check_index_target(input, target, class_dim)
    check_class_weight(weight, n_classes)
    if wants_grad(weight) and not probabilities:
        raise ValueError(
            "the cross-entropy of class indices is not differentiable with "
            "respect to weight (as in PyTorch): pass weight.detach()"
        )
    loss, _ = call_op(
        _CROSS_ENTROPY,
        "cross_entropy",
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        num_threads,
        wants_grad(input),
    )
    return loss


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` computed by xent on CPU tensors.

    Parameters
    ----------
    weight : torch.Tensor, optional
        Per-class weights, shape ``(C,)``; registered as a buffer named ``weight``, as in
        PyTorch.
    ignore_index : int, optional
        Class-index target value whose rows are ignored (default -100).
    reduction : {"mean", "sum", "none"}, optional
        How the per-row losses are reduced (default ``"mean"``).
    label_smoothing : float, optional
        In [0, 1]: mixing of the target with the uniform distribution.
    num_threads : int or None, optional
        Threads xent uses; see :func:`xent.get_num_threads`.

    See Also
    --------
    cross_entropy : the function this module calls, with the shapes, dtypes and errors.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> criterion = xent.torch.CrossEntropyLoss(label_smoothing=0.1)
    >>> logits = torch.randn(4, 3, requires_grad=True)
    >>> criterion(logits, torch.tensor([0, 2, 1, 2])).backward()
    >>> logits.grad.shape
    torch.Size([4, 3])
    """

    def __init__(
        self,
        weight=None,
        ignore_index=-100,
        reduction="mean",
        label_smoothing=0.0,
        num_threads=None,
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of ``input`` against ``target``: see :func:`cross_entropy`."""
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            num_threads=self.num_threads,
        )

    def extra_repr(self):
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, num_threads={self.num_threads}"
        )


# ---- nll_loss --------------------------------------------------------------------------------


def _nll_loss_impl(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    num_threads: int | None,
) -> torch.Tensor:
    class_dim = 1 if input.ndim >= 2 else 0
    loss = _xent.nll_loss(
        class_last(input, class_dim),
        as_numpy(target),
        weight=operand_array(weight),
        ignore_index=ignore_index,
        reduction=reduction,
        num_threads=num_threads,
    )
    return to_tensor(loss, input.dtype)


_nll_loss_op = torch.library.custom_op("xent::nll_loss", mutates_args=())(_nll_loss_impl)


@_nll_loss_op.register_fake
def _(input, target, weight, ignore_index, reduction, num_threads):
    class_dim = 1 if input.ndim >= 2 else 0
    batch = input.shape[:class_dim] + input.shape[class_dim + 1 :]
    return input.new_empty(batch if reduction == "none" else ())


def _nll_setup(ctx, inputs, output):
    input, target, weight, ignore_index, reduction, _ = inputs
    ctx.class_dim = 1 if input.ndim >= 2 else 0
    ctx.ignore_index, ctx.reduction = ignore_index, reduction
    ctx.input_shape, ctx.input_dtype = input.shape, input.dtype
    ctx.save_for_backward(target, weight)


def _nll_backward(ctx, grad_loss):
    # d loss / d input is -w[t] (times the incoming gradient, over the total weight for a
    # mean) at each row's target class, 0 elsewhere: O(N) work, built here from the labels.
    refuse_double_backward("nll_loss")
    target, weight = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None, None, None
    compute = torch.promote_types(ctx.input_dtype, torch.float32)
    labels = target.long()
    valid = labels != ctx.ignore_index
    safe = torch.where(valid, labels, 0)
    row_weight = (
        weight.detach().to(compute)[safe]
        if weight is not None
        else torch.ones(labels.shape, dtype=compute)
    )
    row_weight = torch.where(valid, row_weight, 0)
    g = grad_loss.to(compute)
    if ctx.reduction == "mean":
        # all rows ignored: a NaN loss and a zero gradient, as PyTorch's
        coefficient = torch.where(valid, -g * row_weight / row_weight.sum(), 0)
    else:
        coefficient = -g * row_weight
    grad = torch.zeros(ctx.input_shape, dtype=ctx.input_dtype)
    grad.scatter_(
        ctx.class_dim,
        safe.unsqueeze(ctx.class_dim),
        coefficient.unsqueeze(ctx.class_dim).to(ctx.input_dtype),
    )
    return grad, None, None, None, None, None


_nll_loss_op.register_autograd(_nll_backward, setup_context=_nll_setup)
_NLL_LOSS = LossOp(_nll_loss_op, _nll_loss_impl, _nll_setup, _nll_backward, False)
_nll_loss_op.register_vmap(loop_vmap(_nll_loss_op))


def nll_loss(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    num_threads=None,
):
    """Negative log-likelihood of CPU tensors by xent, as ``torch.nn.functional.nll_loss``.

    Parameters
    ----------
    input : torch.Tensor
        Log-probabilities of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``, classes
        on dim 1 (dim 0 of a 1-d input); float16, bfloat16, float32 or float64, on the CPU.
    target : torch.Tensor
        Class indices, the input's shape without the class dim, an integer dtype.
    weight : torch.Tensor, optional
        Per-class weights, shape ``(C,)`` (not differentiable, as in PyTorch).
    size_average, reduce : bool, optional
        PyTorch's deprecated spelling of ``reduction``; as in PyTorch, they override it.
    ignore_index : int, optional
        Rows with this target count 0 and are left out of the mean (default -100).
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the total weight of the non-ignored rows (NaN if none).
    num_threads : int or None, optional
        Threads xent uses; see :func:`xent.get_num_threads`.

    Returns
    -------
    torch.Tensor
        ``-weight[t] * input[t]`` per row, or its reduction, in the input's dtype.

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3]])
    >>> log_probs = torch.log_softmax(logits, dim=1)
    >>> xent.torch.nll_loss(log_probs, torch.tensor([0, 1]), reduction="none")
    tensor([0.2413, 0.4368])
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    class_dim = class_problem(input, target)
    check_index_target(input, target, class_dim)
    check_class_weight(weight, input.shape[class_dim])
    if wants_grad(weight):
        raise ValueError(
            "nll_loss is not differentiable with respect to weight (as in "
            "PyTorch): pass weight.detach()"
        )
    return call_op(
        _NLL_LOSS, "nll_loss", input, target, weight, ignore_index, reduction, num_threads
    )


class NLLLoss(torch.nn.Module):
    """``torch.nn.NLLLoss`` computed by xent on CPU tensors; see :func:`nll_loss`.

    Parameters
    ----------
    weight : torch.Tensor, optional
        Per-class weights, shape ``(C,)``, registered as the buffer ``weight``.
    size_average, reduce : bool, optional
        Deprecated, as in PyTorch.
    ignore_index : int, optional
        Target value whose rows are ignored (default -100).
    reduction : {"mean", "sum", "none"}, optional
        How the per-row losses are reduced.
    num_threads : int or None, optional
        Threads xent uses.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> log_probs = torch.log_softmax(torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3]]), dim=1)
    >>> criterion = xent.torch.NLLLoss()
    >>> round(criterion(log_probs, torch.tensor([0, 1])).item(), 4)
    0.3391
    """

    def __init__(
        self,
        weight=None,
        size_average=None,
        ignore_index=-100,
        reduce=None,
        reduction="mean",
        num_threads=None,
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = legacy_reduction(size_average, reduce, reduction)
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of log-probabilities ``input`` against class indices ``target``."""
        return nll_loss(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            num_threads=self.num_threads,
        )

    def extra_repr(self):
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"num_threads={self.num_threads}"
        )
