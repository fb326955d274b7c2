"""The one owner of the kernels' instruction set, and what this build and machine chose.

The C kernels are compiled once per instruction set into :mod:`xent._table`, whose table every
driver calls through. This module chooses the variant once, at import: ``XENT_ISA`` if set
(``auto``, ``avx512``, ``avx2``, ``baseline``), else the best this CPU runs. Tests and
benchmarks switch it with :func:`set_isa`; :func:`config` and :func:`show_config` report it.
"""

import os
import platform
import warnings

import numpy as np

from . import _table
from ._threads import available_cpus, get_num_threads

#: Every kernel variant a build may carry, best first; each CPU runs some of them.
ISAS = ("avx512", "avx2", "baseline")

#: What XENT_ISA and set_isa accept: a variant, or "auto" (the best this CPU runs).
CHOICES = ("auto",) + ISAS


def set_isa(name):
    """Run every kernel with this instruction set from now on; return the variant chosen.

    Parameters
    ----------
    name : str
        ``"auto"`` (the best this CPU runs), ``"avx512"``, ``"avx2"`` or ``"baseline"``.

    Returns
    -------
    str
        The variant now in use (``"auto"`` resolved).

    Raises
    ------
    ValueError
        If ``name`` is not one of those, or this CPU or build cannot run it.

    Not thread-safe: call it between calls of xent's functions, not during them.
    """
    if not isinstance(name, str) or name not in CHOICES:
        raise ValueError(f"isa must be one of {', '.join(CHOICES)}; got {name!r}")
    if name != "auto" and not _table.isa_supported(name):
        raise ValueError(
            f"isa {name!r} is not supported by this CPU or build; it runs "
            f"{', '.join(available_isas())}"
        )
    return _table.set_isa(name)


def current_isa():
    """The kernel variant in use, such as ``"avx2"``."""
    return _table.current_isa()


def isa_supported(name):
    """Whether this CPU and build can run the kernel variant ``name``."""
    return name in ISAS and _table.isa_supported(name)


def available_isas():
    """The kernel variants this CPU and build can run, best first."""
    return [name for name in ISAS if _table.isa_supported(name)]


def _select_isa_from_env():
    """Honour XENT_ISA once, at import; an unknown or unsupported value warns, and runs auto."""
    requested = os.environ.get("XENT_ISA", "auto").strip().lower() or "auto"
    try:
        set_isa(requested)
    except ValueError:
        chosen = set_isa("auto")
        valid = ", ".join(["auto"] + available_isas())
        warnings.warn(
            f"XENT_ISA={requested!r} is not a kernel variant this CPU and build run "
            f"(valid values: {valid}); using {chosen!r}",
            RuntimeWarning,
            stacklevel=2,
        )


def config():
    """The facts :func:`show_config` prints, as a dict."""
    from . import __version__

    return {
        "xent": __version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "isa": current_isa(),
        "isa_available": available_isas(),
        "openmp": _table.has_openmp(),
        "cpus": available_cpus(),
        "threads": get_num_threads(),
        "openmp_wait": _wait_policy(),
        "blas": _blas_description(),
    }


def _blas_description():
    """The BLAS of the linear head's gemms (xent.linear.blas_info), in a line."""
    from . import _blas

    try:
        info = _blas.info()
    except Exception as error:  # a BLAS that cannot be loaded must not hide the rest
        return f"unavailable ({type(error).__name__}: {error})"
    return f"{info['description']} (CPU: {info['cpu']}; {info['reason']})"


def _wait_policy():
    """How OpenMP threads wait at barriers, as the environment sets it."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    spin = os.environ.get("GOMP_SPINCOUNT")
    if policy:
        return f"OMP_WAIT_POLICY={policy}" + (f", GOMP_SPINCOUNT={spin}" if spin else "")
    return f"GOMP_SPINCOUNT={spin}" if spin else "runtime default"


def show_config(file=None):
    """Print the kernel variant, threads and versions xent runs with.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default: standard output).

    Examples
    --------
    >>> import xent
    >>> xent.show_config()  # doctest: +ELLIPSIS
              xent: ...
    ...
               isa: ...
    ...
           threads: ...
    ...

    ``XENT_ISA``, set in the environment before xent is imported, chooses one of the kernel
    variants listed under ``isa_available`` instead of the fastest one (``auto``).
    """
    for key, value in config().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:>14}: {value}", file=file)


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


_select_isa_from_env()
