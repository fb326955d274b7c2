# Type information for the extension xent._kernels (source: xent/_kernels.pyx and its
# _kernels_*.pxi parts): the row drivers over the C kernels. Array arguments are typed
# memoryviews at run time: any buffer of the right dtype and layout is taken; "floating"
# arguments are float32 or float64 (one type per call), half-precision rows are passed as
# their uint16 bits. The extension trusts its arguments (the Python layer checks them).
# Functions that found an out-of-range label return its row index, or -1.
import enum
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from xent._table import current_isa as current_isa
from xent._table import has_openmp as has_openmp
from xent._table import isa_supported as isa_supported
from xent._table import openmp_max_threads as openmp_max_threads
from xent._table import set_isa as set_isa

_Floating = NDArray[np.floating[Any]]
_Float64 = NDArray[np.float64]
_Float32 = NDArray[np.float32]
_Index = NDArray[np.intp]
_Bits = NDArray[np.uint16]

class Dist(enum.IntEnum):
    """What dist_rows computes per row."""

    DIST_ENTROPY = 0
    DIST_CROSS_ENTROPY = 1
    DIST_KL = 2

class Element(enum.IntEnum):
    """What elementwise computes."""

    ELEMENT_SELF_INFORMATION = 0
    ELEMENT_BINARY_ENTROPY = 1
    ELEMENT_BCE = 2
    ELEMENT_BCE_LOGITS = 3

def block_rows(ncols: int) -> int: ...

# rows: _kernels_rows.pxi
def logsumexp_rows(x: _Floating, out: _Floating, nthreads: int) -> None: ...
def logsumexp_rows_exact(x: _Floating, out: _Float64, nthreads: int) -> None: ...
def logsumexp_rows_weighted(
    x: _Float64, b: _Float64, out: _Float64, sign: _Float64, nthreads: int
) -> None: ...
def log_softmax_rows(x: _Floating, out: _Floating, nthreads: int) -> None: ...
def softmax_rows(x: _Floating, out: _Floating, nthreads: int) -> None: ...
def exp_array(x: _Floating, out: _Floating) -> None: ...
def log_array(x: _Floating, out: _Floating) -> None: ...
def log1p_array(x: _Floating, out: _Floating) -> None: ...

# losses: _kernels_losses.pxi; (sum of row losses, sum of weights, first bad row or -1)
# parts=True: the two sums as arrays of doubles whose exact sums they are (unrounded)
@overload
def index_loss(
    x: _Floating,
    target: _Index,
    weight: _Float64 | None,
    ignore_index: int,
    smoothing: float,
    log_probs: bool,
    row_loss: _Floating | None,
    nthreads: int,
    parts: Literal[False] = ...,
) -> tuple[float, float, int]: ...
@overload
def index_loss(
    x: _Floating,
    target: _Index,
    weight: _Float64 | None,
    ignore_index: int,
    smoothing: float,
    log_probs: bool,
    row_loss: _Floating | None,
    nthreads: int,
    parts: bool,
) -> tuple[Any, Any, int]: ...
@overload
def probability_loss(
    x: _Floating,
    p: _Floating,
    weight: _Float64 | None,
    smoothing: float,
    row_loss: _Floating | None,
    nthreads: int,
    parts: Literal[False] = ...,
) -> float: ...
@overload
def probability_loss(
    x: _Floating,
    p: _Floating,
    weight: _Float64 | None,
    smoothing: float,
    row_loss: _Floating | None,
    nthreads: int,
    parts: bool,
) -> Any: ...
def index_weight_total(
    target: _Index, weight: _Float64 | None, ignore_index: int, n_classes: int
) -> tuple[float, int]: ...
def index_loss_grad(
    x: _Floating,
    target: _Index,
    weight: _Float64 | None,
    ignore_index: int,
    smoothing: float,
    scale: float,
    grad_rows: _Float64 | None,
    row_loss: _Floating | None,
    grad: _Floating,
    nthreads: int,
    stream: bool = ...,
) -> tuple[float, float]: ...
def probability_loss_grad(
    x: _Floating,
    p: _Floating,
    weight: _Float64 | None,
    smoothing: float,
    scale: float,
    grad_rows: _Float64 | None,
    row_loss: _Floating | None,
    grad: _Floating,
    nthreads: int,
) -> float: ...

# float16 / bfloat16 rows as bits: _kernels_half.pxi
def split_row_length() -> int: ...
@overload
def index_loss_half(
    x: _Bits,
    bfloat: bool,
    target: _Index,
    weight: _Float64 | None,
    ignore_index: int,
    smoothing: float,
    log_probs: bool,
    row_loss: _Float32 | None,
    nthreads: int,
    parts: Literal[False] = ...,
) -> tuple[float, float, int]: ...
@overload
def index_loss_half(
    x: _Bits,
    bfloat: bool,
    target: _Index,
    weight: _Float64 | None,
    ignore_index: int,
    smoothing: float,
    log_probs: bool,
    row_loss: _Float32 | None,
    nthreads: int,
    parts: bool,
) -> tuple[Any, Any, int]: ...
def logsumexp_rows_half(x: _Bits, bfloat: bool, out: _Float32, nthreads: int) -> None: ...
def transform_rows_half(
    x: _Bits, bfloat: bool, softmax: bool, out: _Bits, nthreads: int
) -> None: ...
def index_loss_grad_half(
    x: _Bits,
    bfloat: bool,
    target: _Index,
    weight: _Float64 | None,
    ignore_index: int,
    smoothing: float,
    scale: float,
    grad_rows: _Float64 | None,
    row_loss: _Float32 | None,
    grad: _Bits,
    nthreads: int,
) -> tuple[float, float]: ...
def widen_half_rows(x: _Bits, bfloat: bool, out: _Float32, nthreads: int) -> None: ...
def narrow_half(x: _Float32, bfloat: bool, out: _Bits, nthreads: int) -> None: ...
def widen_half(h: _Bits, bfloat: bool, out: _Float32) -> None: ...

# information quantities: _kernels_info.pxi
def dist_rows(
    kind: int, p: _Floating, q: _Floating | None, out: _Float64, nthreads: int
) -> None: ...
def softmax_entropy_rows(x: _Floating, out: _Floating, nthreads: int) -> None: ...
def elementwise(
    kind: int,
    x: _Floating,
    y: _Floating | None,
    w: _Floating | None,
    pw: _Floating | None,
    out: _Floating | None,
    grad: _Floating | None,
    scale: float,
    gout: _Floating | None,
    nthreads: int,
) -> tuple[float, int]: ...

# evaluation: _kernels_evaluate.pxi
def evaluate_fields() -> int: ...
def evaluate_rows(
    x: _Floating,
    target: _Index,
    weight: _Float64,
    ignore_index: int,
    values: _Float64,
    rank: _Index,
    nthreads: int,
) -> None: ...
def group_sums(values: _Float64, row0: int, group: int, carry: _Float64, out: _Float64) -> int: ...
def add_in_order(rows: _Float64, total: _Float64) -> None: ...
def evaluate_summary(
    x: _Floating,
    target: _Index,
    weight: _Float64 | None,
    ignore_index: int,
    row0: int,
    group: int,
    carry: _Float64,
    closed: _Float64,
    topk: _Index,
    counts: NDArray[np.int64],
    fine: NDArray[np.int64],
    width: NDArray[np.int64],
    values: _Float64 | None,
    rank: _Index | None,
    nthreads: int,
) -> tuple[int, int]: ...
def evaluate_summary_half(
    h: _Bits,
    bfloat: bool,
    target: _Index,
    weight: _Float64 | None,
    ignore_index: int,
    row0: int,
    group: int,
    carry: _Float64,
    closed: _Float64,
    topk: _Index,
    counts: NDArray[np.int64],
    fine: NDArray[np.int64],
    width: NDArray[np.int64],
    values: _Float64 | None,
    rank: _Index | None,
    nthreads: int,
) -> tuple[int, int]: ...

# ---- divergences between rows (_kernels_divergence.pxi) ------------------------------------

def divergence_kinds() -> dict[str, int]: ...
def divergence_rows(
    s: _Floating,
    t: _Floating,
    scale: float,
    kind: int,
    beta: float,
    skip: NDArray[np.uint8] | None,
    coef: _Float64 | None,
    row_loss: _Float64,
    lse: _Float64 | None,
    grad: _Floating | None,
    nthreads: int,
) -> None: ...
def divergence_rows_half(
    s: _Bits,
    t: _Bits,
    bfloat: bool,
    scale: float,
    kind: int,
    beta: float,
    skip: NDArray[np.uint8] | None,
    coef: _Float64 | None,
    row_loss: _Float64,
    lse: _Float64 | None,
    grad: _Float32 | None,
    nthreads: int,
) -> None: ...
def add_scaled_softmax(
    x: _Floating, lse: _Float64, coef: _Float64, out: _Floating, nthreads: int
) -> None: ...

# ---- compare, evaluate's columns and calibration, exact sums -------------------------------

def compare_columns() -> tuple[str, ...]: ...
def compare_rows(
    ref: _Floating,
    cand: _Floating,
    target: _Index | None,
    ignore_index: int,
    values: _Float64,
    nthreads: int,
) -> None: ...
def evaluate_columns() -> tuple[str, ...]: ...
def calibration_histograms(
    values: _Float64,
    column: int,
    rank: _Index,
    fine: NDArray[np.int64],
    width: NDArray[np.int64],
) -> int: ...
@overload
def exact_sum(values: _Float64, parts: Literal[False] = ..., batched: bool = ...) -> float: ...
@overload
def exact_sum(values: _Float64, parts: bool, batched: bool = ...) -> Any: ...
def log_lanes_array(x: _Float64, plus_one: bool, out: _Float64) -> None: ...

# ---- memory probes for xent bench (_kernels_probe.pxi) --------------------------------------
def read_sum(x: _Floating, nthreads: int) -> float: ...
def copy_array(x: _Floating, out: _Floating, nthreads: int) -> float: ...
