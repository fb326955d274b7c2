# Type information for xent.linear (run-time code: xent/linear.py).
from typing import Any, Literal, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray
from typing_extensions import Self

from . import _FloatArray, _FloatScalar, _GradOutput, _Reduction, _ScalarOrArray, _ScalarReduction

__all__ = [
    "LinearCrossEntropyGrads",
    "LinearRowStats",
    "blas_info",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "set_blas",
]

def blas_info() -> dict[str, str | None]: ...
def set_blas(
    name: Literal["auto", "scipy", "numpy", "scipy-openblas32"] = "auto",
) -> dict[str, str | None]: ...

class LinearRowStats(NamedTuple):
    """Per-row ``(lse, entropy, argmax)`` of the logits (return_stats=True)."""

    lse: _FloatArray
    entropy: _FloatArray
    argmax: NDArray[np.intp]

class LinearCrossEntropyGrads(tuple[Any, ...]):
    """``(loss, grad_hidden, grad_weight)``, plus ``grad_bias`` fourth when a bias was given.

    Its length depends on an argument, so the tuple's items are typed ``Any`` (unpacking
    keeps working with 3 or 4 names); the fields read by name carry the precise types.
    """

    def __new__(
        cls,
        loss: _ScalarOrArray,
        grad_hidden: _FloatArray,
        grad_weight: _FloatArray,
        grad_bias: _FloatArray | None = None,
    ) -> Self: ...
    def __getnewargs__(self) -> tuple[Any, ...]: ...
    @property
    def loss(self) -> _ScalarOrArray:
        """The loss, as linear_cross_entropy returns it."""
    @property
    def grad_hidden(self) -> _FloatArray:
        """d loss / d hidden, hidden's shape."""
    @property
    def grad_weight(self) -> _FloatArray:
        """d loss / d weight, shape (V, H)."""
    @property
    def grad_bias(self) -> _FloatArray | None:
        """d loss / d bias, shape (V,); None when no bias was given."""

@overload
def linear_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    return_stats: Literal[False] = False,
    num_threads: int | None = None,
) -> _FloatScalar: ...
@overload
def linear_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    return_stats: Literal[False] = False,
    num_threads: int | None = None,
) -> _FloatArray: ...
@overload
def linear_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction,
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    return_stats: Literal[False] = False,
    num_threads: int | None = None,
) -> _ScalarOrArray: ...
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
    return_lse: Literal[True],
    return_stats: Literal[False] = False,
    num_threads: int | None = None,
) -> tuple[_ScalarOrArray, _FloatArray]: ...
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
    return_stats: Literal[True],
    num_threads: int | None = None,
) -> tuple[_ScalarOrArray, LinearRowStats]: ...
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
    return_lse: Literal[True],
    return_stats: Literal[True],
    num_threads: int | None = None,
) -> tuple[_ScalarOrArray, _FloatArray, LinearRowStats]: ...
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
    num_threads: int | None = None,
) -> LinearCrossEntropyGrads: ...
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
    num_threads: int | None = None,
) -> tuple[LinearCrossEntropyGrads, _FloatArray]: ...
