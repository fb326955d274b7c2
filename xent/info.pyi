# Type information for xent.info (run-time code: xent/info.py). Results are one value per
# distribution: a numpy scalar for 1-d input, an array of the batch shape otherwise, hence
# the union where the shape decides; the elementwise functions keep the input's shape.
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _FloatScalar, _ScalarOrArray

__all__ = [
    "self_information",
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "binary_entropy",
    "entropy_from_logits",
    "perplexity",
    "SUM_TOLERANCE",
]

#: How far from 1 a distribution's sum may be without normalize=True, per dtype.
SUM_TOLERANCE: dict[np.dtype[Any], float]

def entropy(
    p: ArrayLike,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = False,
    *,
    qk: ArrayLike | None = None,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
def cross_entropy(
    p: ArrayLike,
    q: ArrayLike,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = False,
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
def kl_divergence(
    p: ArrayLike,
    q: ArrayLike,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = False,
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
def self_information(
    p: ArrayLike, base: float | None = None, *, num_threads: int | None = None
) -> _ScalarOrArray: ...
def binary_entropy(
    p: ArrayLike, base: float | None = None, *, num_threads: int | None = None
) -> _ScalarOrArray: ...
def entropy_from_logits(
    logits: ArrayLike,
    axis: int = -1,
    base: float | None = None,
    *,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _ScalarOrArray: ...
def perplexity(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    num_threads: int | None = None,
    check: bool | None = None,
) -> _FloatScalar: ...
