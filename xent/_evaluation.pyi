# Type information for xent.evaluate and xent.EvaluationReport (run-time code:
# xent/_evaluation.py, also importable under its old name xent.evaluate). The names after
# the public two are the module's seams for xent.dask and the command line.
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._calibration import CalibrationHistogram

#: A path to a .npy file (memory-mapped), or an array.
_Source = ArrayLike | str | os.PathLike[str]
#: How evaluate's calibration bins split the confidences.
_Calibration = Literal["mass", "width"]

GROUP_ROWS: int
CHUNK_BYTES: int
MAX_CHUNK_ROWS: int
PARALLEL_ELEMENTS: int
PARALLEL_ROWS: int
FIELDS: int

@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`evaluate` measured."""

    loss: float
    perplexity: float
    accuracy: float
    topk_accuracy: tuple[tuple[int, float], ...]
    entropy: float
    count: int
    ignored: int
    brier: float = ...
    confidence: float = ...
    ece: float = ...
    mce: float = ...
    calibration: str = "mass"
    calibration_table: NDArray[np.float64] | None = None
    ece_error_bound: float = 0.0
    stderr: dict[str, float] = ...
    bits_per_byte: float | None = None
    byte_perplexity: float | None = None
    document_loglikelihood: NDArray[np.float64] | None = None
    def interval(self, name: str) -> tuple[float, float]: ...
    def top(self, k: int) -> float: ...
    @property
    def topks(self) -> tuple[int, ...]: ...
    def as_dict(self) -> dict[str, float | int]: ...

def evaluate(
    logits: _Source | Iterable[tuple[_Source, _Source]],
    labels: _Source | Iterable[_Source] | None = None,
    *,
    topk: int | Iterable[int] = (1, 5),
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
    num_threads: int | None = None,
    progress: bool = False,
    calibration: _Calibration = "mass",
    calibration_bins: int = 15,
    num_bytes: int | _Source | None = None,
    documents: _Source | None = None,
) -> EvaluationReport: ...

@dataclass
class BlockSummary:
    row0: int
    nrows: int
    head: NDArray[np.float64]
    groups: NDArray[np.float64]
    carry: NDArray[np.float64]
    tail_rows: int
    count: int
    ignored: int
    hits: NDArray[np.int64]
    calibration: CalibrationHistogram | None = None

class Accumulator:
    topk: tuple[int, ...]
    requested: tuple[int, ...]
    group: int
    row: int
    carry: NDArray[np.float64]
    total: NDArray[np.float64]
    count: int
    ignored: int
    hits: NDArray[np.int64]
    def __init__(
        self,
        topk: tuple[int, ...],
        requested: tuple[int, ...],
        group: int = ...,
        calibration: _Calibration = "mass",
        calibration_bins: int = 15,
    ) -> None: ...
    def add_chunk(
        self,
        rows: NDArray[np.floating[Any]] | HalfRows,
        target: NDArray[np.intp],
        weights: NDArray[np.float64] | None,
        ignore_index: int,
        threads: int,
        values: NDArray[np.float64] | None = None,
        rank: NDArray[np.intp] | None = None,
    ) -> int: ...
    def add_values(self, values: NDArray[np.float64]) -> None: ...
    def add_ranks(
        self, rank: NDArray[np.intp], values: NDArray[np.float64] | None = None
    ) -> None: ...
    def merge(self, s: BlockSummary) -> None: ...
    def report(self) -> EvaluationReport: ...

class EvaluationOptions:
    requested: tuple[int, ...]
    topk: tuple[int, ...]
    weight_arg: ArrayLike | None
    weights: dict[int, NDArray[np.float64]]
    ignore_index: int
    threads: int
    n_classes: int | None
    def __init__(
        self,
        topk: int | Iterable[int],
        weight: ArrayLike | None,
        ignore_index: int,
        num_threads: int | None,
    ) -> None: ...
    def class_weights(self, n_classes: int) -> NDArray[np.float64]: ...

def block_summary(
    values: NDArray[np.float64],
    rank: NDArray[np.intp],
    row0: int,
    topk: tuple[int, ...],
    group: int = ...,
    calibration_bins: int = 15,
) -> BlockSummary: ...
def check_chunk_rows(chunk_rows: int | None) -> int | None: ...
def default_chunk_rows(n_classes: int, dtype: np.dtype[Any]) -> int: ...
def evaluate_chunk(
    rows: NDArray[np.floating[Any]],
    labels: NDArray[np.integer[Any]],
    row0: int,
    opts: EvaluationOptions,
    name: str = "",
    local0: int = 0,
    buffers: Any = None,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]: ...

class HalfRows:
    bits: NDArray[np.uint16]
    bfloat: bool
    def __init__(self, bits: NDArray[np.uint16], bfloat: bool) -> None: ...
    def __len__(self) -> int: ...

def evaluate_chunk_into(
    acc: Accumulator,
    rows: NDArray[Any],
    labels: NDArray[np.integer[Any]],
    opts: EvaluationOptions,
    name: str = "",
    local0: int = 0,
    buffers: Any = None,
    units: LanguageModelUnits | None = None,
) -> None: ...

PIECE_BYTES: int
SUBROW_COLS: int

def long_row_cols(dtype: np.dtype[Any]) -> int: ...
def evaluate_long_row(
    rows: Any,
    i: int,
    label: int,
    row0: int,
    opts: EvaluationOptions,
    name: str = "",
    local0: int = 0,
    scratch: Any = None,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]: ...

class LanguageModelUnits:
    total_bytes: int | None
    row_bytes: Any
    documents: Any
    loglik: NDArray[np.float64]
    def __init__(
        self,
        num_bytes: int | _Source | None,
        documents: _Source | None,
        weight: ArrayLike | None,
        labels_shape: tuple[int, ...],
    ) -> None: ...
    def add(self, start: int, values: NDArray[np.float64], rank: NDArray[np.intp]) -> None: ...
    def finish(self, report: EvaluationReport, loss_total: float) -> EvaluationReport: ...
