"""What ``xent bench`` measures: the shapes and dtypes, their data, and the tolerances.

Also the argparse types for shapes and counts, shared with ``xent`` and ``xent eval``.
"""

import argparse
import importlib
import re
from dataclasses import dataclass

import numpy as np

from .. import reference
from .._threads import get_num_threads
from .measure import relative_difference

#: The name of xent.evaluate's timings in a case's results: its column is its median time over
#: cross_entropy's (evaluate reads the rows once for the loss, accuracy, top-k, entropy, Brier
#: score and calibration; the aim is within 1.5x of the loss alone).
EVALUATE = "xent.evaluate"


#: The reference runs over this many rows at a time (its float64 temporaries stay small).
REFERENCE_ROWS = 2048
#: The numpy reference is slow: it runs at most this many times per shape.
REFERENCE_MAX_RUNS = 3
#: Shapes and dtypes measured by default: (rows, classes, dtype).
DEFAULT_CASES = [
    (1 << 20, 2, "float32"),
    (1 << 20, 10, "float32"),
    (1 << 20, 64, "float32"),
    (65536, 1000, "float32"),
    (8192, 32000, "float32"),
    (64, 1 << 20, "float32"),
    (65536, 1000, "float64"),
    (1 << 20, 10, "bfloat16"),
    (8192, 32000, "bfloat16"),
    (1 << 20, 10, "float16"),
    (8192, 32000, "float16"),
]
#: The shape of the loss + gradient measurement.
DEFAULT_GRAD_SHAPE = (8192, 32000)
#: ``--quick`` divides the rows of every shape by this.
QUICK_DIVISOR = 16
#: Relative tolerance of the agreement check, per dtype (a half dtype's result is rounded to
#: it: a few of its ulps).
RTOL = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-4, "float64": 1e-9}
DTYPES = tuple(RTOL)
#: Rows of the gradients compared between xent and PyTorch.
GRAD_CHECK_ROWS = 256

_SHAPE_RE = re.compile(r"^\s*(\d+)([km]?)\s*x\s*(\d+)([km]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20}


# --------------------------------------------------------------------------------------------
# argparse types


def parse_shape(text):
    """``ROWSxCLASSES`` as a pair of positive ints; ``k`` and ``M`` suffixes are 2**10, 2**20.

    Parameters
    ----------
    text : str
        For example ``"65536x1000"``, ``"64kx1000"`` or ``"64x1M"``.

    Returns
    -------
    tuple of int
        ``(rows, classes)``.

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is no such shape.
    """
    match = _SHAPE_RE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected ROWSxCLASSES such as 65536x1000 or 64x1M, got {text!r}"
        )
    rows = int(match[1]) * _SUFFIX[match[2].lower()]
    classes = int(match[3]) * _SUFFIX[match[4].lower()]
    if rows < 1 or classes < 1:
        raise argparse.ArgumentTypeError(f"rows and classes must be positive, got {text!r}")
    return rows, classes


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def thread_count(text):
    """argparse type: a thread count that xent.get_num_threads accepts, explained in terms
    of the command line (leave the option out for the default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value == 0:
        raise argparse.ArgumentTypeError(
            "must not be 0: give a count (4), a count back from all CPUs (-1: all of them, "
            "-2: all but one), or leave --threads out for the default"
        )
    try:
        get_num_threads(value)
    except ValueError as exc:  # phrased for the API: name the option instead
        raise argparse.ArgumentTypeError(str(exc).replace("num_threads=", "--threads ")) from None
    return value


# --------------------------------------------------------------------------------------------
# Cases and data


@dataclass(frozen=True)
class Case:
    """One measured shape: ``rows`` x ``classes`` logits of ``dtype``."""

    rows: int
    classes: int
    dtype: str

    @property
    def label(self):
        """``"65536 x 1000"``."""
        return f"{self.rows} x {self.classes}"

    @property
    def elements(self):
        """Number of logits."""
        return self.rows * self.classes

    @property
    def nbytes(self):
        """Bytes of logits read by one call."""
        return self.elements * numpy_dtype(self.dtype).itemsize


def numpy_dtype(name):
    """The numpy dtype of a :data:`DTYPES` name (bfloat16 from ml_dtypes)."""
    if name == "bfloat16":
        try:
            return np.dtype(importlib.import_module("ml_dtypes").bfloat16)
        except ImportError:
            raise SystemExit(
                "xent bench: --dtype bfloat16 needs ml_dtypes (pip install ml_dtypes)"
            ) from None
    return np.dtype(name)


def has_bfloat16():
    """Whether ml_dtypes, numpy's bfloat16, is installed."""
    try:
        importlib.import_module("ml_dtypes")
    except ImportError:
        return False
    return True


def select_cases(args):
    """The cases the options ask for, in order, without duplicates.

    Parameters
    ----------
    args : argparse.Namespace
        With ``shape``, ``dtype`` and ``quick``.

    Returns
    -------
    list of Case
    """
    if args.shape:
        cases = [Case(rows, classes, args.dtype or "float32") for rows, classes in args.shape]
    else:
        divisor = QUICK_DIVISOR if args.quick else 1
        cases = [
            Case(max(1, rows // divisor), classes, args.dtype or dtype)
            for rows, classes, dtype in DEFAULT_CASES
        ]
        if not has_bfloat16():  # the default run goes on without them (--dtype asks for it)
            cases = [case for case in cases if case.dtype != "bfloat16"]
    return list(dict.fromkeys(cases))


def select_grad_case(args):
    """The shape of the loss + gradient measurement: the first ``--shape``, else the default."""
    if args.shape:
        rows, classes = args.shape[0]
    else:
        rows, classes = DEFAULT_GRAD_SHAPE
        if args.quick:
            rows = max(1, rows // QUICK_DIVISOR)
    return Case(rows, classes, args.dtype or "float32")


def make_data(case, seed):
    """Standard normal logits and uniform int64 labels for a case, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((case.rows, case.classes), dtype=np.float32)
    logits = logits.astype(numpy_dtype(case.dtype), copy=False)
    labels = rng.integers(0, case.classes, case.rows)
    return logits, labels


def reference_mean(logits, labels, rows=REFERENCE_ROWS, progress=None):
    """Mean cross-entropy by :mod:`xent.reference`, ``rows`` rows at a time.

    Parameters
    ----------
    logits, labels : numpy.ndarray
        Shapes (N, C) and (N,).
    rows : int, optional
        Rows per block: the reference's float64 temporaries are a few times one block.
    progress : callable, optional
        Called with the number of rows done after each block.
    """
    total = 0.0
    for start in range(0, len(labels), rows):
        stop = start + rows
        total += reference.cross_entropy(logits[start:stop], labels[start:stop], reduction="sum")
        if progress is not None:
            progress(min(stop, len(labels)))
    return float(total) / len(labels)


def agrees(value, expected, dtype):
    """Whether ``value`` is within the dtype's relative tolerance (:data:`RTOL`) of xent's."""
    return relative_difference(value, expected) <= RTOL[dtype]
