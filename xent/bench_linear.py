"""Former home of ``xent bench``'s linear section, now :mod:`xent.bench.linear`; its names
stay importable from here."""

from .bench.linear import (
    CHECK_ROWS,
    CHECK_TOL,
    DEFAULT_SHAPES,
    LARGE_SHAPE,
    LinearCase,
    add_arguments,
    check_rows,
    disagreements,
    make_linear_data,
    measure,
    parse_linear_shape,
    print_linear,
    reference_mean,
    run_linear,
    select_linear_cases,
)
from .bench.measure import tracemalloc_peak

__all__ = [
    "CHECK_ROWS",
    "CHECK_TOL",
    "DEFAULT_SHAPES",
    "LARGE_SHAPE",
    "LinearCase",
    "add_arguments",
    "check_rows",
    "disagreements",
    "make_linear_data",
    "measure",
    "parse_linear_shape",
    "print_linear",
    "reference_mean",
    "run_linear",
    "select_linear_cases",
    "tracemalloc_peak",
]
