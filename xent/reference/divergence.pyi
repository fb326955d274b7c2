# Type information for xent.reference.divergence (run time: xent/reference/divergence.py):
# the float64 numpy definitions of xent.divergence's functions.
from typing import Literal, TypeAlias, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Array: TypeAlias = NDArray[np.float64]
_Values: TypeAlias = np.float64 | NDArray[np.float64]
_Reduction: TypeAlias = Literal["mean", "sum", "none"]
_TopK: TypeAlias = tuple[ArrayLike, ArrayLike] | None

__all__ = [
    "js_divergence_logits",
    "js_divergence_logits_with_grad",
    "kl_divergence_logits",
    "kl_divergence_logits_with_grad",
    "tv_distance_logits",
    "tv_distance_logits_with_grad",
]

@overload
def kl_divergence_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    direction: Literal["forward", "reverse"] = "forward",
    reduction: Literal["mean", "sum"] = "mean",
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> np.float64: ...
@overload
def kl_divergence_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    direction: Literal["forward", "reverse"] = "forward",
    reduction: Literal["none"],
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> _Array: ...
@overload
def kl_divergence_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    direction: Literal["forward", "reverse"] = "forward",
    reduction: _Reduction,
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> _Values: ...
@overload
def kl_divergence_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    direction: Literal["forward", "reverse"] = "forward",
    reduction: Literal["mean", "sum"] = "mean",
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[np.float64, _Array]: ...
@overload
def kl_divergence_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    direction: Literal["forward", "reverse"] = "forward",
    reduction: Literal["none"],
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[_Array, _Array]: ...
@overload
def kl_divergence_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    direction: Literal["forward", "reverse"] = "forward",
    reduction: _Reduction,
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[_Values, _Array]: ...
@overload
def js_divergence_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    reduction: Literal["mean", "sum"] = "mean",
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> np.float64: ...
@overload
def js_divergence_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    reduction: Literal["none"],
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> _Array: ...
@overload
def js_divergence_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    reduction: _Reduction,
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> _Values: ...
@overload
def js_divergence_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    reduction: Literal["mean", "sum"] = "mean",
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[np.float64, _Array]: ...
@overload
def js_divergence_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    reduction: Literal["none"],
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[_Array, _Array]: ...
@overload
def js_divergence_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    reduction: _Reduction,
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[_Values, _Array]: ...
@overload
def tv_distance_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    reduction: Literal["mean", "sum"] = "mean",
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> np.float64: ...
@overload
def tv_distance_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    reduction: Literal["none"],
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> _Array: ...
@overload
def tv_distance_logits(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    reduction: _Reduction,
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
) -> _Values: ...
@overload
def tv_distance_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    reduction: Literal["mean", "sum"] = "mean",
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[np.float64, _Array]: ...
@overload
def tv_distance_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    reduction: Literal["none"],
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[_Array, _Array]: ...
@overload
def tv_distance_logits_with_grad(
    student: ArrayLike,
    teacher: ArrayLike | None = None,
    *,
    teacher_topk: _TopK = None,
    temperature: float = 1.0,
    reduction: _Reduction,
    ignore_mask: ArrayLike | None = None,
    scale_by_temperature_squared: bool = True,
    grad_output: float | ArrayLike | None = None,
) -> tuple[_Values, _Array]: ...
