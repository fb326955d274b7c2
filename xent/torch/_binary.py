"""Binary losses: :func:`binary_cross_entropy`, :func:`binary_cross_entropy_with_logits` and
their modules, one custom operator for both (``torch.ops.xent.binary_cross_entropy``)."""

import torch

import xent as _xent

from ._common import (
    FLOAT_DTYPES,
    FLOAT_NAMES,
    LossOp,
    call_op,
    check_float,
    check_reduction,
    check_saved,
    check_tensor,
    empty_grad,
    legacy_reduction,
    loop_vmap,
    operand_array,
    refuse_double_backward,
    scaled,
    to_tensor,
    wants_grad,
)


def _binary_impl(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
    logits: bool,
    reduction: str,
    num_threads: int | None,
    with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    # with_grad: d loss / d input for an incoming gradient of 1 (per element for "none"),
    # which the backward scales by the real one: the loss is elementwise.
    options = dict(weight=operand_array(weight), reduction=reduction, num_threads=num_threads)
    if logits:
        options["pos_weight"] = operand_array(pos_weight)
    x, y = operand_array(input), operand_array(target)
    if with_grad:
        function = (
            _xent.binary_cross_entropy_with_logits_with_grad
            if logits
            else _xent.binary_cross_entropy_with_grad
        )
        loss, grad = function(x, y, **options)
        grad = to_tensor(grad, input.dtype)
    else:
        function = _xent.binary_cross_entropy_with_logits if logits else _xent.binary_cross_entropy
        loss, grad = function(x, y, **options), empty_grad(input.dtype)
    return to_tensor(loss, input.dtype), grad


_binary_op = torch.library.custom_op("xent::binary_cross_entropy", mutates_args=())(_binary_impl)


@_binary_op.register_fake
def _(input, target, weight, pos_weight, logits, reduction, num_threads, with_grad):
    loss = input.new_empty(input.shape if reduction == "none" else ())
    grad = input.new_empty(input.shape) if with_grad else input.new_empty(0)
    return loss, grad


def _binary_setup(ctx, inputs, output):
    input, target, weight, pos_weight, logits, reduction, _, _ = inputs
    ctx.logits, ctx.reduction, ctx.numel = logits, reduction, input.numel()
    ctx.input_shape, ctx.target_dtype = input.shape, target.dtype
    keep = target.requires_grad
    ctx.save_for_backward(
        output[1], input if keep else None, weight if keep else None, pos_weight if keep else None
    )


def _binary_backward(ctx, grad_loss, _):
    refuse_double_backward("binary_cross_entropy" + ("_with_logits" if ctx.logits else ""))
    grad, input, weight, pos_weight = ctx.saved_tensors
    grad_input = grad_target = None
    if ctx.needs_input_grad[0]:
        check_saved(grad, ctx.input_shape, "binary_cross_entropy")
        grad_input = scaled(grad, grad_loss, grad_loss)
    if ctx.needs_input_grad[1]:
        # d loss / d target, from the saved input (PyTorch's formulas, clamps included)
        compute = torch.promote_types(input.dtype, torch.float32)
        x = input.detach().to(compute)
        if ctx.logits:
            slope = -x
            if pos_weight is not None:
                positive = pos_weight.detach().to(compute) - 1
                slope = slope - positive * torch.nn.functional.logsigmoid(x)
        else:
            slope = torch.log1p(-x).clamp(min=-100) - torch.log(x).clamp(min=-100)
        if weight is not None:
            slope = slope * weight.detach().to(compute)
        scale = grad_loss.to(compute) / ctx.numel if ctx.reduction == "mean" else grad_loss
        grad_target = (slope * scale).to(ctx.target_dtype)
        grad_target = grad_target.expand(input.shape)
    return grad_input, grad_target, None, None, None, None, None, None


_binary_op.register_autograd(_binary_backward, setup_context=_binary_setup)
_BINARY = LossOp(_binary_op, _binary_impl, _binary_setup, _binary_backward, True)
_binary_op.register_vmap(loop_vmap(_binary_op, 2))


def _binary(input, target, weight, pos_weight, reduction, num_threads, logits):
    name = "binary_cross_entropy" + ("_with_logits" if logits else "")
    check_float(input, "input")
    check_tensor(target, "target")
    if target.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"target must be {FLOAT_NAMES} (probabilities in [0, 1]), got {target.dtype}"
        )
    if target.shape != input.shape:
        raise ValueError(
            f"target has shape {tuple(target.shape)}, expected the input's shape "
            f"{tuple(input.shape)}"
        )
    for value, label in ((weight, "weight"), (pos_weight, "pos_weight")):
        if value is not None:
            check_float(value, label)
            if wants_grad(value):
                raise ValueError(
                    f"xent.torch.{name} is not differentiable with respect to "
                    f"{label}: pass {label}.detach()"
                )
    check_reduction(reduction)
    loss, _ = call_op(
        _BINARY,
        name,
        input,
        target,
        weight,
        pos_weight,
        logits,
        reduction,
        num_threads,
        wants_grad(input),
    )
    return loss


def binary_cross_entropy(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", num_threads=None
):
    """Binary cross-entropy of probabilities by xent, as ``F.binary_cross_entropy``.

    Parameters
    ----------
    input : torch.Tensor
        Probabilities in [0, 1], any shape; float16, bfloat16, float32 or float64, on the
        CPU.
    target : torch.Tensor
        Targets in [0, 1], the input's shape, a floating dtype. Differentiable.
    weight : torch.Tensor, optional
        Rescaling weights broadcast to the input's shape (not differentiable).
    size_average, reduce : bool, optional
        Deprecated, as in PyTorch.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the number of elements.
    num_threads : int or None, optional
        Threads xent uses.

    Returns
    -------
    torch.Tensor
        ``-w (y log x + (1 - y) log(1 - x))`` per element, each log clamped at -100 as in
        PyTorch, or its reduction, in the input's dtype.

    Raises
    ------
    ValueError
        An input or target entry outside [0, 1], named by its index; mismatched shapes; a
        tensor not on the CPU.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> probs = torch.tensor([0.8176, 0.3775, 0.9526])
    >>> labels = torch.tensor([1.0, 0.0, 1.0])
    >>> round(xent.torch.binary_cross_entropy(probs, labels).item(), 4)
    0.2413
    """
    return _binary(
        input,
        target,
        weight,
        None,
        legacy_reduction(size_average, reduce, reduction),
        num_threads,
        False,
    )


def binary_cross_entropy_with_logits(
    input,
    target,
    weight=None,
    size_average=None,
    reduce=None,
    reduction="mean",
    pos_weight=None,
    num_threads=None,
):
    """Binary cross-entropy of logits by xent, as ``F.binary_cross_entropy_with_logits``.

    Parameters
    ----------
    input : torch.Tensor
        Logits, any shape; float16, bfloat16, float32 or float64, on the CPU.
    target : torch.Tensor
        Targets in [0, 1], the input's shape, a floating dtype. Differentiable.
    weight : torch.Tensor, optional
        Rescaling weights broadcast to the input's shape (not differentiable).
    size_average, reduce : bool, optional
        Deprecated, as in PyTorch.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the number of elements.
    pos_weight : torch.Tensor, optional
        Weight of the positive term, broadcast to the input's shape (typically one per
        class, on the last dim); not differentiable.
    num_threads : int or None, optional
        Threads xent uses.

    Returns
    -------
    torch.Tensor
        The loss per element or its reduction, in the input's dtype; stable for logits of
        any magnitude.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> logits = torch.tensor([1.5, -0.5, 3.0], requires_grad=True)
    >>> labels = torch.tensor([1.0, 0.0, 1.0])
    >>> loss = xent.torch.binary_cross_entropy_with_logits(logits, labels)
    >>> round(loss.item(), 4)
    0.2414
    >>> loss.backward()
    >>> logits.grad
    tensor([-0.0608,  0.1258, -0.0158])
    """
    return _binary(
        input,
        target,
        weight,
        pos_weight,
        legacy_reduction(size_average, reduce, reduction),
        num_threads,
        True,
    )


class BCELoss(torch.nn.Module):
    """``torch.nn.BCELoss`` computed by xent; see :func:`binary_cross_entropy`.

    Parameters
    ----------
    weight : torch.Tensor, optional
        Rescaling weights, registered as the buffer ``weight``.
    size_average, reduce : bool, optional
        Deprecated, as in PyTorch.
    reduction : {"mean", "sum", "none"}, optional
        How the elementwise losses are reduced.
    num_threads : int or None, optional
        Threads xent uses.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> criterion = xent.torch.BCELoss()
    >>> probs = torch.tensor([0.8176, 0.3775, 0.9526])
    >>> round(criterion(probs, torch.tensor([1.0, 0.0, 1.0])).item(), 4)
    0.2413
    """

    def __init__(
        self, weight=None, size_average=None, reduce=None, reduction="mean", num_threads=None
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.reduction = legacy_reduction(size_average, reduce, reduction)
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of probabilities ``input`` against ``target``."""
        return binary_cross_entropy(
            input,
            target,
            weight=self.weight,
            reduction=self.reduction,
            num_threads=self.num_threads,
        )

    def extra_repr(self):
        return f"reduction={self.reduction!r}, num_threads={self.num_threads}"


class BCEWithLogitsLoss(torch.nn.Module):
    """``torch.nn.BCEWithLogitsLoss`` computed by xent; see
    :func:`binary_cross_entropy_with_logits`.

    Parameters
    ----------
    weight : torch.Tensor, optional
        Rescaling weights, registered as the buffer ``weight``.
    size_average, reduce : bool, optional
        Deprecated, as in PyTorch.
    reduction : {"mean", "sum", "none"}, optional
        How the elementwise losses are reduced.
    pos_weight : torch.Tensor, optional
        Weight of the positive term, registered as the buffer ``pos_weight``.
    num_threads : int or None, optional
        Threads xent uses.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> criterion = xent.torch.BCEWithLogitsLoss(pos_weight=torch.tensor(2.0))
    >>> logits = torch.tensor([1.5, -0.5, 3.0])
    >>> round(criterion(logits, torch.tensor([1.0, 0.0, 1.0])).item(), 4)
    0.3247
    """

    def __init__(
        self,
        weight=None,
        size_average=None,
        reduce=None,
        reduction="mean",
        pos_weight=None,
        num_threads=None,
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = legacy_reduction(size_average, reduce, reduction)
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of logits ``input`` against ``target``."""
        return binary_cross_entropy_with_logits(
            input,
            target,
            weight=self.weight,
            reduction=self.reduction,
            pos_weight=self.pos_weight,
            num_threads=self.num_threads,
        )

    def extra_repr(self):
        return f"reduction={self.reduction!r}, num_threads={self.num_threads}"
