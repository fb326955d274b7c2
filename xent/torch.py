"""PyTorch adapter: xent's cross-entropy kernels behind ``torch.nn.functional.cross_entropy``.

:func:`cross_entropy` and :class:`CrossEntropyLoss` take PyTorch's arguments and PyTorch's
layout (classes on dim 1 of an input of shape ``(N, C, d1, ...)``) and return what
``torch.nn.functional.cross_entropy`` returns, computed by :func:`xent.cross_entropy_with_grad`
on CPU tensors. The loss and its gradient come from one pass over the logits; the gradient is
kept for the backward pass only when the input requires it.

The tensors are handed to xent without a copy: ``tensor.detach().numpy()`` shares the
tensor's memory, and xent reads any row stride in place. Only an input whose class dim is not
contiguous in memory (``(N, C, d1, ...)`` in the default contiguous format, unlike
``(N, C)`` or a ``torch.channels_last`` tensor) is copied once, by xent, with the class dim
last.

This module needs PyTorch; ``import xent`` never imports it.

Examples
--------
>>> import torch
>>> import xent.torch
>>> logits = torch.randn(8, 5, requires_grad=True)
>>> labels = torch.randint(0, 5, (8,))
>>> loss = xent.torch.cross_entropy(logits, labels, label_smoothing=0.1)
>>> loss.backward()
>>> expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
>>> bool(torch.allclose(loss, expected))
True
>>> logits.grad.shape
torch.Size([8, 5])
>>> criterion = xent.torch.CrossEntropyLoss(reduction="sum", num_threads=1)
>>> criterion(torch.randn(2, 5, 3), torch.randint(0, 5, (2, 3))).shape
torch.Size([])
"""

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError("xent.torch needs PyTorch: pip install torch") from exc

import numpy as np
from torch.autograd.function import once_differentiable

import xent as _xent

__all__ = ["CrossEntropyLoss", "cross_entropy"]

_FLOAT_DTYPES = (torch.float16, torch.float32, torch.float64)
_INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


# ---- checking and conversion -----------------------------------------------------------------

def _check_tensor(value, name):
    """Refuse what xent cannot read in place: non-tensors, non-CPU and non-strided tensors."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.device.type != "cpu":
        raise ValueError(f"xent.torch computes on CPU tensors only; {name} is on device "
                         f"{value.device} (move it with .cpu(), or use "
                         f"torch.nn.functional.cross_entropy)")
    if value.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {value.layout}")


def _numpy(tensor):
    """The tensor's memory as a numpy array (never a copy)."""
    return tensor.detach().numpy()


def _class_last(tensor, class_dim):
    """``tensor`` with its class dim moved last (a view), as numpy."""
    return _numpy(torch.movedim(tensor, class_dim, -1) if class_dim != tensor.ndim - 1
                  else tensor)


_NO_DOUBLE_BACKWARD = (
    "xent.torch.cross_entropy is differentiable once only (its backward is "
    "once_differentiable): a backward pass with create_graph=True, for a second derivative, "
    "is not supported; use torch.nn.functional.cross_entropy for that")


# ---- the autograd function -------------------------------------------------------------------

class _CrossEntropy(torch.autograd.Function):
    """xent's cross-entropy as an autograd node: the gradient is computed in the forward pass.

    Inputs are (logits, target, weight) in PyTorch's layout plus the options; the forward
    returns the loss and, when the logits need a gradient, saves d loss / d logits for the
    backward, which only scales it by the incoming gradient. Gradients with respect to
    probability targets and to the class weights (probability targets only, as in PyTorch)
    are formed in the backward from the saved logits. ``once_differentiable``: the backward
    is not itself differentiable, and refuses to run with ``create_graph=True``.
    """

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, reduction, label_smoothing,
                num_threads, needs):
        needs_input, needs_target, needs_weight = needs
        class_dim = 1 if logits.ndim >= 2 else 0
        x = _class_last(logits, class_dim)
        probabilities = target.dtype.is_floating_point
        t = _class_last(target, class_dim) if probabilities else _numpy(target)
        w = None if weight is None else _numpy(weight)
        options = dict(weight=w, ignore_index=ignore_index, reduction=reduction,
                       label_smoothing=label_smoothing, num_threads=num_threads)
        if needs_input:
            loss, grad = _xent.cross_entropy_with_grad(x, t, **options)
            grad = torch.movedim(torch.from_numpy(grad), -1, class_dim)
        else:
            loss, grad = _xent.cross_entropy(x, t, **options), None
        ctx.class_dim, ctx.reduction, ctx.label_smoothing = class_dim, reduction, label_smoothing
        ctx.n_rows = x.size // x.shape[-1]
        ctx.needs = needs
        ctx.weight_dtype = None if weight is None else weight.dtype
        keep_logits = needs_target or needs_weight
        ctx.save_for_backward(grad, logits if keep_logits else None,
                              target if keep_logits else None,
                              weight if needs_target else None)
        return torch.from_numpy(np.asarray(loss))

    @staticmethod
    def backward(ctx, grad_loss):
        if torch.is_grad_enabled():
            # create_graph=True. once_differentiable alone would hand back gradients that
            # look constant (or whose error node hangs off no input), so a second derivative
            # would silently lack this node's term: refuse instead.
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        return _backward(ctx, grad_loss)


@once_differentiable
def _backward(ctx, grad_loss):
    grad, logits, target, weight = ctx.saved_tensors
    needs_input, needs_target, needs_weight = ctx.needs
    class_dim, reduction = ctx.class_dim, ctx.reduction
    # The incoming gradient per row, broadcast along the class dim.
    row_scale = grad_loss.unsqueeze(class_dim) if reduction == "none" else grad_loss
    grad_input = grad_target = grad_weight = None
    if needs_input:
        if reduction != "none" and grad_loss.item() == 1.0:
            grad_input = grad  # loss.backward(): the saved gradient is the answer
        else:
            grad_input = grad * row_scale
    if needs_target or needs_weight:
        # loss per row = -sum_j w_j q_j log_softmax(x)_j, q = (1 - eps) p + eps / C
        log_p = torch.movedim(
            torch.from_numpy(_xent.log_softmax(_class_last(logits, class_dim))), -1,
            class_dim)
        scale = row_scale / ctx.n_rows if reduction == "mean" else row_scale
        eps = ctx.label_smoothing
        if needs_target:
            grad_target = log_p * (scale * -(1.0 - eps))
            if weight is not None:
                grad_target = grad_target * _along(weight, class_dim, logits.ndim)
            grad_target = grad_target.to(target.dtype)
        if needs_weight:
            n_classes = logits.shape[class_dim]
            q = target.detach().to(log_p.dtype) * (1.0 - eps) + eps / n_classes
            # A probability of exactly 0 contributes 0, even against a -inf logit.
            terms = torch.where(q == 0, torch.zeros((), dtype=log_p.dtype),
                                q * log_p) * -scale
            other_dims = [d for d in range(logits.ndim) if d != class_dim]
            grad_weight = (terms.sum(dim=other_dims) if other_dims else terms)
            grad_weight = grad_weight.to(ctx.weight_dtype)
    return grad_input, grad_target, grad_weight, None, None, None, None, None


def _along(weight, class_dim, ndim):
    """The (C,) weight shaped to broadcast along the class dim of an ndim-d tensor."""
    return weight.detach().reshape((-1,) + (1,) * (ndim - 1 - class_dim))


# ---- public API ------------------------------------------------------------------------------

def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, num_threads=None):
    """Cross-entropy of CPU tensors by xent, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : torch.Tensor
        Unnormalised scores of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``: classes
        on dim 1 (dim 0 of a 1-d input), as in PyTorch. float32 or float64 (float16 is
        computed in float32 and returned as float16). Must be on the CPU.
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
        float16/float32/float64, a target dtype that is neither integer nor floating.
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

    The backward is marked ``once_differentiable``: first derivatives only. A backward pass
    through this loss with ``create_graph=True`` (the first step of a double backward:
    gradient penalties, Hessian-vector products, meta-learning) raises ``RuntimeError``
    rather than return a gradient whose own derivative would silently be taken as zero; use
    ``torch.nn.functional.cross_entropy`` there.

    The gradient of an ``(N, C, d1, ...)`` input is a view with the class dim innermost in
    memory (xent's layout), not a contiguous tensor. Where xent's values differ from
    PyTorch's (non-finite logits, a zero probability against a -inf logit) see
    :func:`xent.cross_entropy`.
    """
    _check_tensor(input, "input")
    _check_tensor(target, "target")
    if input.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"input must be float16, float32 or float64, got {input.dtype}")
    if input.ndim == 0:
        raise ValueError("input must have at least one dimension (the classes), got a 0-d "
                         "tensor")
    class_dim = 1 if input.ndim >= 2 else 0
    n_classes = input.shape[class_dim]
    if n_classes == 0:
        raise ValueError(f"input has shape {tuple(input.shape)}: its class dim {class_dim} "
                         f"is empty")
    batch_shape = input.shape[:class_dim] + input.shape[class_dim + 1:]
    probabilities = target.dtype.is_floating_point
    if probabilities:
        if target.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"probability target must be float16, float32 or float64, got "
                            f"{target.dtype}")
        if target.shape != input.shape:
            raise ValueError(f"probability target has shape {tuple(target.shape)}, expected "
                             f"the input's shape {tuple(input.shape)} (for class indices "
                             f"use an integer dtype)")
    else:
        if target.dtype not in _INDEX_DTYPES:
            raise TypeError(f"target must hold class indices (an integer dtype) or "
                            f"probabilities (a floating dtype), got {target.dtype}")
        if target.shape != batch_shape:
            raise ValueError(f"target has shape {tuple(target.shape)}, expected "
                             f"{tuple(batch_shape)}: class indices have the shape of input "
                             f"{tuple(input.shape)} without its class dim {class_dim}")
    if weight is not None:
        _check_tensor(weight, "weight")
        if weight.shape != (n_classes,):
            raise ValueError(f"weight has shape {tuple(weight.shape)}, expected "
                             f"({n_classes},): one weight per class")
    grad_mode = torch.is_grad_enabled()
    needs = (grad_mode and input.requires_grad,
             grad_mode and probabilities and target.requires_grad,
             grad_mode and weight is not None and weight.requires_grad)
    if needs[2] and not probabilities:
        raise ValueError("the cross-entropy of class indices is not differentiable with "
                         "respect to weight (as in PyTorch): pass weight.detach()")
    return _CrossEntropy.apply(input, target, weight, ignore_index, reduction,
                               label_smoothing, num_threads, needs)


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

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                 num_threads=None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of ``input`` against ``target``: see :func:`cross_entropy`.

        Parameters
        ----------
        input : torch.Tensor
            Scores of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``, on the CPU.
        target : torch.Tensor
            Class indices (the input's shape without dim 1) or probabilities (its shape).

        Returns
        -------
        torch.Tensor
            The loss, 0-d unless ``reduction="none"``.
        """
        return cross_entropy(input, target, weight=self.weight,
                             ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing,
                             num_threads=self.num_threads)

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}, num_threads={self.num_threads}")
