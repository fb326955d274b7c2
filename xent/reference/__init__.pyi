# Type information for xent.reference (run-time code: xent/reference/*.py), the float64
# oracle: results are float64 arrays, or numpy float64 scalars for reduced losses. The
# overloads follow the reduction as xent's own stubs do.
from typing import Any, Literal, TypeAlias, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import info as info
from . import linear as linear
from .info import binary_entropy as binary_entropy
from .info import cross_entropy_dist as cross_entropy_dist
from .info import entropy as entropy
from .info import entropy_from_logits as entropy_from_logits
from .info import kl_divergence as kl_divergence
from .info import perplexity as perplexity
from .info import self_information as self_information
from .linear import linear_cross_entropy as linear_cross_entropy
from .linear import linear_cross_entropy_grad as linear_cross_entropy_grad
from .linear import linear_cross_entropy_with_grad as linear_cross_entropy_with_grad

_Reduction: TypeAlias = Literal["mean", "sum", "none"]
_ScalarReduction: TypeAlias = Literal["mean", "sum"]
_Array: TypeAlias = NDArray[np.float64]
_Values: TypeAlias = np.float64 | NDArray[np.float64]
_GradOutput: TypeAlias = float | ArrayLike | None

__all__ = [
    "logsumexp",
    "log_softmax",
    "softmax",
    "cross_entropy",
    "nll_loss",
    "self_information",
    "entropy",
    "cross_entropy_dist",
    "kl_divergence",
    "binary_entropy",
    "entropy_from_logits",
    "perplexity",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy_grad",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy_with_grad",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_grad",
    "linear_cross_entropy_with_grad",
    "evaluate",
    "target_rank",
]

def logsumexp(x: ArrayLike, axis: int = -1, keepdims: bool = False) -> _Values: ...
def log_softmax(x: ArrayLike, axis: int = -1) -> _Array: ...
def softmax(x: ArrayLike, axis: int = -1) -> _Array: ...
def cross_entropy_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    grad_output: _GradOutput = None,
) -> _Array: ...
def binary_cross_entropy_grad(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _Reduction = "mean",
    grad_output: _GradOutput = None,
) -> _Array: ...
def binary_cross_entropy_with_logits_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduction = "mean",
    grad_output: _GradOutput = None,
) -> _Array: ...
def target_rank(logits: ArrayLike, target: ArrayLike) -> NDArray[np.int64]: ...
def evaluate(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    topk: int | tuple[int, ...] | list[int] = (1, 5),
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
) -> dict[str, Any]: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
    label_smoothing: float = 0.0,
) -> np.float64: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
) -> _Array: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction,
    label_smoothing: float = 0.0,
) -> _Values: ...
@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
) -> np.float64: ...
@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["none"],
) -> _Array: ...
@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction,
) -> _Values: ...
@overload
def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _ScalarReduction = "mean",
) -> np.float64: ...
@overload
def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: Literal["none"],
) -> _Array: ...
@overload
def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _Reduction,
) -> _Values: ...
@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _ScalarReduction = "mean",
) -> np.float64: ...
@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: Literal["none"],
) -> _Array: ...
@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduction,
) -> _Values: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
    label_smoothing: float = 0.0,
    grad_output: _GradOutput = None,
) -> tuple[np.float64, _Array]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    grad_output: _GradOutput = None,
) -> tuple[_Array, _Array]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction,
    label_smoothing: float = 0.0,
    grad_output: _GradOutput = None,
) -> tuple[_Values, _Array]: ...
@overload
def binary_cross_entropy_with_grad(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _ScalarReduction = "mean",
    grad_output: _GradOutput = None,
) -> tuple[np.float64, _Array]: ...
@overload
def binary_cross_entropy_with_grad(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: Literal["none"],
    grad_output: _GradOutput = None,
) -> tuple[_Array, _Array]: ...
@overload
def binary_cross_entropy_with_grad(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _Reduction,
    grad_output: _GradOutput = None,
) -> tuple[_Values, _Array]: ...
@overload
def binary_cross_entropy_with_logits_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _ScalarReduction = "mean",
    grad_output: _GradOutput = None,
) -> tuple[np.float64, _Array]: ...
@overload
def binary_cross_entropy_with_logits_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: Literal["none"],
    grad_output: _GradOutput = None,
) -> tuple[_Array, _Array]: ...
@overload
def binary_cross_entropy_with_logits_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduction,
    grad_output: _GradOutput = None,
) -> tuple[_Values, _Array]: ...
