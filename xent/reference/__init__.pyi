# Type information for xent.reference (run-time code: xent/reference/*.py), the float64
# oracle: results are float64 arrays, or numpy float64 scalars for reduced losses. The
# overloads follow the reduction as xent's own stubs do.
from typing import Any, Literal, TypeAlias, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import info as info
from . import divergence as divergence
from . import linear as linear
from .divergence import js_divergence_logits as js_divergence_logits
from .divergence import js_divergence_logits_with_grad as js_divergence_logits_with_grad
from .divergence import kl_divergence_logits as kl_divergence_logits
from .divergence import kl_divergence_logits_with_grad as kl_divergence_logits_with_grad
from .divergence import tv_distance_logits as tv_distance_logits
from .divergence import tv_distance_logits_with_grad as tv_distance_logits_with_grad
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
    "cross_entropy_grad_hess",
    "binary_cross_entropy_with_logits_grad_hess",
    "linear_cross_entropy",
    "linear_cross_entropy_grad",
    "linear_cross_entropy_with_grad",
    "kl_divergence_logits",
    "kl_divergence_logits_with_grad",
    "js_divergence_logits",
    "js_divergence_logits_with_grad",
    "tv_distance_logits",
    "tv_distance_logits_with_grad",
    "evaluate",
    "target_rank",
    "compare",
    "calibration_errors",
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
    z_loss: float = 0.0,
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
    calibration: Literal["mass", "width"] = "mass",
    calibration_bins: int = 15,
    num_bytes: int | ArrayLike | None = None,
    documents: ArrayLike | None = None,
) -> dict[str, Any]: ...
def compare(
    ref: ArrayLike, cand: ArrayLike, labels: ArrayLike | None = None, *, ignore_index: int = -100
) -> dict[str, Any]: ...
def calibration_errors(
    confidence: ArrayLike,
    correct: ArrayLike,
    *,
    bins: int = 15,
    kind: Literal["mass", "width"] = "mass",
) -> tuple[float, float, _Array]: ...
def cross_entropy_grad_hess(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    sample_weight: ArrayLike | None = None,
) -> tuple[_Array, _Array]: ...
def binary_cross_entropy_with_logits_grad_hess(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> tuple[_Array, _Array]: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    return_lse: Literal[True],
) -> tuple[_Values, _Array]: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
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
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
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
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
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
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    return_lse: Literal[True],
    grad_output: _GradOutput = None,
) -> tuple[_Values, _Array, _Array]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
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
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
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
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
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
