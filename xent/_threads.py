"""How many threads a call uses: the ``num_threads`` policy, resolved at call time."""

import contextlib
import functools
import numbers
import os
import threading

try:
    import resource
except ImportError:  # not on POSIX: no limits to read
    resource = None

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
    global _team_lock
    _team_lock = threading.Lock()  # a fork while another thread held it: free in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: Calls in flight (outermost public calls, across Python threads): a default thread count
#: is shared among them, so that eight threads of a pool each calling xent do not start
#: eight teams of all-CPU threads on the same cores.
_inflight = {"calls": 0}
_inflight_lock = threading.Lock()
_local = threading.local()


def shares_cpus(fn):
    """Decorator of a public function: count its call as in flight while it runs, and
    release an oversubscribed OpenMP team after it."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if getattr(_local, "depth", 0):  # a call inside another (perplexity): not counted
            return fn(*args, **kwargs)
        with _inflight_lock:
            _inflight["calls"] += 1
        _local.depth = 1
        _local.largest_team = 1
        try:
            return fn(*args, **kwargs)
        finally:
            _local.depth = 0
            with _inflight_lock:
                _inflight["calls"] -= 1
            if _local.largest_team > 1 and _local.largest_team > available_cpus():
                _shrink_team()

    return call


#: The switch that lets a count above the CPUs through (see :func:`oversubscribe`).
OVERSUBSCRIBE_ENV = "XENT_ALLOW_OVERSUBSCRIBE"


@contextlib.contextmanager
def oversubscribe(allowed=True):
    """Context manager: let ``num_threads`` above the CPUs this process may use through.

    Without it (and without ``XENT_ALLOW_OVERSUBSCRIBE=1`` in the environment) such a count
    is lowered to the CPUs: more threads than CPUs only take turns on the same cores, and
    each keeps a stack reserved. Results do not depend on the count either way. The switch
    holds for the calling Python thread, inside the ``with`` block.

    Parameters
    ----------
    allowed : bool
        True to allow counts above the CPUs, False to lower them inside the block even when
        the environment allows them.
    """
    previous = getattr(_local, "oversubscribe", None)
    _local.oversubscribe = bool(allowed)
    try:
        yield
    finally:
        _local.oversubscribe = previous


def oversubscription_allowed():
    """Whether a count above the CPUs is used as given (see :func:`oversubscribe`)."""
    switch = getattr(_local, "oversubscribe", None)
    if switch is not None:
        return switch
    return os.environ.get(OVERSUBSCRIBE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def available_cpus():
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_threads():
    """OMP_NUM_THREADS as a positive int (its first entry), or None if unset or invalid."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if not value:  # unset: no exception to raise and catch (a few microseconds a call)
        return None
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
        A positive int: that many, but never more than the CPUs this process may use
        unless oversubscription is allowed (:func:`oversubscribe`, or the environment
        variable ``XENT_ALLOW_OVERSUBSCRIBE=1``): a larger count is lowered to the CPUs,
        since more threads than cores only take turns on them. A negative int counts back
        from the CPUs this process may use: -1 is all of them, -2 all but one.
        In every case the count is then lowered to the team the process limits
        (RLIMIT_AS, RLIMIT_DATA, RLIMIT_NPROC, a cgroup's pids.max) let the OpenMP runtime
        start, down to one thread: the runtime ends the process when a thread of a team
        fails to start (:func:`threads_within_limits`).

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
    >>> xent.get_num_threads(1)  # a count above the CPUs would be lowered to their number
    1
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
                f"{num_threads!r}"
            )
        n = int(num_threads)
        if n == 0:
            raise ValueError(
                "num_threads must not be 0 (use None for the default, "
                "a positive count, or a negative one to count back from all CPUs)"
            )
        if n > MAX_THREADS:
            raise ValueError(
                f"num_threads={n} is more than the {MAX_THREADS} threads one call may use"
            )
        if n < 0:
            cpus = available_cpus()
            if cpus + 1 + n < 1:
                raise ValueError(f"num_threads={n} leaves no thread on {cpus} CPUs")
            n = cpus + 1 + n
        elif n > available_cpus() and not oversubscription_allowed():
            n = available_cpus()
    if n == 1 or not _table.has_openmp() or _state["serial_child"]:
        return 1
    if _limited():
        # Check and start under one lock: no other xent call takes the tasks or the address
        # space between this call's check and the runtime's thread starts. Where a limit is
        # near, the team is started now (the runtime then keeps its threads in the calling
        # thread's pool, and the call's regions of at most n threads create none), before
        # the call allocates its outputs: the stacks fit while the check says they do.
        with _team_lock:
            n, near = _team_within_limits(n)
            if near and n > 1:
                _start_team(n)
    if n == 1:
        return 1
    _state["threaded"] = True
    if getattr(_local, "depth", 0):
        _local.largest_team = max(getattr(_local, "largest_team", 1), n)
    return n


# ---- Teams the limits allow --------------------------------------------------------------
#
# GNU libgomp ends the process ("Thread creation failed") when it cannot start a thread of a
# team: a call must never ask for a team the process limits cannot hold. Each thread of a
# team costs one task (RLIMIT_NPROC, counted over all processes of the user; a cgroup's
# pids.max) and one stack of address space (RLIMIT_AS, RLIMIT_DATA). These are checked before
# the call, and the team is lowered to what fits, down to one thread (no thread created):
# results do not depend on the count. The check assumes every thread of the team is new (the
# runtime may already hold some in its pool), and leaves a margin for threads other code
# starts meanwhile, so it errs on the side of fewer threads.

#: Bytes of address space kept free for the call's own allocations beyond the stacks.
ADDRESS_RESERVE = 64 << 20
#: Tasks kept free under a task limit, for threads started by others at the same time.
TASK_RESERVE = 2
#: glibc's thread stack when RLIMIT_STACK is unlimited (x86-64 and aarch64: 2 MiB; measured
#: as the growth of VmSize per thread of a team).
_GLIBC_UNLIMITED_STACK = 2 << 20
_PAGE = 4096
_SIZE_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _parse_stacksize(text):
    """OMP_STACKSIZE's format ("512", "4M", "1 G"; kilobytes without a unit), or None."""
    text = text.strip().upper()
    unit = _SIZE_UNITS["K"]
    if text and text[-1] in _SIZE_UNITS:
        unit, text = _SIZE_UNITS[text[-1]], text[:-1].strip()
    return int(text) * unit if text.isdigit() else None


def thread_stack_bytes():
    """Address space one OpenMP worker thread reserves: its stack and a guard page.

    ``GOMP_STACKSIZE`` or ``OMP_STACKSIZE`` if set, else glibc's default: the soft
    RLIMIT_STACK (8 MiB on most systems), or 2 MiB when that is unlimited.
    """
    for name in ("GOMP_STACKSIZE", "OMP_STACKSIZE"):
        size = _parse_stacksize(os.environ.get(name, ""))
        if size:
            return size + _PAGE
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
        if soft != resource.RLIM_INFINITY:
            return soft + _PAGE
    return _GLIBC_UNLIMITED_STACK + _PAGE


def _soft_limit(kind):
    if resource is None or not hasattr(resource, kind):
        return None
    soft = resource.getrlimit(getattr(resource, kind))[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _proc_status_bytes(*fields):
    """Fields of /proc/self/status given in kB, in bytes (None where absent)."""
    found = dict.fromkeys(fields)
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in found:
                    found[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return found


def _tasks_on_system():
    """Tasks (threads) on the whole system, from /proc/loadavg: a bound on any user's."""
    try:
        with open("/proc/loadavg") as loadavg:
            return int(loadavg.read().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        return None


def _tasks_of_user(uid):
    """Tasks (threads) whose real user is ``uid``: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        real_uid = threads = None
        try:
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("Uid:"):
                        real_uid = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
        if real_uid == uid and threads:
            count += threads
    return count


#: The cgroup directories of this process that hold a pids.max, by process id: found once (a
#: call on a machine without them used to read /proc/self/cgroup and try its files every
#: time, 30 microseconds of a 50-microsecond call on a small array). A forked child looks
#: again; a process moved to another cgroup while it runs keeps the first answer.
_pids_dirs = {}


def _cgroup_pids_dirs():
    """The directories of this process's cgroups (v2, or v1's pids controller) that have a
    pids.max file."""
    pid = os.getpid()
    dirs = _pids_dirs.get(pid)
    if dirs is None:
        try:
            with open("/proc/self/cgroup") as cgroups:
                lines = cgroups.read().splitlines()
        except OSError:
            lines = []
        dirs = []
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # cgroup v2
                base = "/sys/fs/cgroup" + path.rstrip("/")
            elif "pids" in controllers.split(","):
                base = "/sys/fs/cgroup/pids" + path.rstrip("/")
            else:
                continue
            if os.path.exists(base + "/pids.max"):
                dirs.append(base)
        _pids_dirs.clear()
        _pids_dirs[pid] = dirs
    return dirs


def _cgroup_pids_headroom():
    """Tasks the cgroup of this process may still start (pids.max - pids.current), or None."""
    for base in _cgroup_pids_dirs():
        try:
            with open(base + "/pids.max") as most, open(base + "/pids.current") as current:
                limit = most.read().strip()
                if limit != "max":
                    return int(limit) - int(current.read().strip())
        except (OSError, ValueError):
            continue
    return None


def threads_within_limits(n):
    """The largest team of at most ``n`` threads this process's limits let the runtime start.

    Parameters
    ----------
    n : int
        Threads wanted, the calling thread included.

    Returns
    -------
    int
        Between 1 and ``n``: ``n`` when no limit is near, 1 when even one more thread might
        fail to start (a team of one starts no thread).
    """
    return _team_within_limits(n)[0]


#: A cgroup whose pids.max leaves fewer spare tasks than this is near its limit.
_PIDS_NEAR = 256


def _team_within_limits(n):
    """(threads_within_limits(n), whether a limit is near): an address limit, or tasks
    counted close enough to a task limit that the runtime's thread starts should follow the
    check at once (see get_num_threads)."""
    new = n - 1
    if new <= 0:
        return 1, False
    near = False
    sharing = max(1, _inflight["calls"])  # teams other xent calls may start at the same time
    address_limits = [
        (kind, field)
        for kind, field in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData"))
        if _soft_limit(kind) is not None
    ]
    if address_limits:
        near = True
        used = _proc_status_bytes(*(field for _, field in address_limits))
        stack = thread_stack_bytes()
        for kind, field in address_limits:
            free = _soft_limit(kind) - (used[field] or 0) - ADDRESS_RESERVE
            new = min(new, max(0, free) // (stack * sharing))
    tasks = _soft_limit("RLIMIT_NPROC")
    if tasks is not None and os.getuid() != 0:  # the kernel does not apply it to root
        on_system = _tasks_on_system()
        if on_system is None or on_system + new * sharing + TASK_RESERVE > tasks:
            near = True
            free = tasks - _tasks_of_user(os.getuid()) - TASK_RESERVE
            new = min(new, max(0, free) // sharing)
    pids = _cgroup_pids_headroom()
    if pids is not None:
        near = near or pids < new * sharing + _PIDS_NEAR
        new = min(new, max(0, pids - TASK_RESERVE) // sharing)
    return new + 1, near


# ---- Releasing an oversubscribed team ----------------------------------------------------
#
# libgomp keeps the threads of a calling thread's last team in a pool for its next region,
# for the life of the calling thread; a region with fewer threads (two or more; a region of
# one leaves the pool alone) lets the extra ones exit. Measured in /proc/self/status after
# cross_entropy on (200000, 50) float64: Threads 2 before, 78 after num_threads=100, 3 after
# a later num_threads=2 call, still 78 after a num_threads=1 call. A call that was allowed
# more threads than CPUs therefore ends with a two-thread region on a small fixed input.


#: Held from a limit check to the end of the team start it allows (see get_num_threads).
_team_lock = threading.Lock()


def _limited():
    """Whether a limit a team could reach is set: an address limit, a task limit the kernel
    applies (not to root), or a cgroup's pids.max. Without one no check or start is needed."""
    if _soft_limit("RLIMIT_AS") is not None or _soft_limit("RLIMIT_DATA") is not None:
        return True
    if _soft_limit("RLIMIT_NPROC") is not None and os.getuid() != 0:
        return True
    return _cgroup_pids_headroom() is not None


def _start_team(n):
    """Run a region of exactly ``n`` threads (the runtime then keeps n - 1 in its pool)."""
    import numpy as np

    from . import _kernels

    # Rows of one block each, enough blocks that the kernel (which gives each thread at
    # least 4) starts n threads; one zero row seen 4n times: 128 KiB of memory, about
    # 0.05 ms of work per thread.
    row = np.zeros(int(_kernels.block_rows(1)), dtype=np.float32)
    rows = np.broadcast_to(row, (4 * (n - 1) + 1, row.size))
    _kernels.logsumexp_rows(rows, np.empty(rows.shape[0], dtype=np.float32), n)


def _shrink_team():
    if _table.has_openmp() and not _state["serial_child"]:
        with _team_lock:
            _start_team(threads_within_limits(2))
