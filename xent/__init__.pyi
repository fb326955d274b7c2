# Type information for xent's public API (the run-time code is xent/__init__.py and the
# modules it re-exports from). Checked against the run time by `python -m mypy.stubtest xent`
# and exercised by tests/typing/usage.py under `mypy --strict`.
#
# The private aliases below (leading underscore, stub-only) are shared by the other stubs.
# Losses return a numpy scalar in the input's dtype for reduction "mean"/"sum" and an array
# for "none"; the overloads say so. Where a result's kind depends on the input's shape (a
# scalar for 1-d input, an array otherwise), the return type is the union.
from typing import IO, Any, Literal, TypeAlias, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import info as info
from . import reference as reference
from ._compare import ComparisonReport as ComparisonReport
from ._compare import compare as compare
from ._evaluation import EvaluationReport as EvaluationReport
from ._evaluation import evaluate as evaluate
from .divergence import js_divergence_logits as js_divergence_logits
from .divergence import js_divergence_logits_with_grad as js_divergence_logits_with_grad
from .divergence import kl_divergence_logits as kl_divergence_logits
from .divergence import kl_divergence_logits_with_grad as kl_divergence_logits_with_grad
from .divergence import tv_distance_logits as tv_distance_logits
from .divergence import tv_distance_logits_with_grad as tv_distance_logits_with_grad
from .linear import linear_cross_entropy as linear_cross_entropy
from .linear import linear_cross_entropy_with_grad as linear_cross_entropy_with_grad

_Reduction: TypeAlias = Literal["mean", "sum", "none"]
_ScalarReduction: TypeAlias = Literal["mean", "sum"]
_FloatScalar: TypeAlias = np.floating[Any]
_FloatArray: TypeAlias = NDArray[np.floating[Any]]
_ScalarOrArray: TypeAlias = np.floating[Any] | NDArray[np.floating[Any]]
_GradOutput: TypeAlias = float | ArrayLike | None

__version__: str
__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad_hess",
    "binary_cross_entropy_with_logits_with_grad",
    "CheckError",
    "cross_entropy",
    "cross_entropy_grad_hess",
    "cross_entropy_with_grad",
    "evaluate",
    "compare",
    "ComparisonReport",
    "EvaluationReport",
    "get_num_threads",
    "info",
    "js_divergence_logits",
    "js_divergence_logits_with_grad",
    "kl_divergence_logits",
    "kl_divergence_logits_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "reference",
    "show_config",
    "softmax",
    "tv_distance_logits",
    "tv_distance_logits_with_grad",
]

class CheckError(AssertionError):
    """A result of xent disagrees with xent.reference beyond the documented tolerance."""

def get_num_threads(num_threads: int | None = None) -> int: ...
def show_config(file: IO[str] | None = None) -> None: ...

# ---- class scores (xent/_multiclass.py) ----------------------------------------------------

_Axis: TypeAlias = int | tuple[int, ...] | None

@overload
def logsumexp(
    x: ArrayLike,
    axis: _Axis = -1,
    b: ArrayLike | None = None,
    keepdims: Literal[False] = False,
    return_sign: Literal[False] = False,
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
@overload
def logsumexp(
    x: ArrayLike,
    axis: _Axis = -1,
    b: ArrayLike | None = None,
    *,
    keepdims: Literal[True],
    return_sign: Literal[False] = False,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
@overload
def logsumexp(
    x: ArrayLike,
    axis: _Axis,
    b: ArrayLike | None,
    keepdims: Literal[True],
    return_sign: Literal[False] = False,
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
@overload
def logsumexp(
    x: ArrayLike,
    axis: _Axis = -1,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    *,
    return_sign: Literal[True],
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _ScalarOrArray]: ...
@overload
def logsumexp(
    x: ArrayLike,
    axis: _Axis,
    b: ArrayLike | None,
    keepdims: bool,
    return_sign: Literal[True],
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _ScalarOrArray]: ...
@overload
def logsumexp(
    x: ArrayLike,
    axis: _Axis = -1,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray | tuple[_ScalarOrArray, _ScalarOrArray]: ...
def log_softmax(
    x: ArrayLike,
    axis: int = -1,
    out: _FloatArray | None = None,
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
def softmax(
    x: ArrayLike,
    axis: int = -1,
    out: _FloatArray | None = None,
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
    label_smoothing: float = 0.0,
    sample_weight: ArrayLike | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatScalar: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    sample_weight: ArrayLike | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction,
    label_smoothing: float = 0.0,
    sample_weight: ArrayLike | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    sample_weight: None = None,
    z_loss: float = 0.0,
    return_lse: Literal[True],
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatScalar, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
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
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    z_loss: float = 0.0,
    return_lse: Literal[False] = False,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _FloatArray]: ...
@overload
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    grad_output: _GradOutput = None,
    out: _FloatArray | None = None,
    sample_weight: None = None,
    z_loss: float = 0.0,
    return_lse: Literal[True],
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _FloatArray, _FloatArray]: ...
def cross_entropy_grad_hess(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatScalar: ...
@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["none"],
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...

# ---- binary cross-entropy (xent/_binary.py) ------------------------------------------------

@overload
def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _ScalarReduction = "mean",
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatScalar: ...
@overload
def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: Literal["none"],
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
@overload
def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _Reduction,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
@overload
def binary_cross_entropy_with_grad(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _ScalarReduction = "mean",
    grad_output: _GradOutput = None,
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatScalar, _FloatArray]: ...
@overload
def binary_cross_entropy_with_grad(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: Literal["none"],
    grad_output: _GradOutput = None,
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
@overload
def binary_cross_entropy_with_grad(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: _Reduction,
    grad_output: _GradOutput = None,
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _FloatArray]: ...
@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _ScalarReduction = "mean",
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatScalar: ...
@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: Literal["none"],
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatArray: ...
@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduction,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
@overload
def binary_cross_entropy_with_logits_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _ScalarReduction = "mean",
    grad_output: _GradOutput = None,
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatScalar, _FloatArray]: ...
@overload
def binary_cross_entropy_with_logits_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: Literal["none"],
    grad_output: _GradOutput = None,
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
@overload
def binary_cross_entropy_with_logits_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: _Reduction,
    grad_output: _GradOutput = None,
    out: _FloatArray | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_ScalarOrArray, _FloatArray]: ...
def binary_cross_entropy_with_logits_grad_hess(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
