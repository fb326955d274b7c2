"""PyTorch adapter: xent's losses behind PyTorch's functions and modules, for training on CPU.

Each function takes PyTorch's arguments and layout (classes on dim 1 of an input of shape
``(N, C, d1, ...)``) and returns what its namesake in ``torch.nn.functional`` returns,
computed by xent on CPU tensors:

- :func:`cross_entropy`, :class:`CrossEntropyLoss`: ``F.cross_entropy``
- :func:`nll_loss`, :class:`NLLLoss`: ``F.nll_loss``
- :func:`binary_cross_entropy`, :class:`BCELoss`: ``F.binary_cross_entropy``
- :func:`binary_cross_entropy_with_logits`, :class:`BCEWithLogitsLoss`:
  ``F.binary_cross_entropy_with_logits``
- :func:`linear_cross_entropy`, :class:`LinearCrossEntropyLoss`: ``F.linear_cross_entropy``,
  plus ``softcap``

Every loss is a ``torch.library`` custom operator (``torch.ops.xent.*``) with a fake
implementation and an autograd formula, so ``torch.compile(fullgraph=True)`` traces it
without a graph break, and ``torch.func.vmap`` maps it (one call per mapped slice); in plain
eager mode the same implementation and formula run as a ``torch.autograd.Function``, without
the operator's dispatch. The
gradient comes from xent's fused kernels: the forward pass computes the loss and
``d loss / d input`` together when the input requires grad, and the backward pass only
scales the saved gradient by the incoming one. :func:`linear_cross_entropy` never forms the
N x V logits, in the forward pass or the backward.

The tensors are handed to xent without a copy: ``tensor.detach().numpy()`` shares the
tensor's memory, and xent reads any row stride in place. Only an input whose class dim is not
contiguous in memory (``(N, C, d1, ...)`` in the default contiguous format, unlike
``(N, C)`` or a ``torch.channels_last`` tensor) is copied once, by xent, with the class dim
last. float16 and bfloat16 are computed in float32 and returned in the input's dtype;
bfloat16 is read in place through ``ml_dtypes`` when it is installed, else widened to float32
first.

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

from typing import Callable, NamedTuple, Optional

import numpy as np
from torch._subclasses.fake_tensor import is_fake as _is_fake
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode

import xent as _xent

try:  # bfloat16 in place; without it bfloat16 tensors are widened to float32 first
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes is a test dependency
    _ml_dtypes = None

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "NLLLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "linear_cross_entropy",
    "nll_loss",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_FLOAT_NAMES = "float16, bfloat16, float32 or float64"
_INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_REDUCTIONS = ("mean", "sum", "none")


# ---- checking and conversion -----------------------------------------------------------------

def _check_tensor(value, name):
    """Refuse what xent cannot read: non-tensors, non-CPU (meta included), non-strided."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.device.type != "cpu":
        raise ValueError(f"xent.torch computes on CPU tensors only; {name} is on device "
                         f"{value.device} (move it with .cpu(), or use torch.nn.functional's "
                         f"loss there)")
    if value.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {value.layout}")


def _check_float(value, name):
    _check_tensor(value, name)
    if value.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be {_FLOAT_NAMES}, got {value.dtype}")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")


def _numpy(tensor):
    """The tensor's memory as a numpy array: never a copy, except bfloat16 without ml_dtypes
    (widened to float32)."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        if _ml_dtypes is None:
            return tensor.float().numpy()
        # Same item size: a view with the tensor's strides, read as ml_dtypes' bfloat16.
        return tensor.view(torch.int16).numpy().view(_ml_dtypes.bfloat16)
    return tensor.numpy()


def _operand(tensor):
    """A weight (or a binary loss's operand) as numpy: xent takes no bfloat16 array there, so
    a bfloat16 one is widened to float32 (exactly), the precision xent computes bfloat16 in."""
    if tensor is None:
        return None
    if tensor.dtype == torch.bfloat16:
        return tensor.detach().float().numpy()
    return _numpy(tensor)


def _tensor(array, dtype):
    """A numpy result as a tensor of ``dtype`` (shares memory unless a cast is needed)."""
    array = np.asarray(array)
    if _ml_dtypes is not None and array.dtype == _ml_dtypes.bfloat16:
        result = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    else:
        result = torch.from_numpy(array)
    return result if result.dtype == dtype else result.to(dtype)


def _class_last(tensor, class_dim):
    """``tensor`` with its class dim moved last (a view), as numpy."""
    return _numpy(torch.movedim(tensor, class_dim, -1) if class_dim != tensor.ndim - 1
                  else tensor)


def _empty(dtype):
    """The placeholder of a gradient that was not asked for (operators return tensors only)."""
    return torch.empty(0, dtype=dtype)


def _is_plain(tensor):
    """Whether ``tensor`` is a real tensor with values (not traced by compile or func)."""
    return (type(tensor) is torch.Tensor and not _is_fake(tensor)
            and not torch._C._functorch.is_functorch_wrapped_tensor(tensor))


_NO_DOUBLE_BACKWARD = (
    "xent.torch.{name} is differentiable once only (its backward reuses the gradient of the "
    "forward pass): a backward pass with create_graph=True, for a second derivative, is not "
    "supported; use torch.nn.functional.{name} for that")


def _refuse_double_backward(name):
    # create_graph=True: the backward below scales a saved gradient, whose own derivative
    # autograd would silently take as zero. Refuse instead of answering wrongly.
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(_NO_DOUBLE_BACKWARD.format(name=name))


def _loop_vmap(op, n_outputs=None):
    """A vmap rule for ``op``: one call per mapped slice, outputs stacked on dim 0.

    xent's operators see one problem at a time; a mapped dim is a batch of problems (each
    with its own mean), so mapping is a loop. Correct for every operator, not fast.
    ``n_outputs``: the number of tensors ``op`` returns as a tuple, None for one tensor.
    """
    def rule(info, in_dims, *args):
        results = []
        for i in range(info.batch_size):
            call = [a.select(d, i) if d is not None else a for a, d in zip(args, in_dims)]
            result = op(*call)
            results.append((result,) if n_outputs is None else result)
        outputs = tuple(torch.stack([r[k] for r in results])
                        for k in range(n_outputs or 1))
        if n_outputs is None:
            return outputs[0], 0
        return outputs, (0,) * n_outputs
    return rule


_NO_FUNC_TRANSFORMS = (
    "xent.torch.{name} does not support torch.func.grad, jvp, jacrev or jacfwd (PyTorch runs "
    "a custom operator's autograd formula under autograd only): use loss.backward() or "
    "torch.autograd.grad, or torch.nn.functional.{name} inside torch.func transforms "
    "(torch.func.vmap alone works)")


class _Op(NamedTuple):
    """A loss's custom operator and the parts it was made of."""

    op: object  # torch.library.CustomOpDef
    impl: Callable
    setup: Callable
    backward: Callable
    returns_tuple: bool


class _EagerOp(torch.autograd.Function):
    """A custom operator's implementation and autograd formula called directly, on plain
    tensors in eager mode: the same computation as the operator without PyTorch's dispatch of
    a Python custom operator, which costs about 70 us a call (a forward and backward pass of
    64 x 10 logits took 335 us through the operator, 265 us this way)."""

    @staticmethod
    def forward(ctx, *args):
        *inputs, spec = args  # spec last: ctx.needs_input_grad keeps the operator's indices
        outputs = spec.impl(*inputs)
        spec.setup(ctx, tuple(inputs), outputs)
        ctx.spec = spec
        if spec.returns_tuple:
            ctx.mark_non_differentiable(*outputs[1:])  # the saved gradients
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        return (*ctx.spec.backward(ctx, *grads), None)


def _plain_eager(args):
    """Whether the call runs eagerly on plain tensors: no compile, tracing, torch.func
    transform or dispatch mode that needs the registered operator."""
    return (not torch.compiler.is_compiling() and not torch.jit.is_tracing()
            and not torch._C._are_functorch_transforms_active()
            and _current_dispatch_mode() is None
            and all(type(a) is torch.Tensor for a in args if isinstance(a, torch.Tensor)))


def _call(spec, name, *args):
    """The operator of ``spec`` on ``args``, the eager way where it can.

    PyTorch's error for torch.func.grad & co. is made specific.
    """
    if torch.compiler.is_compiling():
        return spec.op(*args)
    if _plain_eager(args):
        return _EagerOp.apply(*args, spec)
    try:
        return spec.op(*args)
    except RuntimeError as exc:
        if "functorch transforms" in str(exc):
            raise RuntimeError(_NO_FUNC_TRANSFORMS.format(name=name)) from None
        raise


def _check_saved(grad, shape, name):
    if grad.shape != shape:  # the placeholder of with_grad=False
        raise RuntimeError(f"torch.ops.xent.{name} was called with with_grad=False, so it has "
                           f"no gradient to give: call xent.torch.{name}, which sets it")


def _scaled(grad, grad_loss, scale):
    """``grad * scale``, or ``grad`` itself for ``loss.backward()`` on a reduced loss."""
    if grad_loss.ndim == 0 and _is_plain(grad_loss) and grad_loss.item() == 1.0:
        return grad  # the saved gradient is the answer: no N x C multiplication
    return grad * scale.to(grad.dtype)


# ---- cross_entropy ---------------------------------------------------------------------------

def _grad_like(logits, class_dim):
    """An empty tensor shaped and strided as xent's gradient: the class dim innermost."""
    moved = torch.movedim(logits, class_dim, -1) if class_dim != logits.ndim - 1 else logits
    empty = torch.empty(moved.shape, dtype=logits.dtype)
    return torch.movedim(empty, -1, class_dim) if class_dim != logits.ndim - 1 else empty


def _cross_entropy_impl(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                        ignore_index: int, reduction: str, label_smoothing: float,
                        num_threads: Optional[int], with_grad: bool
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    class_dim = 1 if input.ndim >= 2 else 0
    x = _class_last(input, class_dim)
    t = (_operand(torch.movedim(target, class_dim, -1)) if target.dtype.is_floating_point
         else _numpy(target))
    options = dict(weight=_operand(weight), ignore_index=ignore_index,
                   reduction=reduction, label_smoothing=label_smoothing,
                   num_threads=num_threads)
    if with_grad:
        loss, grad = _xent.cross_entropy_with_grad(x, t, **options)
        grad = torch.movedim(_tensor(grad, input.dtype), -1, class_dim)
    else:
        loss, grad = _xent.cross_entropy(x, t, **options), _empty(input.dtype)
    return _tensor(loss, input.dtype), grad


_cross_entropy_op = torch.library.custom_op("xent::cross_entropy",
                                            mutates_args=())(_cross_entropy_impl)


@_cross_entropy_op.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, num_threads,
      with_grad):
    class_dim = 1 if input.ndim >= 2 else 0
    batch = input.shape[:class_dim] + input.shape[class_dim + 1:]
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
    keep = probabilities and (target.requires_grad or (weight is not None
                                                       and weight.requires_grad))
    ctx.save_for_backward(output[1], input if keep else None, target if keep else None,
                          weight if keep else None)


def _cross_entropy_backward(ctx, grad_loss, _):
    _refuse_double_backward("cross_entropy")
    grad, logits, target, weight = ctx.saved_tensors
    class_dim, reduction = ctx.class_dim, ctx.reduction
    # the incoming gradient per row, broadcast along the class dim
    row_scale = grad_loss.unsqueeze(class_dim) if reduction == "none" else grad_loss
    grad_input = grad_target = grad_weight = None
    if ctx.needs_input_grad[0]:
        _check_saved(grad, ctx.input_shape, "cross_entropy")
        grad_input = _scaled(grad, grad_loss, row_scale)
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
            grad_weight = (terms.sum(dim=other_dims) if other_dims else terms)
            grad_weight = grad_weight.to(ctx.weight_dtype)
    return grad_input, grad_target, grad_weight, None, None, None, None, None


def _along(weight, class_dim, ndim):
    """The (C,) weight shaped to broadcast along the class dim of an ndim-d tensor."""
    return weight.detach().reshape((-1,) + (1,) * (ndim - 1 - class_dim))


_cross_entropy_op.register_autograd(_cross_entropy_backward, setup_context=_cross_entropy_setup)
_CROSS_ENTROPY = _Op(_cross_entropy_op, _cross_entropy_impl, _cross_entropy_setup,
                     _cross_entropy_backward, True)
_cross_entropy_op.register_vmap(_loop_vmap(_cross_entropy_op, 2))


def _class_problem(input, target, name="input"):
    """Check a classification input and target in PyTorch's layout; return the class dim."""
    _check_float(input, name)
    _check_tensor(target, "target")
    if input.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the classes), got a 0-d "
                         f"tensor")
    class_dim = 1 if input.ndim >= 2 else 0
    if input.shape[class_dim] == 0:
        raise ValueError(f"{name} has shape {tuple(input.shape)}: its class dim {class_dim} "
                         f"is empty")
    return class_dim


def _check_index_target(input, target, class_dim, name="input"):
    if target.dtype not in _INDEX_DTYPES:
        raise TypeError(f"target must hold class indices (an integer dtype) or "
                        f"probabilities (a floating dtype), got {target.dtype}")
    batch_shape = input.shape[:class_dim] + input.shape[class_dim + 1:]
    if target.shape != batch_shape:
        raise ValueError(f"target has shape {tuple(target.shape)}, expected "
                         f"{tuple(batch_shape)}: class indices have the shape of {name} "
                         f"{tuple(input.shape)} without its class dim {class_dim}")


def _check_class_weight(weight, n_classes):
    if weight is not None:
        _check_float(weight, "weight")
        if weight.shape != (n_classes,):
            raise ValueError(f"weight has shape {tuple(weight.shape)}, expected "
                             f"({n_classes},): one weight per class")


def _wants_grad(tensor):
    return tensor is not None and torch.is_grad_enabled() and tensor.requires_grad


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, num_threads=None):
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
    """
    class_dim = _class_problem(input, target)
    n_classes = input.shape[class_dim]
    probabilities = target.dtype.is_floating_point
    if probabilities:
        if target.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"probability target must be {_FLOAT_NAMES}, got {target.dtype}")
        if target.shape != input.shape:
            raise ValueError(f"probability target has shape {tuple(target.shape)}, expected "
                             f"the input's shape {tuple(input.shape)} (for class indices "
                             f"use an integer dtype)")
    else:
        _check_index_target(input, target, class_dim)
    _check_class_weight(weight, n_classes)
    if _wants_grad(weight) and not probabilities:
        raise ValueError("the cross-entropy of class indices is not differentiable with "
                         "respect to weight (as in PyTorch): pass weight.detach()")
    loss, _ = _call(_CROSS_ENTROPY, "cross_entropy", input, target, weight, ignore_index,
                    reduction, label_smoothing, num_threads, _wants_grad(input))
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

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                 num_threads=None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of ``input`` against ``target``: see :func:`cross_entropy`."""
        return cross_entropy(input, target, weight=self.weight,
                             ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing,
                             num_threads=self.num_threads)

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}, num_threads={self.num_threads}")


# ---- nll_loss --------------------------------------------------------------------------------

def _nll_loss_impl(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                   ignore_index: int, reduction: str, num_threads: Optional[int]) -> torch.Tensor:
    class_dim = 1 if input.ndim >= 2 else 0
    loss = _xent.nll_loss(_class_last(input, class_dim), _numpy(target),
                          weight=_operand(weight),
                          ignore_index=ignore_index, reduction=reduction,
                          num_threads=num_threads)
    return _tensor(loss, input.dtype)


_nll_loss_op = torch.library.custom_op("xent::nll_loss", mutates_args=())(_nll_loss_impl)


@_nll_loss_op.register_fake
def _(input, target, weight, ignore_index, reduction, num_threads):
    class_dim = 1 if input.ndim >= 2 else 0
    batch = input.shape[:class_dim] + input.shape[class_dim + 1:]
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
    _refuse_double_backward("nll_loss")
    target, weight = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None, None, None
    compute = torch.promote_types(ctx.input_dtype, torch.float32)
    labels = target.long()
    valid = labels != ctx.ignore_index
    safe = torch.where(valid, labels, 0)
    row_weight = (weight.detach().to(compute)[safe] if weight is not None
                  else torch.ones(labels.shape, dtype=compute))
    row_weight = torch.where(valid, row_weight, 0)
    g = grad_loss.to(compute)
    if ctx.reduction == "mean":
        # all rows ignored: a NaN loss and a zero gradient, as PyTorch's
        coefficient = torch.where(valid, -g * row_weight / row_weight.sum(), 0)
    else:
        coefficient = -g * row_weight
    grad = torch.zeros(ctx.input_shape, dtype=ctx.input_dtype)
    grad.scatter_(ctx.class_dim, safe.unsqueeze(ctx.class_dim),
                  coefficient.unsqueeze(ctx.class_dim).to(ctx.input_dtype))
    return grad, None, None, None, None, None


_nll_loss_op.register_autograd(_nll_backward, setup_context=_nll_setup)
_NLL_LOSS = _Op(_nll_loss_op, _nll_loss_impl, _nll_setup, _nll_backward, False)
_nll_loss_op.register_vmap(_loop_vmap(_nll_loss_op))


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean", num_threads=None):
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
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    class_dim = _class_problem(input, target)
    _check_index_target(input, target, class_dim)
    _check_class_weight(weight, input.shape[class_dim])
    if _wants_grad(weight):
        raise ValueError("nll_loss is not differentiable with respect to weight (as in "
                         "PyTorch): pass weight.detach()")
    return _call(_NLL_LOSS, "nll_loss", input, target, weight, ignore_index, reduction,
                 num_threads)


def _legacy_reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return torch.nn._reduction.legacy_get_string(size_average, reduce)
    return reduction


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
    """

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", num_threads=None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of log-probabilities ``input`` against class indices ``target``."""
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction, num_threads=self.num_threads)

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"num_threads={self.num_threads}")


# ---- binary cross-entropy --------------------------------------------------------------------

def _binary_impl(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                 pos_weight: Optional[torch.Tensor], logits: bool, reduction: str,
                 num_threads: Optional[int], with_grad: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    # with_grad: d loss / d input for an incoming gradient of 1 (per element for "none"),
    # which the backward scales by the real one: the loss is elementwise.
    options = dict(weight=_operand(weight), reduction=reduction, num_threads=num_threads)
    if logits:
        options["pos_weight"] = _operand(pos_weight)
    x, y = _operand(input), _operand(target)
    if with_grad:
        function = (_xent.binary_cross_entropy_with_logits_with_grad if logits
                    else _xent.binary_cross_entropy_with_grad)
        loss, grad = function(x, y, **options)
        grad = _tensor(grad, input.dtype)
    else:
        function = (_xent.binary_cross_entropy_with_logits if logits
                    else _xent.binary_cross_entropy)
        loss, grad = function(x, y, **options), _empty(input.dtype)
    return _tensor(loss, input.dtype), grad


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
    ctx.save_for_backward(output[1], input if keep else None, weight if keep else None,
                          pos_weight if keep else None)


def _binary_backward(ctx, grad_loss, _):
    _refuse_double_backward("binary_cross_entropy" + ("_with_logits" if ctx.logits else ""))
    grad, input, weight, pos_weight = ctx.saved_tensors
    grad_input = grad_target = None
    if ctx.needs_input_grad[0]:
        _check_saved(grad, ctx.input_shape, "binary_cross_entropy")
        grad_input = _scaled(grad, grad_loss, grad_loss)
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
_BINARY = _Op(_binary_op, _binary_impl, _binary_setup, _binary_backward, True)
_binary_op.register_vmap(_loop_vmap(_binary_op, 2))


def _binary(input, target, weight, pos_weight, reduction, num_threads, logits):
    name = "binary_cross_entropy" + ("_with_logits" if logits else "")
    _check_float(input, "input")
    _check_tensor(target, "target")
    if target.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"target must be {_FLOAT_NAMES} (probabilities in [0, 1]), got "
                        f"{target.dtype}")
    if target.shape != input.shape:
        raise ValueError(f"target has shape {tuple(target.shape)}, expected the input's shape "
                         f"{tuple(input.shape)}")
    for value, label in ((weight, "weight"), (pos_weight, "pos_weight")):
        if value is not None:
            _check_float(value, label)
            if _wants_grad(value):
                raise ValueError(f"xent.torch.{name} is not differentiable with respect to "
                                 f"{label}: pass {label}.detach()")
    _check_reduction(reduction)
    loss, _ = _call(_BINARY, name, input, target, weight, pos_weight, logits, reduction,
                    num_threads, _wants_grad(input))
    return loss


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean", num_threads=None):
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
    """
    return _binary(input, target, weight, None,
                   _legacy_reduction(size_average, reduce, reduction), num_threads, False)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None,
                                     num_threads=None):
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
    """
    return _binary(input, target, weight, pos_weight,
                   _legacy_reduction(size_average, reduce, reduction), num_threads, True)


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
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 num_threads=None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of probabilities ``input`` against ``target``."""
        return binary_cross_entropy(input, target, weight=self.weight,
                                    reduction=self.reduction, num_threads=self.num_threads)

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
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None, num_threads=None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of logits ``input`` against ``target``."""
        return binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                reduction=self.reduction,
                                                pos_weight=self.pos_weight,
                                                num_threads=self.num_threads)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, num_threads={self.num_threads}"


# ---- linear_cross_entropy --------------------------------------------------------------------

def _linear_arrays(input, linear_weight, target, linear_bias):
    return (_numpy(input), _numpy(linear_weight), _numpy(target),
            None if linear_bias is None else _numpy(linear_bias))


def _linear_grads(grads, input, linear_weight, linear_bias):
    """xent's (grad_hidden, grad_weight[, grad_bias]) as tensors of the inputs' dtypes."""
    grad_bias = (_tensor(grads[2], linear_bias.dtype) if linear_bias is not None
                 else _empty(input.dtype))
    return _tensor(grads[0], input.dtype), _tensor(grads[1], linear_weight.dtype), grad_bias


def _linear_impl(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                 linear_bias: Optional[torch.Tensor], ignore_index: int, reduction: str,
                 label_smoothing: float, softcap: Optional[float], num_threads: Optional[int],
                 with_grad: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # with_grad (reduced losses only): the gradients for an incoming gradient of 1, from the
    # same tiled pass as the loss; the backward scales them.
    h, w, t, b = _linear_arrays(input, linear_weight, target, linear_bias)
    options = dict(bias=b, ignore_index=ignore_index, reduction=reduction,
                   label_smoothing=label_smoothing, softcap=softcap, num_threads=num_threads)
    if with_grad:
        loss, *grads = _xent.linear_cross_entropy_with_grad(h, w, t, **options)
        grads = _linear_grads(grads, input, linear_weight, linear_bias)
    else:
        loss = _xent.linear_cross_entropy(h, w, t, **options)
        grads = tuple(_empty(input.dtype) for _ in range(3))  # distinct: no aliasing
    return (_tensor(loss, input.dtype), *grads)


_linear_op = torch.library.custom_op("xent::linear_cross_entropy", mutates_args=())(_linear_impl)


@_linear_op.register_fake
def _(input, linear_weight, target, linear_bias, ignore_index, reduction, label_smoothing,
      softcap, num_threads, with_grad):
    loss = input.new_empty(input.shape[:-1] if reduction == "none" else ())
    if not with_grad:
        return (loss,) + tuple(input.new_empty(0) for _ in range(3))
    return (loss, input.new_empty(input.shape), linear_weight.new_empty(linear_weight.shape),
            linear_bias.new_empty(linear_bias.shape) if linear_bias is not None
            else input.new_empty(0))


@torch.library.custom_op("xent::linear_cross_entropy_backward", mutates_args=())
def _linear_backward_op(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                        linear_bias: Optional[torch.Tensor], ignore_index: int,
                        label_smoothing: float, softcap: Optional[float],
                        num_threads: Optional[int], grad_output: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # reduction="none": each row's incoming gradient is known only now, so the tiled pass
    # runs again with it (the logits are recomputed, never stored).
    h, w, t, b = _linear_arrays(input, linear_weight, target, linear_bias)
    _, *grads = _xent.linear_cross_entropy_with_grad(
        h, w, t, bias=b, ignore_index=ignore_index, reduction="none",
        label_smoothing=label_smoothing, softcap=softcap, num_threads=num_threads,
        grad_output=grad_output.detach().to(torch.float64).numpy())
    return _linear_grads(grads, input, linear_weight, linear_bias)


@_linear_backward_op.register_fake
def _(input, linear_weight, target, linear_bias, ignore_index, label_smoothing, softcap,
      num_threads, grad_output):
    return (input.new_empty(input.shape), linear_weight.new_empty(linear_weight.shape),
            linear_bias.new_empty(linear_bias.shape) if linear_bias is not None
            else input.new_empty(0))


def _linear_setup(ctx, inputs, output):
    input, linear_weight, target, linear_bias, ignore_index, reduction, label_smoothing, \
        softcap, num_threads, _ = inputs
    ctx.reduction = reduction
    ctx.options = (ignore_index, label_smoothing, softcap, num_threads)
    if reduction == "none":
        ctx.save_for_backward(input, linear_weight, target, linear_bias)
    else:
        ctx.save_for_backward(*output[1:])


def _linear_backward(ctx, grad_loss, *_):
    _refuse_double_backward("linear_cross_entropy")
    if ctx.reduction == "none":
        input, linear_weight, target, linear_bias = ctx.saved_tensors
        grads = _linear_backward_op(input, linear_weight, target, linear_bias, *ctx.options,
                                    grad_loss)
    else:
        grads = [_scaled(g, grad_loss, grad_loss) for g in ctx.saved_tensors]
    needs = ctx.needs_input_grad
    return (grads[0] if needs[0] else None, grads[1] if needs[1] else None, None,
            grads[2] if needs[3] else None, None, None, None, None, None, None)


_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup)
_LINEAR = _Op(_linear_op, _linear_impl, _linear_setup, _linear_backward, True)
_linear_op.register_vmap(_loop_vmap(_linear_op, 4))
_linear_backward_op.register_vmap(_loop_vmap(_linear_backward_op, 3))


def _capped(logits, softcap):
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0,
                         options=None, softcap=None, num_threads=None):
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
    """
    _check_float(input, "input")
    _check_float(linear_weight, "linear_weight")
    _check_tensor(target, "target")
    if linear_bias is not None:
        _check_float(linear_bias, "linear_bias")
    if weight is not None:
        _check_tensor(weight, "weight")
    if input.ndim == 0:
        raise ValueError("input must have at least one dimension (the features), got a 0-d "
                         "tensor")
    if linear_weight.ndim < 2 or linear_weight.shape[-1] != input.shape[-1]:
        raise ValueError(f"linear_weight has shape {tuple(linear_weight.shape)} and input "
                         f"{tuple(input.shape)}: expected (V, {input.shape[-1]})")
    for other, label in ((linear_weight, "linear_weight"), (linear_bias, "linear_bias")):
        if other is not None and other.dtype != input.dtype:
            raise TypeError(f"{label} has dtype {other.dtype}, input {input.dtype}: they "
                            f"must match, as in torch.nn.functional.linear")
    _check_reduction(reduction)
    ignore_index = -100 if ignore_index is None else ignore_index
    fused = (linear_weight.ndim == 2 and weight is None and not target.dtype.is_floating_point
             and (linear_bias is None or linear_bias.ndim == 1))
    if not fused:
        # What xent's tiled head does not cover goes through the logits, still by xent.
        logits = torch.nn.functional.linear(input, linear_weight.flatten(0, -2),
                                            None if linear_bias is None
                                            else linear_bias.flatten())
        if linear_weight.ndim > 2:
            logits = logits.unflatten(-1, linear_weight.shape[:-1])
        return cross_entropy(_capped(logits, softcap), target, weight=weight,
                             ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=label_smoothing, num_threads=num_threads)
    _check_index_target(input, target, input.ndim - 1)
    with_grad = reduction != "none" and any(
        _wants_grad(t) for t in (input, linear_weight, linear_bias))
    loss, *_ = _call(_LINEAR, "linear_cross_entropy", input, linear_weight, target,
                     linear_bias, ignore_index, reduction, label_smoothing, softcap,
                     num_threads, with_grad)
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
    """

    def __init__(self, in_features, num_classes, *, bias=False, device=None, dtype=None,
                 reduction="mean", weight=None, ignore_index=None, label_smoothing=0.0,
                 softcap=None, num_threads=None):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, num_classes, bias=bias, device=device,
                                      dtype=dtype)
        self.register_buffer("weight", weight)
        self.reduction, self.ignore_index = reduction, ignore_index
        self.label_smoothing, self.softcap = label_smoothing, softcap
        self.num_threads = num_threads

    def forward(self, input, target):
        """The loss of ``self.linear(input)`` against ``target``."""
        return linear_cross_entropy(input, self.linear.weight, target,
                                    linear_bias=self.linear.bias, weight=self.weight,
                                    reduction=self.reduction, ignore_index=self.ignore_index,
                                    label_smoothing=self.label_smoothing, softcap=self.softcap,
                                    num_threads=self.num_threads)

    def extra_repr(self):
        return (f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing}, softcap={self.softcap}")
