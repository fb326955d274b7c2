"""How many threads a call uses: the ``num_threads`` policy, resolved at call time."""

import functools
import numbers
import os
import threading

from . import _kernels


def available_cpus():
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_threads():
    """OMP_NUM_THREADS as a positive int (its first entry), or None if unset or invalid."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n > 0 else None


# xent calls running now in this process, each counted once however deeply it nests public
# functions: an automatic thread count is the CPUs shared among them, so that eight caller
# threads on two cores run one kernel thread each instead of sixteen threads fighting.
_in_flight = 0
_in_flight_lock = threading.Lock()
_depth = threading.local()


def shares_cpus(function):
    """Decorator of public functions: count the call among the xent calls in flight."""
    @functools.wraps(function)
    def counted(*args, **kwargs):
        global _in_flight
        depth = getattr(_depth, "value", 0)
        if depth == 0:
            with _in_flight_lock:
                _in_flight += 1
        _depth.value = depth + 1
        try:
            return function(*args, **kwargs)
        finally:
            _depth.value = depth
            if depth == 0:
                with _in_flight_lock:
                    _in_flight -= 1
    return counted


def calls_in_flight():
    """xent calls running in this process, the caller's own (running or about to) included."""
    return _in_flight + (0 if getattr(_depth, "value", 0) else 1)


def get_num_threads(num_threads=None):
    """Number of threads a call with this ``num_threads`` argument would use.

    Parameters
    ----------
    num_threads : int or None
        ``None``: ``OMP_NUM_THREADS`` if set, else the CPUs this process may use, shared
        among the xent calls running at the same time in this process (each gets at least
        one), and never more than the OpenMP runtime's current limit (which
        ``threadpoolctl`` lowers). Results do not depend on the count.
        A positive int: that many. A negative int counts back from the CPUs this process
        may use: -1 is all of them, -2 all but one.

    Returns
    -------
    int
        At least 1. A build without OpenMP always runs one thread and returns 1.

    Raises
    ------
    TypeError
        If ``num_threads`` is not an int (or is a bool).
    ValueError
        If it is 0, or negative beyond the number of CPUs.
    """
    if num_threads is None:
        n = _env_threads() or available_cpus() // calls_in_flight()
        n = max(1, min(n, _kernels.openmp_max_threads()))
    else:
        if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
            raise TypeError(
                f"num_threads must be an int or None, got {type(num_threads).__name__} "
                f"{num_threads!r}")
        n = int(num_threads)
        if n == 0:
            raise ValueError("num_threads must not be 0 (use None for the default, "
                             "a positive count, or a negative one to count back from all CPUs)")
        if n < 0:
            cpus = available_cpus()
            if cpus + 1 + n < 1:
                raise ValueError(f"num_threads={n} leaves no thread on {cpus} CPUs")
            n = cpus + 1 + n
    return n if _kernels.has_openmp() else 1
