# Type information for xent.torch (run-time code: xent/torch.py; needs PyTorch, which ships
# its own types).
from typing import Literal

import torch

__all__ = ["CrossEntropyLoss", "cross_entropy"]

def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Literal["mean", "sum", "none"] = "mean",
    label_smoothing: float = 0.0,
    num_threads: int | None = None,
) -> torch.Tensor: ...

class CrossEntropyLoss(torch.nn.Module):
    """xent's cross-entropy as a module, with torch.nn.CrossEntropyLoss's arguments."""

    weight: torch.Tensor | None
    ignore_index: int
    reduction: Literal["mean", "sum", "none"]
    label_smoothing: float
    num_threads: int | None
    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: Literal["mean", "sum", "none"] = "mean",
        label_smoothing: float = 0.0,
        num_threads: int | None = None,
    ) -> None: ...
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
    def extra_repr(self) -> str: ...
