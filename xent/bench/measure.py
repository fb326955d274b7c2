"""Measuring: interleaved timing with medians, peak memory (resident set and tracemalloc),
and the state of the machine (busy CPUs, the git commit).

Nothing here knows about xent's functions: each helper times or measures the calls it is
given, so that ``xent bench``, ``xent`` (the demo) and the scripts in ``benchmarks/`` measure
alike.
"""

import ctypes
import gc
import os
import statistics
import subprocess
import time
import tracemalloc


#: Runs shorter than this (seconds) follow an untimed run of the same call when
#: ``time_interleaved`` is asked to warm them: see there.
WARM_BELOW = 0.02
#: The pause before such a warming run (seconds): long enough for the threads of the call
#: before (another library's OpenMP runtime) to stop spinning and sleep. libgomp spins for
#: 300000 rounds by default, milliseconds.
WARM_PAUSE = 0.01


def time_interleaved(calls, repeat, max_runs=None, warm_below=None):
    """Time interleaved runs: each call once per round, ``repeat`` rounds.

    Interleaving makes a noisy neighbour slow every call alike, so the ratios of the medians
    stay meaningful on a shared machine. But between two runs of a call the others run: its
    thread pool falls asleep (waking it cost a 0.4 ms call 1.1 ms more on a 2-CPU VM, 65536
    x 2 float32 on two threads after a 10 ms pause), and another library's threads may still
    spin on the cores (each OpenMP runtime spins a while after its region). With
    ``warm_below``, a call whose last run took less than that many seconds waits WARM_PAUSE
    (the other threads go to sleep) and runs once untimed right before its timed run: the
    steady state of a loop over batches, for every call alike.

    Parameters
    ----------
    calls : dict
        Name -> function of no argument, or a pair (setup, function): ``setup()`` runs
        untimed before each run (an in-place call's input restored).
    repeat : int
        Number of rounds.
    max_runs : dict, optional
        Name -> largest number of runs of that call (it sits out the later rounds).
    warm_below : float, optional
        Seconds: runs shorter than this (judged by the call's previous run; the first
        round always warms) are preceded by an untimed run (its setup too).

    Returns
    -------
    timings : dict
        Name -> list of seconds.
    results : dict
        Name -> the value its last run returned.
    """
    max_runs = max_runs or {}
    timings = {name: [] for name in calls}
    results = {}
    for round_index in range(repeat):
        for name, fn in calls.items():
            if round_index >= max_runs.get(name, repeat):
                continue
            results[name] = None  # free the previous result before the next run
            setup = None
            if isinstance(fn, tuple):
                setup, fn = fn
            previous = timings[name][-1] if timings[name] else 0.0
            if warm_below is not None and previous < warm_below:
                time.sleep(WARM_PAUSE)
                if setup is not None:
                    setup()
                fn()
            if setup is not None:
                setup()
            start = time.perf_counter()
            value = fn()
            timings[name].append(time.perf_counter() - start)
            results[name] = value
    return timings, results


def median_time(fn, repeat):
    """Median seconds of ``repeat`` runs of ``fn()``, and the value of the last run.

    Parameters
    ----------
    fn : callable
        Called with no argument.
    repeat : int
        Number of timed runs (at least 1).

    Returns
    -------
    seconds : float
    value : object
    """
    timings, results = time_interleaved({"fn": fn}, repeat)
    return statistics.median(timings["fn"]), results["fn"]


def medians_of(timings):
    """Name -> median of its timings (names without a timing are left out)."""
    return {name: statistics.median(ts) for name, ts in timings.items() if ts}


def speedups_of(medians):
    """Name -> its median over xent's: above 1 xent is faster, below 1 slower."""
    return {name: t / medians["xent"] for name, t in medians.items() if name != "xent"}


def relative_difference(value, expected):
    """``|value - expected| / |expected|`` (inf where only ``expected`` is 0, nan for NaNs)."""
    value, expected = float(value), float(expected)
    if value == expected:
        return 0.0
    if expected == 0:
        return float("inf")
    return abs(value - expected) / abs(expected)


# --------------------------------------------------------------------------------------------
# Memory


def _proc_status(field_name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field_name)


def release_free_heap():
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim(0)``).

    Without this, memory that earlier calls freed stays resident, and a call that reuses it
    shows no rise of the resident set although it allocates. A no-op off glibc.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)


def peak_rss_rise(fn):
    """Rise of the process's peak resident set during one call of ``fn()``, in bytes.

    The peak (VmHWM) is reset before the call through ``/proc/self/clear_refs``; unlike
    tracemalloc this also sees PyTorch's allocator. Free heap pages are released first
    (:func:`release_free_heap`), so that an allocation reusing memory an earlier call freed
    is counted too.

    Parameters
    ----------
    fn : callable
        Called once with no argument; its result is dropped.

    Returns
    -------
    int or None
        Bytes, or None where the kernel offers no such counters (not Linux).
    """
    gc.collect()
    release_free_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status("VmRSS")
    except (OSError, KeyError):
        return None
    fn()
    return max(0, _proc_status("VmHWM") - before)


def tracemalloc_peak(fn):
    """Peak of the memory traced by tracemalloc during one call of ``fn()`` (numpy's arrays)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------------------------
# The machine


def _cpu_times():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # total, idle+iowait


def busy_cpus(interval=0.25):
    """CPUs kept busy by other work, measured over ``interval`` seconds before the run.

    Returns
    -------
    float or None
        For example 1.0 when another process spins on one core; None without /proc/stat.
    """
    try:
        total0, idle0 = _cpu_times()
        time.sleep(interval)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    ticks = total1 - total0
    if ticks <= 0:
        return None
    cpus = os.cpu_count() or 1
    return cpus * (1 - (idle1 - idle0) / ticks)


def git_commit():
    """``git rev-parse HEAD`` in the current directory, or None where that fails."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None
