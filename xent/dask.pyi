# Type information for xent.dask (run-time code: xent/dask.py; needs the dask extra).
from typing import Literal, overload

from dask.array import Array
from numpy.typing import ArrayLike

from . import _FloatScalar, _Reduction, _ScalarReduction
from ._evaluation import EvaluationReport

__all__ = ["evaluate", "cross_entropy"]

def evaluate(
    logits: Array,
    labels: Array | ArrayLike,
    *,
    topk: int | tuple[int, ...] | list[int] = (1, 5),
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
    num_threads: int | None = 1,
    calibration: Literal["mass", "width"] = "mass",
    calibration_bins: int = 15,
) -> EvaluationReport: ...
@overload
def cross_entropy(
    logits: Array,
    target: Array | ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _ScalarReduction = "mean",
    label_smoothing: float = 0.0,
    num_threads: int | None = 1,
) -> _FloatScalar: ...
@overload
def cross_entropy(
    logits: Array,
    target: Array | ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Literal["none"],
    label_smoothing: float = 0.0,
    num_threads: int | None = 1,
) -> Array: ...
@overload
def cross_entropy(
    logits: Array,
    target: Array | ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: _Reduction,
    label_smoothing: float = 0.0,
    num_threads: int | None = 1,
) -> _FloatScalar | Array: ...
