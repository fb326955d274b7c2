"""PyTorch adapter: xent's losses behind PyTorch's functions and modules, for training on CPU.

Each function takes PyTorch's arguments and layout (classes on dim 1 of an input of shape
``(N, C, d1, ...)``) and returns what its namesake in ``torch.nn.functional`` returns,
computed by xent on CPU tensors:

- :func:`cross_entropy`, :class:`CrossEntropyLoss`: ``F.cross_entropy``
- :func:`nll_loss`, :class:`NLLLoss`: ``F.nll_loss``
- :func:`binary_cross_entropy`, :class:`BCELoss`: ``F.binary_cross_entropy``
- :func:`binary_cross_entropy_with_logits`, :class:`BCEWithLogitsLoss`:
  ``F.binary_cross_entropy_with_logits``
- :func:`linear_cross_entropy`, :class:`LinearCrossEntropyLoss`: ``F.linear_cross_entropy``,
  plus ``softcap``

Every loss is a ``torch.library`` custom operator (``torch.ops.xent.*``) with a fake
implementation and an autograd formula, so ``torch.compile(fullgraph=True)`` traces it
without a graph break, and ``torch.func.vmap`` maps it (one call per mapped slice); in plain
eager mode the same implementation and formula run as a ``torch.autograd.Function``, without
the operator's dispatch. The
gradient comes from xent's fused kernels: the forward pass computes the loss and
``d loss / d input`` together when the input requires grad, and the backward pass only
scales the saved gradient by the incoming one. :func:`linear_cross_entropy` never forms the
N x V logits, in the forward pass or the backward.

The tensors are handed to xent without a copy: ``tensor.detach().numpy()`` shares the
tensor's memory, and xent reads any row stride in place. Only an input whose class dim is not
contiguous in memory (``(N, C, d1, ...)`` in the default contiguous format, unlike
``(N, C)`` or a ``torch.channels_last`` tensor) is copied once, by xent, with the class dim
last. float16 and bfloat16 are computed in float32 and returned in the input's dtype;
bfloat16 is read in place through ``ml_dtypes`` when it is installed, else widened to float32
first.

This package needs PyTorch; ``import xent`` never imports it.

Examples
--------
>>> import torch
>>> import xent.torch
>>> logits = torch.randn(8, 5, requires_grad=True)
>>> labels = torch.randint(0, 5, (8,))
>>> loss = xent.torch.cross_entropy(logits, labels, label_smoothing=0.1)
>>> loss.backward()
>>> expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
>>> bool(torch.allclose(loss, expected))
True
>>> logits.grad.shape
torch.Size([8, 5])
>>> criterion = xent.torch.CrossEntropyLoss(reduction="sum", num_threads=1)
>>> criterion(torch.randn(2, 5, 3), torch.randint(0, 5, (2, 3))).shape
torch.Size([])
"""

try:  # first, for a clear error without PyTorch (the submodules import it too)
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError("xent.torch needs PyTorch: pip install torch") from exc


# One file per concern: _common (checking, conversion, the custom-operator machinery), then
# one per family of losses, each registering its torch.ops.xent operators when imported.
from ._binary import (
    BCELoss,
    BCEWithLogitsLoss,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
)
from ._linear import LinearCrossEntropyLoss, linear_cross_entropy
from ._multiclass import CrossEntropyLoss, NLLLoss, cross_entropy, nll_loss

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

# The public names belong to xent.torch, where they were defined before the package was split:
# pickles of the modules (torch.save of a whole model) name xent.torch.CrossEntropyLoss & co.,
# and doctest and the API pages find them here.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
