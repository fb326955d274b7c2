"""Check mode: recompute a result with :mod:`xent.reference` and raise if they disagree.

Turned on per call with ``check=True``, or for every call with ``XENT_CHECK=1`` in the
environment (``check=False`` on a call wins over the environment). Inputs of more than
:data:`MAX_CHECK_ROWS` rows are checked on a random sample of that many rows.
"""

import os

import numpy as np

from ._dtypes import DtypeTable

#: Largest number of rows recomputed by the reference in one check.
MAX_CHECK_ROWS = 2048

#: (rtol, atol) per result dtype: the check fails where |got - ref| > atol + rtol * |ref|.
#: The kernels compute in double from the given values, so float32 results are within a few
#: float32 ulps; these bounds leave room for that and nothing more.
#: bfloat16 keeps 8 significant bits.
BFLOAT16_TOLERANCE = (1.6e-2, 1.6e-2)
TOLERANCES = DtypeTable(
    {
        np.dtype(np.float16): (2e-3, 2e-3),
        np.dtype(np.float32): (1e-5, 1e-5),
        np.dtype(np.float64): (1e-10, 1e-10),
    },
    bfloat16=BFLOAT16_TOLERANCE,
)  # ml_dtypes' bfloat16 found by name, ml_dtypes not imported


class CheckError(AssertionError):
    """A result of xent disagrees with xent.reference beyond the documented tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> issubclass(xent.CheckError, AssertionError)
    True

    ``check=True`` (or ``XENT_CHECK=1`` in the environment) recomputes a call with
    :mod:`xent.reference` and raises this error if the two disagree beyond the tolerance of the
    dtype; a call that agrees returns its result as usual:

    >>> x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    >>> np.round(xent.log_softmax(x, check=True), 4)
    array([[-2.4076, -1.4076, -0.4076]], dtype=float32)
    """


def enabled(check):
    """Whether a call with this ``check`` argument is checked."""
    if check is None:
        return os.environ.get("XENT_CHECK", "").strip().lower() not in ("", "0", "false", "no")
    return bool(check)


def sample_rows(n_rows, seed=0):
    """Row indices to check: all rows, or a sorted random sample of MAX_CHECK_ROWS."""
    if n_rows <= MAX_CHECK_ROWS:
        return np.arange(n_rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=MAX_CHECK_ROWS, replace=False))


def resolution(dtype):
    """The absolute resolution of ``dtype`` near zero: its smallest subnormal step.

    A result stored in ``dtype`` is rounded to a multiple of it, whatever its size, so no
    relative tolerance covers a value that is subnormal in ``dtype`` (float16's step is 6e-8,
    where a gradient of a mean over many rows lies).
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return float(np.finfo(dtype).smallest_subnormal)
    return 2.0**-133  # bfloat16 (ml_dtypes, found by name): float32's exponent, 7 bits


def compare(name, got, expected, dtype, rows=None, unit=None):
    """Raise CheckError if ``got`` and ``expected`` differ beyond the tolerance of ``dtype``.

    NaN must meet NaN, and an infinity the same infinity. Values are per row (1-d) or per
    row and class (2-d); ``rows`` maps their first axis to the input rows, for the message.

    Besides ``atol + rtol * |expected|``, a difference of one step of the resolution of
    ``dtype`` (:func:`resolution`) is always allowed: the result was rounded to it. When the
    caller compares values divided by a scale (a gradient per unit of its incoming gradient),
    ``unit`` (broadcasting against ``got``) is that scale, and the step is divided by it too.
    """
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    step = resolution(dtype)
    if unit is not None:
        step = step / np.asarray(unit, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got - expected)
        allowed = atol + rtol * np.abs(expected) + step
        bad = ~((err <= allowed) | (got == expected) | (np.isnan(got) & np.isnan(expected)))
    if not bad.any():
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(bad, np.nan_to_num(err / allowed, nan=np.inf), -1.0)
    worst = np.unravel_index(int(np.argmax(excess)), got.shape)
    if got.ndim == 0:
        where = "value"
    else:
        row = int(rows[worst[0]]) if rows is not None else int(worst[0])
        where = f"row {row}" + (f", class {int(worst[1])}" if got.ndim == 2 else "")
    raise CheckError(
        f"xent.{name}: {where} differs from xent.reference: got {float(got[worst])!r}, "
        f"reference {float(expected[worst])!r} (|diff| {float(err[worst]):.3g}, tolerance "
        f"rtol={rtol:g}, atol={atol:g}; {int(bad.sum())} of {bad.size} values differ)"
    )
