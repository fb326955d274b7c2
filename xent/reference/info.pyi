# Type information for xent.reference.info (run-time code: xent/reference/info.py): float64
# results, a scalar for one distribution and an array of the batch shape otherwise.
import numpy as np
from numpy.typing import ArrayLike

from . import _Values

__all__ = [
    "self_information",
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "binary_entropy",
    "entropy_from_logits",
    "perplexity",
    "cross_entropy_dist",
]

def self_information(p: ArrayLike, base: float | None = None) -> _Values: ...
def entropy(
    p: ArrayLike, axis: int = -1, base: float | None = None, normalize: bool = False
) -> _Values: ...
def cross_entropy_dist(
    p: ArrayLike, q: ArrayLike, axis: int = -1, base: float | None = None, normalize: bool = False
) -> _Values: ...
def kl_divergence(
    p: ArrayLike, q: ArrayLike, axis: int = -1, base: float | None = None, normalize: bool = False
) -> _Values: ...
def binary_entropy(p: ArrayLike, base: float | None = None) -> _Values: ...
def entropy_from_logits(
    logits: ArrayLike, axis: int = -1, base: float | None = None
) -> _Values: ...
def perplexity(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> np.float64: ...

cross_entropy = cross_entropy_dist
