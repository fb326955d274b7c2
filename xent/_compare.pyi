# Type information for xent.compare and its report (the run time is xent/_compare.py).
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

COLUMNS: tuple[str, ...]
KL_PERCENTILES: tuple[float, ...]
SHIFT_PERCENTILES: tuple[float, ...]

class ComparisonReport:
    __match_args__ = (
        "count",
        "ignored",
        "kl",
        "kl_stderr",
        "kl_percentiles",
        "js",
        "top1_agreement",
        "top1_agreement_stderr",
        "ref_loss",
        "cand_loss",
        "ref_perplexity",
        "cand_perplexity",
        "perplexity_ratio",
        "perplexity_ratio_interval",
        "target_prob_shift",
        "stderr",
        "kl_values",
        "target_prob_shifts",
    )
    count: int
    ignored: int
    kl: float
    kl_stderr: float
    kl_percentiles: dict[float, float]
    js: float
    top1_agreement: float
    top1_agreement_stderr: float
    ref_loss: float | None
    cand_loss: float | None
    ref_perplexity: float | None
    cand_perplexity: float | None
    perplexity_ratio: float | None
    perplexity_ratio_interval: tuple[float, float] | None
    target_prob_shift: dict[str, float] | None
    stderr: dict[str, float]
    kl_values: NDArray[np.float32] | None
    target_prob_shifts: NDArray[np.float32] | None
    def __init__(
        self,
        count: int,
        ignored: int,
        kl: float,
        kl_stderr: float,
        kl_percentiles: dict[float, float],
        js: float,
        top1_agreement: float,
        top1_agreement_stderr: float,
        ref_loss: float | None = None,
        cand_loss: float | None = None,
        ref_perplexity: float | None = None,
        cand_perplexity: float | None = None,
        perplexity_ratio: float | None = None,
        perplexity_ratio_interval: tuple[float, float] | None = None,
        target_prob_shift: dict[str, float] | None = None,
        stderr: dict[str, float] = ...,
        kl_values: NDArray[np.float32] | None = None,
        target_prob_shifts: NDArray[np.float32] | None = None,
    ) -> None: ...
    def as_dict(self) -> dict[str, Any]: ...

def compare(
    ref: ArrayLike | Iterable[ArrayLike],
    cand: ArrayLike | Iterable[ArrayLike],
    labels: ArrayLike | Iterable[ArrayLike] | None = None,
    *,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
    num_threads: int | None = None,
    progress: bool = False,
) -> ComparisonReport: ...
