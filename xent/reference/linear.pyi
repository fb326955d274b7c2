# Type information for xent.reference.linear (run-time code: xent/reference/linear.py).
from numpy.typing import ArrayLike

from . import _Array, _GradOutput, _Reduction, _Values

__all__ = ["linear_cross_entropy", "linear_cross_entropy_grad", "linear_cross_entropy_with_grad"]

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
) -> _Values: ...
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
    grad_output: _GradOutput = None,
) -> tuple[_Array, ...]:
    """(grad_hidden, grad_weight), plus grad_bias when a bias is given."""

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
    grad_output: _GradOutput = None,
) -> tuple[_Values | _Array, ...]:
    """(loss, grad_hidden, grad_weight), plus grad_bias when a bias is given."""
