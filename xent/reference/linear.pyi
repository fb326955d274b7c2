# Type information for xent.reference.linear (run-time code: xent/reference/linear.py).
from typing import Any, Literal, overload

from numpy.typing import ArrayLike

from . import _Array, _GradOutput, _Reduction, _Values

__all__ = ["linear_cross_entropy", "linear_cross_entropy_grad", "linear_cross_entropy_with_grad"]

@overload
def linear_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    return_stats: Literal[False] = False,
) -> _Values: ...
@overload
def linear_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    return_lse: bool = False,
    return_stats: bool = False,
) -> _Values | tuple[Any, ...]:
    """(loss[, lse][, (lse, entropy, argmax)]) with return_lse or return_stats."""

def linear_cross_entropy_grad(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    grad_output: _GradOutput = None,
) -> tuple[_Array, ...]:
    """(grad_hidden, grad_weight), plus grad_bias when a bias is given."""

@overload
def linear_cross_entropy_with_grad(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    grad_output: _GradOutput = None,
) -> tuple[_Values | _Array, ...]:
    """(loss, grad_hidden, grad_weight), plus grad_bias when a bias is given."""

@overload
def linear_cross_entropy_with_grad(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[True],
    grad_output: _GradOutput = None,
) -> tuple[tuple[_Values | _Array, ...], _Array]:
    """(the gradients' tuple, the rows' log-sum-exp)."""
