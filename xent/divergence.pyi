# Type information for xent.divergence (the run time is xent/divergence.py): divergences
# between a student's and a teacher's logits (or the teacher's top-k), by row. Reduction
# "mean"/"sum" gives a numpy scalar, "none" an array of the rows; *_with_grad adds the
# gradient with respect to the student's logits.
from typing import Any, Literal, TypeAlias, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

_FloatScalar: TypeAlias = np.floating[Any]
_FloatArray: TypeAlias = NDArray[np.floating[Any]]
_ScalarOrArray: TypeAlias = np.floating[Any] | NDArray[np.floating[Any]]
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

def tail_mass(
    top_mass: ArrayLike, k: int, rest: ArrayLike | None = None
) -> NDArray[np.float64]: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatScalar: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatScalar, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _FloatArray]: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatScalar: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatScalar, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _FloatArray]: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatScalar: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
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
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatScalar, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _FloatArray]: ...
