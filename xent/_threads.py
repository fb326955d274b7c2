"""How many threads a call uses: the ``num_threads`` policy, resolved at call time."""

import functools
import numbers
import os
import threading

from . import _table

#: The most threads one call may ask for: far beyond any machine, and within the C int the
#: OpenMP runtime takes (a larger count used to escape as OverflowError).
MAX_THREADS = 4096


#: Whether this process has run (or may have run) a kernel on more than one thread; and
#: whether it is a child forked after that. GNU libgomp's thread pool does not survive a
#: fork: a child that starts a parallel region waits forever for the parent's threads. Such a
#: child therefore runs every call on one thread (same results: they never depend on the
#: thread count). A child forked before any threaded call keeps its threads.
_state = {"threaded": False, "serial_child": False}


def _after_fork_in_child():
    if _state["threaded"]:
        _state["serial_child"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: Calls in flight (outermost public calls, across Python threads): a default thread count
#: is shared among them, so that eight threads of a pool each calling xent do not start
#: eight teams of all-CPU threads on the same cores.
_inflight = {"calls": 0}
_inflight_lock = threading.Lock()
_local = threading.local()


def shares_cpus(fn):
    """Decorator of a public function: count its call as in flight while it runs."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if getattr(_local, "depth", 0):  # a call inside another (perplexity): not counted
            return fn(*args, **kwargs)
        with _inflight_lock:
            _inflight["calls"] += 1
        _local.depth = 1
        try:
            return fn(*args, **kwargs)
        finally:
            _local.depth = 0
            with _inflight_lock:
                _inflight["calls"] -= 1
    return call


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


def calls_in_flight():
    """xent calls running in this process, the caller's own (running or about to) included."""
    return _inflight["calls"] + (0 if getattr(_local, "depth", 0) else 1)


def get_num_threads(num_threads=None):
    """Number of threads a call with this ``num_threads`` argument would use.

    Parameters
    ----------
    num_threads : int or None
        ``None``: ``OMP_NUM_THREADS`` if set, else the CPUs this process may use, and never
        more than the OpenMP runtime's current limit (which ``threadpoolctl`` lowers, for
        the thread that called it: OpenMP's limits are per thread), shared among the xent
        calls running at the same time in this process (each gets at least one). Results
        do not depend on the count.
        A positive int: that many. A negative int counts back from the CPUs this process
        may use: -1 is all of them, -2 all but one.

    Returns
    -------
    int
        At least 1. A build without OpenMP always runs one thread and returns 1, and so
        does a process forked from one that had run threaded calls (OpenMP's threads do
        not survive a fork; without this the child would hang).

    Raises
    ------
    TypeError
        If ``num_threads`` is not an int (or is a bool).
    ValueError
        If it is 0, above :data:`MAX_THREADS`, or negative beyond the number of CPUs.

    Examples
    --------
    >>> import xent
    >>> xent.get_num_threads(3)
    3
    >>> xent.get_num_threads() >= 1  # the default: the CPUs this process may use, shared
    True
    >>> xent.get_num_threads(-1) >= xent.get_num_threads()  # -1: every CPU this process may use
    True

    Every function takes ``num_threads``; the results have the same bits on any count:

    >>> import numpy as np
    >>> x = np.linspace(-3.0, 3.0, 4000).reshape(400, 10)
    >>> bool((xent.logsumexp(x, num_threads=1) == xent.logsumexp(x, num_threads=2)).all())
    True
    """
    if num_threads is None:
        n = _env_threads() or available_cpus()
        n = min(n, max(1, _table.openmp_max_threads()))
        n = max(1, n // calls_in_flight())
    else:
        if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
            raise TypeError(
                f"num_threads must be an int or None, got {type(num_threads).__name__} "
                f"{num_threads!r}")
        n = int(num_threads)
        if n == 0:
            raise ValueError("num_threads must not be 0 (use None for the default, "
                             "a positive count, or a negative one to count back from all CPUs)")
        if n > MAX_THREADS:
            raise ValueError(f"num_threads={n} is more than the {MAX_THREADS} threads one "
                             f"call may use")
        if n < 0:
            cpus = available_cpus()
            if cpus + 1 + n < 1:
                raise ValueError(f"num_threads={n} leaves no thread on {cpus} CPUs")
            n = cpus + 1 + n
    if n == 1 or not _table.has_openmp() or _state["serial_child"]:
        return 1
    _state["threaded"] = True
    return n
