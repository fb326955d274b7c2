"""The fused output layer and loss: :func:`linear_cross_entropy` and its module, custom operators
``torch.ops.xent.linear_cross_entropy`` and ``torch.ops.xent.linear_cross_entropy_backward``."""

import torch

import xent as _xent

from ._common import (
    LossOp,
    call_op,
    check_float,
    check_index_target,
    check_reduction,
    check_tensor,
    empty_grad,
    loop_vmap,
    as_numpy,
    refuse_double_backward,
    scaled,
    to_tensor,
    wants_grad,
)
from ._multiclass import cross_entropy


def _linear_arrays(input, linear_weight, target, linear_bias):
    return (
        as_numpy(input),
        as_numpy(linear_weight),
        as_numpy(target),
        None if linear_bias is None else as_numpy(linear_bias),
    )


def _linear_grads(grads, input, linear_weight, linear_bias):
    """xent's (grad_hidden, grad_weight[, grad_bias]) as tensors of the inputs' dtypes."""
    grad_bias = (
        to_tensor(grads[2], linear_bias.dtype)
        if linear_bias is not None
        else empty_grad(input.dtype)
    )
    return to_tensor(grads[0], input.dtype), to_tensor(grads[1], linear_weight.dtype), grad_bias


def _linear_impl(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    softcap: float | None,
    num_threads: int | None,
    with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # with_grad (reduced losses only): the gradients for an incoming gradient of 1, from the
    # same tiled pass as the loss; the backward scales them.
    h, w, t, b = _linear_arrays(input, linear_weight, target, linear_bias)
    options = dict(
        bias=b,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        softcap=softcap,
        num_threads=num_threads,
    )
    if with_grad:
        loss, *grads = _xent.linear_cross_entropy_with_grad(h, w, t, **options)
        grads = _linear_grads(grads, input, linear_weight, linear_bias)
    else:
        loss = _xent.linear_cross_entropy(h, w, t, **options)
        grads = tuple(empty_grad(input.dtype) for _ in range(3))  # distinct: no aliasing
    return (to_tensor(loss, input.dtype), *grads)


_linear_op = torch.library.custom_op("xent::linear_cross_entropy", mutates_args=())(_linear_impl)


@_linear_op.register_fake
def _(
    input,
    linear_weight,
    target,
    linear_bias,
    ignore_index,
    reduction,
    label_smoothing,
    softcap,
    num_threads,
    with_grad,
):
    loss = input.new_empty(input.shape[:-1] if reduction == "none" else ())
    if not with_grad:
        return (loss,) + tuple(input.new_empty(0) for _ in range(3))
    return (
        loss,
        input.new_empty(input.shape),
        linear_weight.new_empty(linear_weight.shape),
        linear_bias.new_empty(linear_bias.shape) if linear_bias is not None else input.new_empty(0),
    )


@torch.library.custom_op("xent::linear_cross_entropy_backward", mutates_args=())
def _linear_backward_op(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    softcap: float | None,
    num_threads: int | None,
    grad_output: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # reduction="none": each row's incoming gradient is known only now, so the tiled pass
    # runs again with it (the logits are recomputed, never stored).
    h, w, t, b = _linear_arrays(input, linear_weight, target, linear_bias)
    _, *grads = _xent.linear_cross_entropy_with_grad(
        h,
        w,
        t,
        bias=b,
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=label_smoothing,
        softcap=softcap,
        num_threads=num_threads,
        grad_output=grad_output.detach().to(torch.float64).numpy(),
    )
    return _linear_grads(grads, input, linear_weight, linear_bias)


@_linear_backward_op.register_fake
def _(
    input,
    linear_weight,
    target,
    linear_bias,
    ignore_index,
    label_smoothing,
    softcap,
    num_threads,
    grad_output,
):
    return (
        input.new_empty(input.shape),
        linear_weight.new_empty(linear_weight.shape),
        linear_bias.new_empty(linear_bias.shape) if linear_bias is not None else input.new_empty(0),
    )


def _linear_setup(ctx, inputs, output):
    (
        input,
        linear_weight,
        target,
        linear_bias,
        ignore_index,
        reduction,
        label_smoothing,
        softcap,
        num_threads,
        _,
    ) = inputs
    ctx.reduction = reduction
    ctx.options = (ignore_index, label_smoothing, softcap, num_threads)
    if reduction == "none":
        ctx.save_for_backward(input, linear_weight, target, linear_bias)
    else:
        ctx.save_for_backward(*output[1:])


def _linear_backward(ctx, grad_loss, *_):
    refuse_double_backward("linear_cross_entropy")
    if ctx.reduction == "none":
        input, linear_weight, target, linear_bias = ctx.saved_tensors
        grads = _linear_backward_op(
            input, linear_weight, target, linear_bias, *ctx.options, grad_loss
        )
    else:
        grads = [scaled(g, grad_loss, grad_loss) for g in ctx.saved_tensors]
    needs = ctx.needs_input_grad
    return (
        grads[0] if needs[0] else None,
        grads[1] if needs[1] else None,
        None,
        grads[2] if needs[3] else None,
        None,
        None,
        None,
        None,
        None,
        None,
    )


_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup)
_LINEAR = LossOp(_linear_op, _linear_impl, _linear_setup, _linear_backward, True)
_linear_op.register_vmap(loop_vmap(_linear_op, 4))
_linear_backward_op.register_vmap(loop_vmap(_linear_backward_op, 3))


def _capped(logits, softcap):
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def linear_cross_entropy(
    input,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    reduction="mean",
    ignore_index=None,
    label_smoothing=0.0,
    options=None,
    softcap=None,
    num_threads=None,
):
    """``F.cross_entropy(F.linear(input, linear_weight, linear_bias), target)`` without the
    logits, as PyTorch's ``F.linear_cross_entropy``, plus Gemma's ``softcap``.

    Parameters
    ----------
    input : torch.Tensor
        Hidden states, ``(H,)`` or ``(N, H)`` (more leading dims are accepted and act as
        batch dims); float16, bfloat16, float32 or float64, on the CPU.
    linear_weight : torch.Tensor
        The output layer's weight, ``(V, H)`` as ``nn.Linear(H, V).weight`` stores it, the
        input's dtype. ``(V, d1, ..., dK, H)`` (K-dimensional loss) is computed through the
        logits.
    target : torch.Tensor
        Class indices in ``[0, V)`` of the input's shape without its last dim (an integer
        dtype). Probability targets are computed through the logits.
    linear_bias : torch.Tensor, optional
        ``(V,)``, added to the logits.
    weight : torch.Tensor, optional
        Per-class weights, ``(V,)``: computed through the logits (xent's fused head has no
        class weights).
    reduction : {"mean", "sum", "none"}, optional
        As in PyTorch.
    ignore_index : int or None, optional
        Target value whose rows are ignored; None means -100, as in PyTorch.
    label_smoothing : float, optional
        In [0, 1], as in PyTorch.
    options : torch.nn.LinearCrossEntropyOptions or None, optional
        PyTorch's chunking options: accepted and unused (xent always tiles).
    softcap : float or None, optional
        Cap the logits as Gemma does: ``softcap * tanh(logits / softcap)``.
    num_threads : int or None, optional
        Threads xent uses.

    Returns
    -------
    torch.Tensor
        The loss in the input's dtype: 0-d, or one per row for ``reduction="none"``.

    Notes
    -----
    Memory stays O(N + tile x V) through the backward: for ``"mean"`` and ``"sum"`` the
    forward pass computes the gradients of the input, the weight and the bias in the same
    tiled pass as the loss (:func:`xent.linear_cross_entropy_with_grad`), and the backward
    scales them; for ``"none"`` the backward runs the tiled pass again with each row's
    incoming gradient. The N x V logits are never stored. First derivatives only.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> generator = torch.Generator().manual_seed(0)
    >>> hidden = torch.randn(4, 8, generator=generator, requires_grad=True)
    >>> lm_head = torch.randn(10, 8, generator=generator)
    >>> target = torch.tensor([1, 3, 5, 7])
    >>> loss = xent.torch.linear_cross_entropy(hidden, lm_head, target)
    >>> reference = torch.nn.functional.cross_entropy(hidden @ lm_head.T, target)
    >>> torch.allclose(loss, reference)
    True
    >>> loss.backward()
    >>> hidden.grad.shape
    torch.Size([4, 8])
    """
    check_float(input, "input")
    check_float(linear_weight, "linear_weight")
    check_tensor(target, "target")
    if linear_bias is not None:
        check_float(linear_bias, "linear_bias")
    if weight is not None:
        check_tensor(weight, "weight")
    if input.ndim == 0:
        raise ValueError("input must have at least one dimension (the features), got a 0-d tensor")
    if linear_weight.ndim < 2 or linear_weight.shape[-1] != input.shape[-1]:
        raise ValueError(
            f"linear_weight has shape {tuple(linear_weight.shape)} and input "
            f"{tuple(input.shape)}: expected (V, {input.shape[-1]})"
        )
    for other, label in ((linear_weight, "linear_weight"), (linear_bias, "linear_bias")):
        if other is not None and other.dtype != input.dtype:
            raise TypeError(
                f"{label} has dtype {other.dtype}, input {input.dtype}: they "
                f"must match, as in torch.nn.functional.linear"
            )
    check_reduction(reduction)
    ignore_index = -100 if ignore_index is None else ignore_index
    fused = (
        linear_weight.ndim == 2
        and weight is None
        and not target.dtype.is_floating_point
        and (linear_bias is None or linear_bias.ndim == 1)
    )
    if not fused:
        # What xent's tiled head does not cover goes through the logits, still by xent.
        logits = torch.nn.functional.linear(
            input,
            linear_weight.flatten(0, -2),
            None if linear_bias is None else linear_bias.flatten(),
        )
        if linear_weight.ndim > 2:
            logits = logits.unflatten(-1, linear_weight.shape[:-1])
        return cross_entropy(
            _capped(logits, softcap),
            target,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            num_threads=num_threads,
        )
    check_index_target(input, target, input.ndim - 1)
    with_grad = reduction != "none" and any(
        wants_grad(t) for t in (input, linear_weight, linear_bias)
    )
    loss, *_ = call_op(
        _LINEAR,
        "linear_cross_entropy",
        input,
        linear_weight,
        target,
        linear_bias,
        ignore_index,
        reduction,
        label_smoothing,
        softcap,
        num_threads,
        with_grad,
    )
    return loss


class LinearCrossEntropyLoss(torch.nn.Module):
    """``torch.nn.LinearCrossEntropyLoss`` computed by xent: an output layer and its loss.

    Holds ``self.linear = torch.nn.Linear(in_features, num_classes, bias=bias)`` and returns
    :func:`linear_cross_entropy` of its weight (and bias).

    Parameters
    ----------
    in_features : int
        Size of each input row (H).
    num_classes : int
        Number of classes (V).
    bias : bool, optional
        Whether the layer has a bias (default False, as in PyTorch).
    device, dtype : optional
        Of the layer's parameters.
    reduction, weight, ignore_index, label_smoothing, softcap, num_threads : optional
        As :func:`linear_cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> head = xent.torch.LinearCrossEntropyLoss(8, 10)
    >>> hidden = torch.randn(4, 8, requires_grad=True)
    >>> loss = head(hidden, torch.tensor([1, 3, 5, 7]))
    >>> loss.backward()
    >>> head.linear.weight.grad.shape, hidden.grad.shape
    (torch.Size([10, 8]), torch.Size([4, 8]))
    """

    def __init__(
        self,
        in_features,
        num_classes,
        *,
        bias=False,
        device=None,
        dtype=None,
        reduction="mean",
        weight=None,
        ignore_index=None,
        label_smoothing=0.0,
        softcap=None,
        num_threads=None,
    ):
        super().__init__()
        self.linear = torch.nn.Linear(
            in_features, num_classes, bias=bias, device=device, dtype=dtype
        )
        self.register_buffer("weight", weight)
        self.reduction, self.ignore_index = reduction, ignore_index
        self.label_smoothing, self.softcap = label_smoothing, softcap
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of ``self.linear(input)`` against ``target``."""
        return linear_cross_entropy(
            input,
            self.linear.weight,
            target,
            linear_bias=self.linear.bias,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            softcap=self.softcap,
            num_threads=self.num_threads,
        )

    def extra_repr(self):
        return (
            f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, softcap={self.softcap}"
        )
