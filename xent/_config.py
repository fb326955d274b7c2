"""What this build and this machine chose: kernel variant, OpenMP, threads."""

import os
import platform

import numpy as np

from . import _kernels
from ._threads import available_cpus, get_num_threads


def _select_isa_from_env():
    """Honour XENT_ISA ("auto", "avx512", "avx2", "baseline") once, at import."""
    requested = os.environ.get("XENT_ISA", "auto").strip().lower() or "auto"
    try:
        _kernels.set_isa(requested)
    except ValueError:
        _kernels.set_isa("auto")
        import warnings

        warnings.warn(f"XENT_ISA={requested!r} is not available here; using "
                      f"{_kernels.current_isa()!r}", RuntimeWarning, stacklevel=3)


def config():
    """The facts :func:`show_config` prints, as a dict."""
    from . import __version__

    return {
        "xent": __version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "isa": _kernels.current_isa(),
        "isa_available": [n for n in ("avx512", "avx2", "baseline")
                          if _kernels.isa_supported(n)],
        "openmp": _kernels.has_openmp(),
        "cpus": available_cpus(),
        "threads": get_num_threads(),
        "openmp_wait": _wait_policy(),
    }


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
