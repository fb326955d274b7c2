# Type information for the extension xent._linear (source: xent/_linear.pyx): the tiled
# linear cross-entropy. Array arguments are typed memoryviews at run time: any buffer of the
# right dtype and layout is taken; "floating" arguments are float32 or float64, one type per
# call. The extension trusts its arguments (xent.linear checks them).
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xent._table import current_isa as current_isa
from xent._table import set_isa as set_isa

_Floating = NDArray[np.floating[Any]]
_Float64 = NDArray[np.float64]

def tiling() -> tuple[int, int]: ...
def use_gemm(sgemm_address: int = 0, dgemm_address: int = 0, ilp64: bool = False) -> None: ...
def vocab_chunks(n: int, vocab: int) -> int: ...
def set_chunk_bytes(nbytes: int) -> int: ...
def chunk_unit() -> int: ...
def chunk_rows(n: int, vocab: int, itemsize: int) -> int: ...
def forward(
    hidden: _Floating,
    weight: _Floating,
    bias: _Floating | None,
    target: NDArray[np.intp],
    softcap: float,
    want_sum: bool,
    row_stats: _Float64,
    nthreads: int,
    row_extra: _Float64 | None = None,
    log_sum: _Float64 | None = None,
) -> None: ...
def gradient(
    hidden: _Floating,
    weight: _Floating,
    bias: _Floating | None,
    target: NDArray[np.intp],
    softcap: float,
    want_sum: bool,
    row_stats: _Float64,
    log_sum: _Float64,
    row_scale: _Float64,
    keep: float,
    spread: float,
    grad_hidden: _Floating,
    grad_weight: _Floating,
    grad_bias: _Float64 | None,
    nthreads: int,
    z_loss: float = 0,
) -> None: ...
