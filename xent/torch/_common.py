"""What every loss of :mod:`xent.torch` shares: checking and conversion of tensors, and the
machinery that makes a loss a ``torch.library`` custom operator (eager shortcut, vmap rule,
refusal of double backward).

Private: the public names are :mod:`xent.torch`'s.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch._subclasses.fake_tensor import is_fake as _is_fake
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode

try:  # bfloat16 in place; without it bfloat16 tensors are widened to float32 first
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes is a test dependency
    _ml_dtypes = None

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FLOAT_NAMES = "float16, bfloat16, float32 or float64"
_INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_REDUCTIONS = ("mean", "sum", "none")


# ---- checking and conversion -----------------------------------------------------------------


def check_tensor(value, name):
    """Refuse what xent cannot read: non-tensors, non-CPU (meta included), non-strided."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.device.type != "cpu":
        raise ValueError(
            f"xent.torch computes on CPU tensors only; {name} is on device "
            f"{value.device} (move it with .cpu(), or use torch.nn.functional's "
            f"loss there)"
        )
    if value.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {value.layout}")


def check_float(value, name):
    check_tensor(value, name)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be {FLOAT_NAMES}, got {value.dtype}")


def check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")


def as_numpy(tensor):
    """The tensor's memory as a numpy array: never a copy, except bfloat16 without ml_dtypes
    (widened to float32)."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        if _ml_dtypes is None:
            return tensor.float().numpy()
        # Same item size: a view with the tensor's strides, read as ml_dtypes' bfloat16.
        return tensor.view(torch.int16).numpy().view(_ml_dtypes.bfloat16)
    return tensor.numpy()


def operand_array(tensor):
    """A weight (or a binary loss's operand) as numpy: xent takes no bfloat16 array there, so
    a bfloat16 one is widened to float32 (exactly), the precision xent computes bfloat16 in."""
    if tensor is None:
        return None
    if tensor.dtype == torch.bfloat16:
        return tensor.detach().float().numpy()
    return as_numpy(tensor)


def to_tensor(array, dtype):
    """A numpy result as a tensor of ``dtype`` (shares memory unless a cast is needed)."""
    array = np.asarray(array)
    if _ml_dtypes is not None and array.dtype == _ml_dtypes.bfloat16:
        result = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    else:
        result = torch.from_numpy(array)
    return result if result.dtype == dtype else result.to(dtype)


def class_last(tensor, class_dim):
    """``tensor`` with its class dim moved last (a view), as numpy."""
    return as_numpy(
        torch.movedim(tensor, class_dim, -1) if class_dim != tensor.ndim - 1 else tensor
    )


def empty_grad(dtype):
    """The placeholder of a gradient that was not asked for (operators return tensors only)."""
    return torch.empty(0, dtype=dtype)


def _is_plain(tensor):
    """Whether ``tensor`` is a real tensor with values (not traced by compile or func)."""
    return (
        type(tensor) is torch.Tensor
        and not _is_fake(tensor)
        and not torch._C._functorch.is_functorch_wrapped_tensor(tensor)
    )


# ---- the custom-operator machinery ---------------------------------------------------------------

_NO_DOUBLE_BACKWARD = (
    "xent.torch.{name} is differentiable once only (its backward reuses the gradient of the "
    "forward pass): a backward pass with create_graph=True, for a second derivative, is not "
    "supported; use torch.nn.functional.{name} for that"
)


def refuse_double_backward(name):
    # create_graph=True: the backward below scales a saved gradient, whose own derivative
    # autograd would silently take as zero. Refuse instead of answering wrongly.
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(_NO_DOUBLE_BACKWARD.format(name=name))


def loop_vmap(op, n_outputs=None):
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
        outputs = tuple(torch.stack([r[k] for r in results]) for k in range(n_outputs or 1))
        if n_outputs is None:
            return outputs[0], 0
        return outputs, (0,) * n_outputs

    return rule


_NO_FUNC_TRANSFORMS = (
    "xent.torch.{name} does not support torch.func.grad, jvp, jacrev or jacfwd (PyTorch runs "
    "a custom operator's autograd formula under autograd only): use loss.backward() or "
    "torch.autograd.grad, or torch.nn.functional.{name} inside torch.func transforms "
    "(torch.func.vmap alone works)"
)


class LossOp(NamedTuple):
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
    return (
        not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch._C._are_functorch_transforms_active()
        and _current_dispatch_mode() is None
        and all(type(a) is torch.Tensor for a in args if isinstance(a, torch.Tensor))
    )


def call_op(spec, name, *args):
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


def check_saved(grad, shape, name):
    if grad.shape != shape:  # the placeholder of with_grad=False
        raise RuntimeError(
            f"torch.ops.xent.{name} was called with with_grad=False, so it has "
            f"no gradient to give: call xent.torch.{name}, which sets it"
        )


def scaled(grad, grad_loss, scale):
    """``grad * scale``, or ``grad`` itself for ``loss.backward()`` on a reduced loss."""
    if grad_loss.ndim == 0 and _is_plain(grad_loss) and grad_loss.item() == 1.0:
        return grad  # the saved gradient is the answer: no N x C multiplication
    return grad * scale.to(grad.dtype)


# ---- checks shared by the losses -------------------------------------------------------------


def class_problem(input, target, name="input"):
    """Check a classification input and target in PyTorch's layout; return the class dim."""
    check_float(input, name)
    check_tensor(target, "target")
    if input.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the classes), got a 0-d tensor")
    class_dim = 1 if input.ndim >= 2 else 0
    if input.shape[class_dim] == 0:
        raise ValueError(
            f"{name} has shape {tuple(input.shape)}: its class dim {class_dim} is empty"
        )
    return class_dim


def check_index_target(input, target, class_dim, name="input"):
    if target.dtype not in _INDEX_DTYPES:
        raise TypeError(
            f"target must hold class indices (an integer dtype) or "
            f"probabilities (a floating dtype), got {target.dtype}"
        )
    batch_shape = input.shape[:class_dim] + input.shape[class_dim + 1 :]
    if target.shape != batch_shape:
        raise ValueError(
            f"target has shape {tuple(target.shape)}, expected "
            f"{tuple(batch_shape)}: class indices have the shape of {name} "
            f"{tuple(input.shape)} without its class dim {class_dim}"
        )


def check_class_weight(weight, n_classes):
    if weight is not None:
        check_float(weight, "weight")
        if weight.shape != (n_classes,):
            raise ValueError(
                f"weight has shape {tuple(weight.shape)}, expected "
                f"({n_classes},): one weight per class"
            )


def wants_grad(tensor):
    return tensor is not None and torch.is_grad_enabled() and tensor.requires_grad


def legacy_reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return torch.nn._reduction.legacy_get_string(size_average, reduce)
    return reduction
