# Type information for xent.torch (run-time code: xent/torch.py; needs PyTorch, which ships
# its own types). The functions and modules take PyTorch's arguments, as
# torch.nn.functional's and torch.nn's do; size_average and reduce are PyTorch's deprecated
# spellings of reduction, accepted as it accepts them.
from typing import Any, Literal, TypeAlias

import torch

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "NLLLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "linear_cross_entropy",
    "nll_loss",
]

_Reduction: TypeAlias = Literal["mean", "sum", "none"]

def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: _Reduction = "mean",
    label_smoothing: float = 0.0,
    num_threads: int | None = None,
) -> torch.Tensor: ...
def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: _Reduction = "mean",
    num_threads: int | None = None,
) -> torch.Tensor: ...
def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: _Reduction = "mean",
    num_threads: int | None = None,
) -> torch.Tensor: ...
def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: _Reduction = "mean",
    pos_weight: torch.Tensor | None = None,
    num_threads: int | None = None,
) -> torch.Tensor: ...
def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: _Reduction = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: Any = None,
    softcap: float | None = None,
    num_threads: int | None = None,
) -> torch.Tensor: ...

class CrossEntropyLoss(torch.nn.Module):
    """xent's cross-entropy as a module, with torch.nn.CrossEntropyLoss's arguments."""

    weight: torch.Tensor | None
    ignore_index: int
    reduction: _Reduction
    label_smoothing: float
    num_threads: int | None
    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: _Reduction = "mean",
        label_smoothing: float = 0.0,
        num_threads: int | None = None,
    ) -> None: ...
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
    def extra_repr(self) -> str: ...

class NLLLoss(torch.nn.Module):
    """xent's negative log-likelihood as a module, with torch.nn.NLLLoss's arguments."""

    weight: torch.Tensor | None
    ignore_index: int
    reduction: _Reduction
    num_threads: int | None
    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: _Reduction = "mean",
        num_threads: int | None = None,
    ) -> None: ...
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
    def extra_repr(self) -> str: ...

class BCELoss(torch.nn.Module):
    """xent's binary cross-entropy as a module, with torch.nn.BCELoss's arguments."""

    weight: torch.Tensor | None
    reduction: _Reduction
    num_threads: int | None
    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: _Reduction = "mean",
        num_threads: int | None = None,
    ) -> None: ...
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
    def extra_repr(self) -> str: ...

class BCEWithLogitsLoss(torch.nn.Module):
    """xent's binary cross-entropy of logits as a module, torch.nn.BCEWithLogitsLoss's way."""

    weight: torch.Tensor | None
    pos_weight: torch.Tensor | None
    reduction: _Reduction
    num_threads: int | None
    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: _Reduction = "mean",
        pos_weight: torch.Tensor | None = None,
        num_threads: int | None = None,
    ) -> None: ...
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
    def extra_repr(self) -> str: ...

class LinearCrossEntropyLoss(torch.nn.Module):
    """A language model's head and its loss in one module, without the logits."""

    linear: torch.nn.Linear
    weight: torch.Tensor | None
    reduction: _Reduction
    ignore_index: int | None
    label_smoothing: float
    softcap: float | None
    num_threads: int | None
    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        reduction: _Reduction = "mean",
        weight: torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        softcap: float | None = None,
        num_threads: int | None = None,
    ) -> None: ...
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
    def extra_repr(self) -> str: ...
