"""The ``xent bench`` command: xent against the numpy reference and the installed peers.

Mean cross-entropy with integer labels, timed as interleaved runs in one process (xent, the
reference, each peer, xent, ...) so that a noisy neighbour slows all of them alike; the table
gives medians and the ratios of medians. Every result is checked against xent's; a
disagreement is printed and makes the exit status 1.

Peers, each skipped with a note where it is not installed: PyTorch
(``torch.nn.functional.cross_entropy``), SciPy (``scipy.special.logsumexp`` minus the target
logit), scikit-learn (its private ``HalfMultinomialLoss``) and JAX with optax
(``optax.softmax_cross_entropy_with_integer_labels``, jitted).
"""

import argparse
import ctypes
import gc
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import reference
from ._api import cross_entropy, cross_entropy_with_grad
from ._config import config
from ._threads import get_num_threads

#: The reference runs over this many rows at a time (its float64 temporaries stay small).
REFERENCE_ROWS = 2048
#: The numpy reference is slow: it runs at most this many times per shape.
REFERENCE_MAX_RUNS = 3
#: Shapes and dtypes measured by default: (rows, classes, dtype).
DEFAULT_CASES = [
    (1 << 20, 10, "float32"),
    (65536, 1000, "float32"),
    (8192, 32000, "float32"),
    (64, 1 << 20, "float32"),
    (65536, 1000, "float64"),
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
_PLOT_SUFFIXES = ("", ".png", ".pdf", ".svg")


# --------------------------------------------------------------------------------------------
# Arguments


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
            f"expected ROWSxCLASSES such as 65536x1000 or 64x1M, got {text!r}")
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
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def thread_count(text):
    """argparse type: a thread count that xent.get_num_threads accepts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    try:
        get_num_threads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    return value


def _output_path(suffixes=None):
    """An argparse type: a file path whose directory exists (checked before the long run)."""
    def check(text):
        directory = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(directory):
            raise argparse.ArgumentTypeError(f"directory {directory!r} does not exist")
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text!r} is a directory")
        if suffixes is not None and os.path.splitext(text)[1].lower() not in suffixes:
            raise argparse.ArgumentTypeError(
                f"expected a .png, .pdf or .svg file name, got {text!r}")
        return text
    return check


def add_arguments(parser):
    """Add the options of ``xent bench`` to an argparse parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``bench`` subcommand's parser.
    """
    parser.add_argument("--quick", action="store_true",
                        help=f"shapes {QUICK_DIVISOR}x smaller in rows (under a minute)")
    parser.add_argument("--shape", type=parse_shape, action="append", metavar="NxC",
                        help="rows x classes, e.g. 65536x1000 or 64x1M (repeatable; replaces "
                             "the default shapes; the first is also the gradient's shape)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="dtype of every shape (default: float32 for --shape; the default "
                             "shapes are float32 and one float64; bfloat16 needs ml_dtypes)")
    parser.add_argument("--threads", type=thread_count, default=None,
                        help="threads for xent and PyTorch (default: all CPUs this process "
                             "may use)")
    parser.add_argument("--repeat", type=positive_int, default=5,
                        help=f"timed runs per shape, medians reported (default 5; the numpy "
                             f"reference at most {REFERENCE_MAX_RUNS})")
    parser.add_argument("--no-grad", dest="grad", action="store_false",
                        help="leave out the loss + gradient measurement")
    parser.add_argument("--scaling", action="store_true",
                        help="also time xent on 1..THREADS threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--json", type=_output_path(), metavar="FILE",
                        help="write every timing, the medians and the configuration as JSON")
    parser.add_argument("--plot", type=_output_path(_PLOT_SUFFIXES), metavar="FILE.png",
                        help="draw the throughputs (and thread scaling) with matplotlib")
    from . import bench_linear  # its own module: it imports this one

    bench_linear.add_arguments(parser)


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
            return np.dtype(_import("ml_dtypes").bfloat16)
        except ImportError:
            raise SystemExit("xent bench: --dtype bfloat16 needs ml_dtypes "
                             "(pip install ml_dtypes)") from None
    return np.dtype(name)


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
        cases = [Case(max(1, rows // divisor), classes, args.dtype or dtype)
                 for rows, classes, dtype in DEFAULT_CASES]
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


def reference_mean(logits, labels):
    """Mean cross-entropy by :mod:`xent.reference`, :data:`REFERENCE_ROWS` rows at a time."""
    total = 0.0
    for start in range(0, len(labels), REFERENCE_ROWS):
        stop = start + REFERENCE_ROWS
        total += reference.cross_entropy(logits[start:stop], labels[start:stop],
                                         reduction="sum")
    return float(total) / len(labels)


# --------------------------------------------------------------------------------------------
# Peers


class PeerSkipped(Exception):
    """A peer that cannot run here (or on one case); the message says why."""


@dataclass
class Peer:
    """A library measured against xent.

    Attributes
    ----------
    name : str
        Short name, used as the key in the table and the JSON.
    title : str
        What is called, for the header.
    version : str
        The library's version.
    threads : str
        How many threads it runs, in words.
    prepare : callable
        ``prepare(logits, labels)`` returns a function of no argument computing the mean
        loss as a float; raises :class:`PeerSkipped` if the case is out of its reach.
    prepare_grad : callable or None
        ``prepare_grad(logits, labels)`` returns a function computing ``(loss, gradient)``.
    close : callable
        Restores what loading changed (PyTorch's thread count).
    """

    name: str
    title: str
    version: str
    threads: str
    prepare: Callable
    prepare_grad: Optional[Callable] = None
    close: Callable = field(default=lambda: None)


def _import(name):
    """Import a module and each package above it (``a``, then ``a.b``), by name.

    A module that is absent, or blocked with ``sys.modules[name] = None``, raises
    ImportError even when a submodule of it was imported before.
    """
    parts = name.split(".")
    module = None
    for i in range(1, len(parts) + 1):
        module = importlib.import_module(".".join(parts[:i]))
    return module


def load_torch(threads):
    """PyTorch's ``F.cross_entropy``, on ``threads`` threads until ``close()``."""
    torch = _import("torch")
    functional = _import("torch.nn.functional")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def tensor(logits):
        if logits.dtype.name == "bfloat16":   # no numpy bfloat16 in torch: share the bits
            return torch.from_numpy(logits.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(logits)

    def prepare(logits, labels):
        x, t = tensor(logits), torch.from_numpy(labels)
        return lambda: float(functional.cross_entropy(x, t))

    def prepare_grad(logits, labels):
        t = torch.from_numpy(labels)

        def forward_backward():
            x = tensor(logits).requires_grad_(True)
            loss = functional.cross_entropy(x, t)
            loss.backward()
            grad = x.grad
            if grad.dtype == torch.bfloat16:
                return float(loss.detach()), grad.view(torch.int16).numpy().view(logits.dtype)
            return float(loss.detach()), grad.numpy()
        return forward_backward

    return Peer("torch", "torch.nn.functional.cross_entropy", torch.__version__,
                f"{threads} thread{'s' * (threads != 1)}", prepare, prepare_grad,
                close=lambda: torch.set_num_threads(previous))


def load_scipy(threads):
    """SciPy: ``logsumexp(x, axis=1) - x[arange, y]``, mean (numpy, one thread)."""
    scipy = _import("scipy")
    special = _import("scipy.special")

    def prepare(logits, labels):
        rows = np.arange(len(labels))
        return lambda: float(np.mean(special.logsumexp(logits, axis=1) - logits[rows, labels]))

    return Peer("scipy", "scipy.special.logsumexp - target logit", scipy.__version__,
                "1 thread", prepare)


def load_sklearn(threads):
    """scikit-learn's private ``HalfMultinomialLoss`` on ``threads`` threads."""
    sklearn = _import("sklearn")
    try:
        loss_module = _import("sklearn._loss.loss")
        loss_class = loss_module.HalfMultinomialLoss
    except (ImportError, AttributeError) as exc:
        raise PeerSkipped(f"its private API differs ({exc})")

    def prepare(logits, labels):
        if logits.dtype.itemsize < 4:
            raise PeerSkipped("float32 and float64 only")
        try:
            loss = loss_class(n_classes=logits.shape[1])
        except TypeError as exc:
            raise PeerSkipped(f"its private API differs ({exc})")
        y_true = labels.astype(logits.dtype)
        return lambda: float(np.mean(loss.loss(y_true=y_true, raw_prediction=logits,
                                               n_threads=threads)))

    return Peer("sklearn", "sklearn._loss.loss.HalfMultinomialLoss", sklearn.__version__,
                f"{threads} thread{'s' * (threads != 1)}", prepare)


def load_jax(threads):
    """JAX with optax: ``softmax_cross_entropy_with_integer_labels``, mean, jitted."""
    jax = _import("jax")
    optax = _import("optax")
    mean_loss = jax.jit(
        lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean())

    def prepare(logits, labels):
        if logits.dtype == np.float64 and not jax.config.jax_enable_x64:
            raise PeerSkipped("float64 needs JAX_ENABLE_X64=1")
        x = jax.device_put(logits)
        y = jax.device_put(labels.astype(np.int32))
        return lambda: float(mean_loss(x, y))

    return Peer("jax", "optax.softmax_cross_entropy_with_integer_labels (jit)",
                f"{jax.__version__}, optax {optax.__version__}", "XLA's own pool", prepare)


#: (name, loader) of every peer, in the table's order.
PEER_LOADERS = [
    ("torch", load_torch),
    ("scipy", load_scipy),
    ("sklearn", load_sklearn),
    ("jax", load_jax),
]


def load_peers(threads):
    """Load every installed peer.

    Parameters
    ----------
    threads : int
        Threads for the peers that take a count.

    Returns
    -------
    peers : list of Peer
        The peers that loaded.
    skipped : dict
        Peer name -> why it is skipped (``"not installed"``, or a note).
    """
    peers, skipped = [], {}
    for name, loader in PEER_LOADERS:
        try:
            peers.append(loader(threads))
        except ImportError:
            skipped[name] = "not installed"
        except PeerSkipped as exc:
            skipped[name] = str(exc)
        except Exception as exc:  # a broken install must not end the benchmark
            skipped[name] = f"failed to load: {type(exc).__name__}: {exc}"
    return peers, skipped


# --------------------------------------------------------------------------------------------
# Measuring


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

    The peak (VmHWM) is reset before the call through ``/proc/self/clear_refs``, as
    ``benchmarks/memory.py`` does; unlike tracemalloc this also sees PyTorch's allocator.
    Free heap pages are released first (:func:`release_free_heap`), so that an allocation
    reusing memory an earlier call freed is counted too.

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


def time_interleaved(calls, repeat, max_runs=None):
    """Time interleaved runs: each call once per round, ``repeat`` rounds.

    Parameters
    ----------
    calls : dict
        Name -> function of no argument, or a pair (setup, function): ``setup()`` runs
        untimed before each run (an in-place call's input restored).
    repeat : int
        Number of rounds.
    max_runs : dict, optional
        Name -> largest number of runs of that call (it sits out the later rounds).

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
            if isinstance(fn, tuple):
                setup, fn = fn
                setup()
            start = time.perf_counter()
            value = fn()
            timings[name].append(time.perf_counter() - start)
            results[name] = value
    return timings, results


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


def agrees(value, expected, dtype):
    """Whether ``value`` is within the dtype's relative tolerance (:data:`RTOL`) of xent's."""
    return relative_difference(value, expected) <= RTOL[dtype]


def _prepare_peers(peers, logits, labels, grad=False):
    """Name -> call for each peer that runs on this data (after one untimed warm-up call).

    Returns the calls and a dict name -> why a peer sits this case out.
    """
    calls, skipped = {}, {}
    for peer in peers:
        prepare = peer.prepare_grad if grad else peer.prepare
        if prepare is None:
            continue
        try:
            fn = prepare(logits, labels)
            fn()  # warm-up: thread pools, allocator arenas, jit compilation
        except PeerSkipped as exc:
            skipped[peer.name] = str(exc)
        except Exception as exc:  # e.g. MemoryError, or a private API that changed
            skipped[peer.name] = f"failed: {type(exc).__name__}: {exc}"
        else:
            calls[peer.name] = fn
    return calls, skipped


def run_case(case, peers, threads, repeat, seed, scaling=False):
    """Time xent, the reference and the peers on one case; check and measure memory.

    Parameters
    ----------
    case : Case
    peers : list of Peer
    threads : int
        Threads for xent.
    repeat : int
        Timed runs of each (the reference at most :data:`REFERENCE_MAX_RUNS`).
    seed : int
        Seed of the data.
    scaling : bool, optional
        Also time xent on 1..``threads`` threads.

    Returns
    -------
    dict
        The case's raw numbers: timings, medians, speedups, results, agreement, memory,
        skipped peers and (with ``scaling``) the thread scaling.
    """
    logits, labels = make_data(case, seed)

    def run_xent():
        return float(cross_entropy(logits, labels, num_threads=threads))

    run_xent()  # warm-up
    peer_calls, skipped = _prepare_peers(peers, logits, labels)
    calls = {"xent": run_xent, "reference": lambda: reference_mean(logits, labels),
             **peer_calls}
    timings, results = time_interleaved(
        calls, repeat, {"reference": min(repeat, REFERENCE_MAX_RUNS)})
    medians = medians_of(timings)
    expected = results["xent"]
    memory = {"xent": peak_rss_rise(run_xent)}
    if "torch" in calls:
        memory["torch"] = peak_rss_rise(calls["torch"])
    return {
        "rows": case.rows, "classes": case.classes, "dtype": case.dtype,
        "elements": case.elements, "bytes": case.nbytes,
        "timings": timings, "medians": medians, "speedup": speedups_of(medians),
        "gelem_per_s": case.elements / medians["xent"] / 1e9,
        "gb_per_s": case.nbytes / medians["xent"] / 1e9,
        "results": results,
        "relative_difference": {name: relative_difference(value, expected)
                                for name, value in results.items() if name != "xent"},
        "agree": {name: agrees(value, expected, case.dtype)
                  for name, value in results.items() if name != "xent"},
        "rtol": RTOL[case.dtype],
        "peak_rss_rise": memory,
        "skipped": skipped,
        "scaling": measure_scaling(logits, labels, threads, repeat) if scaling else None,
    }


def measure_scaling(logits, labels, max_threads, repeat):
    """xent's timings on 1..``max_threads`` threads, interleaved.

    Returns
    -------
    dict
        ``{"threads": [...], "timings": [[...], ...], "medians": [...]}``.
    """
    counts = list(range(1, max_threads + 1))
    calls = {n: (lambda n=n: cross_entropy(logits, labels, num_threads=n)) for n in counts}
    timings, _ = time_interleaved(calls, repeat)
    return {"threads": counts, "timings": [timings[n] for n in counts],
            "medians": [statistics.median(timings[n]) for n in counts]}


def run_grad(case, peers, threads, repeat, seed):
    """Time ``xent.cross_entropy_with_grad`` against PyTorch's forward + backward.

    The gradients are compared on :data:`GRAD_CHECK_ROWS` rows spread over the batch: the
    largest difference must be within the dtype's relative tolerance of the largest entry.

    Returns
    -------
    dict
        Timings, medians, speedups, losses, agreement and peak extra memory of each.
    """
    logits, labels = make_data(case, seed)
    check_rows = np.unique(np.linspace(0, case.rows - 1, min(case.rows, GRAD_CHECK_ROWS))
                           .astype(np.int64))

    def run_xent():
        loss, grad = cross_entropy_with_grad(logits, labels, num_threads=threads)
        return float(loss), grad

    # A training loop keeps one gradient buffer: out= skips the first touch of fresh pages,
    # which costs the new-array call a quarter of a second per GB, and varies run to run.
    buffer = np.empty_like(logits)

    def run_xent_out():
        loss, grad = cross_entropy_with_grad(logits, labels, num_threads=threads, out=buffer)
        return float(loss), grad

    # In place (out=logits) the gradient overwrites its input, which is restored untimed.
    work = logits.copy()

    def run_xent_inplace():
        loss, grad = cross_entropy_with_grad(work, labels, num_threads=threads, out=work)
        return float(loss), grad

    run_xent()  # warm-up
    run_xent_out()
    peer_calls, skipped = _prepare_peers(peers, logits, labels, grad=True)
    calls = {"xent": run_xent, "xent_out": run_xent_out,
             "xent_inplace": (lambda: np.copyto(work, logits), run_xent_inplace), **peer_calls}
    timings, results = time_interleaved(calls, repeat)
    medians = medians_of(timings)
    loss, grad = results["xent"]
    grad_rows = grad[check_rows]
    losses, rel_loss, rel_grad, agree = {"xent": loss}, {}, {}, {}
    for name, (peer_loss, peer_grad) in results.items():
        if name == "xent":
            continue
        losses[name] = peer_loss
        rel_loss[name] = relative_difference(peer_loss, loss)
        scale = float(np.max(np.abs(peer_grad[check_rows])))
        worst = float(np.max(np.abs(peer_grad[check_rows] - grad_rows)))
        rel_grad[name] = worst / scale if scale else (0.0 if worst == 0 else float("inf"))
        agree[name] = bool(rel_loss[name] <= RTOL[case.dtype]
                           and rel_grad[name] <= RTOL[case.dtype])
    del results, grad, grad_rows
    memory = {name: peak_rss_rise(fn[1] if isinstance(fn, tuple) else fn)
              for name, fn in calls.items()}
    return {"rows": case.rows, "classes": case.classes, "dtype": case.dtype,
            "elements": case.elements, "bytes": case.nbytes,
            "timings": timings, "medians": medians, "speedup": speedups_of(medians),
            "losses": losses, "relative_difference_loss": rel_loss,
            "relative_difference_grad": rel_grad, "agree": agree, "rtol": RTOL[case.dtype],
            "peak_rss_rise": memory, "skipped": skipped}


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
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


# --------------------------------------------------------------------------------------------
# Printing


def format_time(seconds):
    """``"41.9 ms"``, ``"12.5 us"``, ``"3.42 s"``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def format_ratio(ratio):
    """A speedup as ``"12.3x"``; slowdowns alike (``"0.8x"``, ``"0.04x"``), never hidden."""
    if ratio >= 100:
        return f"{ratio:.0f}x"
    if ratio >= 0.1:
        return f"{ratio:.1f}x"
    return f"{ratio:.2g}x"


def format_bytes(nbytes):
    """``"1000.0 MiB"``, or ``"-"`` for None."""
    if nbytes is None:
        return "-"
    return f"{nbytes / 2**20:.1f} MiB"


def print_header(report, peers, skipped, file=None):
    """CPU, kernel variant, threads, versions, peers and the skipped ones."""
    cfg = report["config"]
    versions = [f"xent {cfg['xent']}", f"numpy {cfg['numpy']}", f"python {cfg['python']}"]
    versions += [f"{peer.name} {peer.version}" for peer in peers]
    print(f"xent bench: mean cross-entropy with integer labels, medians of {report['repeat']} "
          f"interleaved runs (the numpy reference: {min(report['repeat'], REFERENCE_MAX_RUNS)})",
          file=file)
    print(f"  cpu:      {cfg['processor']} ({cfg['cpus']} CPUs available)", file=file)
    print(f"  kernels:  {cfg['isa']} (available: {', '.join(cfg['isa_available'])}; "
          f"OpenMP: {'yes' if cfg['openmp'] else 'no'})", file=file)
    print(f"  threads:  xent {report['threads']}", file=file)
    busy = report["busy_cpus_before"]
    if busy is not None and busy >= 0.3:
        print(f"  WARNING:  other processes kept {busy:.1f} of {os.cpu_count()} CPUs busy just "
              f"before the run: timings (on all threads most of all) will be slow and noisy",
              file=file)
    print(f"  versions: {', '.join(versions)}", file=file)
    for peer in peers:
        print(f"  peer:     {peer.name}: {peer.title}, {peer.threads}", file=file)
    for name, why in skipped.items():
        print(f"  skipped:  {name}: {why}", file=file)
    print(file=file)


class Table:
    """A fixed-width table printed a row at a time (the columns are known in advance)."""

    def __init__(self, headers, widths, file=None):
        self.widths = [max(len(h), w) for h, w in zip(headers, widths)]
        self.file = file
        self.row(headers)
        print("  ".join("-" * w for w in self.widths), file=file)

    def row(self, cells):
        """Print one row: the first cell left-aligned, the others right-aligned."""
        parts = [cells[0].ljust(self.widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(cells[1:], self.widths[1:])]
        print("  ".join(parts).rstrip(), file=self.file, flush=True)


def forward_table(cases, peer_names, file=None):
    """The forward table's columns for these cases and peers; prints its header."""
    headers = ["shape", "dtype", "xent", "Gelem/s", "GB/s", "vs reference"]
    headers += [f"vs {name}" for name in peer_names]
    headers += ["xent mem", "torch mem"]
    widths = [max(len(case.label) for case in cases), 7, 9, 7, 6, 7]
    widths += [7] * len(peer_names) + [10, 10]
    return Table(headers, widths, file)


def forward_row(result, peer_names):
    """The cells of one case's row."""
    def ratio(name):
        if name not in result["speedup"]:
            return "-"
        mark = "" if result["agree"][name] else " !"
        return format_ratio(result["speedup"][name]) + mark

    memory = result["peak_rss_rise"]
    return ([f"{result['rows']} x {result['classes']}", result["dtype"],
             format_time(result["medians"]["xent"]), f"{result['gelem_per_s']:.2f}",
             f"{result['gb_per_s']:.2f}", ratio("reference")]
            + [ratio(name) for name in peer_names]
            + [format_bytes(memory.get("xent")),
               format_bytes(memory.get("torch")) if "torch" in memory else "-"])


def disagreements(report):
    """One message for each result that differs from xent's beyond the tolerance."""
    messages = []
    for result in report["cases"]:
        shape = f"{result['rows']} x {result['classes']} {result['dtype']}"
        for name, ok in result["agree"].items():
            if not ok:
                messages.append(
                    f"{name} gives {result['results'][name]!r} where xent gives "
                    f"{result['results']['xent']!r} on {shape}: relative difference "
                    f"{result['relative_difference'][name]:.2e} > {result['rtol']:.0e}")
    if report.get("linear"):
        from . import bench_linear

        messages += bench_linear.disagreements(report["linear"])
    grad = report.get("grad")
    if grad:
        shape = f"{grad['rows']} x {grad['classes']} {grad['dtype']}"
        for name, ok in grad["agree"].items():
            if not ok:
                messages.append(
                    f"{name} loss + gradient differ from xent's on {shape}: relative "
                    f"difference of the loss {grad['relative_difference_loss'][name]:.2e}, "
                    f"of the gradient {grad['relative_difference_grad'][name]:.2e} "
                    f"(tolerance {grad['rtol']:.0e})")
    return messages


def print_case_skips(report, file=None):
    """Peers that sat out single cases, and why."""
    for result in report["cases"]:
        for name, why in result["skipped"].items():
            print(f"  {name} skipped on {result['rows']} x {result['classes']} "
                  f"{result['dtype']}: {why}", file=file)


def print_grad(grad, file=None):
    """The loss + gradient table."""
    print(f"\nLoss + gradient, {grad['rows']} x {grad['classes']} {grad['dtype']} "
          f"({format_bytes(grad['bytes'])} of logits):", file=file)
    titles = {"xent": "xent.cross_entropy_with_grad",
              "xent_out": "  same, out=a reused buffer",
              "xent_inplace": "  same, in place (out=logits)",
              "torch": "torch forward + backward"}
    torch_median = grad["medians"].get("torch")
    table = Table(["who", "median", "vs torch", "peak extra memory"],
                  [max(len(t) for t in titles.values()), 9, 9, 17], file)
    for name, median in grad["medians"].items():
        ratio = "-" if name == "torch" or torch_median is None else format_ratio(
            torch_median / median)
        if name != "xent" and not grad["agree"][name]:
            ratio += " !"
        table.row([titles.get(name, name), format_time(median), ratio,
                   format_bytes(grad["peak_rss_rise"].get(name))])
    for name, why in grad["skipped"].items():
        print(f"  {name} skipped: {why}", file=file)


def print_scaling(report, file=None):
    """xent's throughput on 1..n threads for every case."""
    counts = report["cases"][0]["scaling"]["threads"]
    print("\nThread scaling of xent, Gelem/s (speedup over 1 thread):", file=file)
    widths = [max(len(f"{r['rows']} x {r['classes']} {r['dtype']}") for r in report["cases"])]
    table = Table(["shape"] + [f"{n} thread{'s' * (n != 1)}" for n in counts],
                  widths + [14] * len(counts), file)
    for result in report["cases"]:
        medians = result["scaling"]["medians"]
        table.row([f"{result['rows']} x {result['classes']} {result['dtype']}"]
                  + [f"{result['elements'] / m / 1e9:.2f} ({format_ratio(medians[0] / m)})"
                     for m in medians])


# --------------------------------------------------------------------------------------------
# Files


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json(report, path):
    """Write the report (every timing, the medians, the configuration) as JSON."""
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=_json_default)
        f.write("\n")


def import_matplotlib_figure():
    """``matplotlib.figure``, or None if matplotlib is not installed."""
    try:
        _import("matplotlib")
        return _import("matplotlib.figure")
    except ImportError:
        return None


def write_plot(report, path, figure_module):
    """Draw throughput per shape (bars) and, if measured, xent's thread scaling (lines).

    Parameters
    ----------
    report : dict
        What :func:`run` measured.
    path : str
        The image file; its extension chooses the format (PNG by default).
    figure_module : module
        ``matplotlib.figure`` (drawn without pyplot, so no display is needed).
    """
    cases = report["cases"]
    scaling = cases and cases[0]["scaling"] is not None
    fig = figure_module.Figure(figsize=(13 if scaling else 8, 4.8), layout="constrained")
    axes = fig.subplots(1, 2 if scaling else 1, squeeze=False)[0]
    _draw_throughput(axes[0], report)
    if scaling:
        _draw_scaling(axes[1], report)
    fig.suptitle(f"xent {report['config']['xent']}, {report['config']['processor']}, "
                 f"{report['threads']} threads")
    fig.savefig(path, dpi=110)


def _draw_throughput(ax, report):
    cases = report["cases"]
    names = ["xent", "reference"] + [n for n in report["peers"]
                                      if any(n in c["medians"] for c in cases)]
    width = 0.8 / len(names)
    positions = np.arange(len(cases))
    for i, name in enumerate(names):
        values = [c["elements"] / c["medians"][name] / 1e9 if name in c["medians"] else np.nan
                  for c in cases]
        ax.bar(positions + (i - (len(names) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(positions, [f"{c['rows']}x{c['classes']}\n{c['dtype']}" for c in cases])
    ax.set_yscale("log")
    ax.set_ylabel("Gelem/s (logits per second / 1e9)")
    ax.set_title("Mean cross-entropy throughput (higher is better)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)


def _draw_scaling(ax, report):
    for c in report["cases"]:
        counts = c["scaling"]["threads"]
        ax.plot(counts, [c["elements"] / m / 1e9 for m in c["scaling"]["medians"]], "o-",
                label=f"{c['rows']}x{c['classes']} {c['dtype']}")
    ax.set_xticks(counts)
    ax.set_xlabel("threads")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Gelem/s")
    ax.set_title("xent thread scaling")
    ax.legend()
    ax.grid(alpha=0.3)


# --------------------------------------------------------------------------------------------
# The command


def _progress(message):
    if sys.stderr.isatty():
        print(f"\r\033[K  {message}", end="", file=sys.stderr, flush=True)


def _clear_progress():
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


def run(args):
    """Run ``xent bench``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        The options :func:`add_arguments` defines.

    Returns
    -------
    int
        0; 1 if a result disagrees with xent's (or the reader of the output went away);
        2 if ``--plot`` is given without matplotlib.
    """
    try:
        return _run(args)
    except BrokenPipeError:  # xent bench | head: the reader has gone, say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1


def _run(args):
    figure_module = None
    if args.plot:
        figure_module = import_matplotlib_figure()
        if figure_module is None:
            print("xent bench: error: --plot needs matplotlib, which is not installed "
                  "(pip install matplotlib), or leave out --plot", file=sys.stderr)
            return 2
    threads = get_num_threads(args.threads)
    cases = select_cases(args)
    peers, skipped = load_peers(threads)
    try:
        report = measure(args, cases, peers, skipped, threads)
    finally:
        for peer in peers:
            peer.close()
    messages = disagreements(report)
    for message in messages:
        print(f"DISAGREEMENT: {message}")
    report["disagreements"] = messages
    report["exit_status"] = 1 if messages else 0
    if args.json:
        write_json(report, args.json)
        print(f"\nwrote {args.json}")
    if figure_module is not None:
        write_plot(report, args.plot, figure_module)
        print(f"wrote {args.plot}")
    if messages:
        print(f"\nxent bench: {len(messages)} result(s) DISAGREE with xent beyond the "
              f"tolerance; exit status 1", file=sys.stderr)
    return report["exit_status"]


def measure(args, cases, peers, skipped, threads):
    """Measure every case (printing the table a row at a time) and the gradient.

    Returns
    -------
    dict
        The report: configuration, options, every case's numbers, the gradient's.
    """
    report = {
        "config": config(), "commit": git_commit(), "threads": threads,
        "busy_cpus_before": busy_cpus(),
        "arguments": {k: v for k, v in vars(args).items() if k != "run"},
        "repeat": args.repeat, "reference_max_runs": min(args.repeat, REFERENCE_MAX_RUNS),
        "reference_rows": REFERENCE_ROWS, "seed": args.seed, "quick": args.quick,
        "peers": {p.name: {"title": p.title, "version": p.version, "threads": p.threads}
                  for p in peers},
        "skipped": skipped, "cases": [], "grad": None,
    }
    print_header(report, peers, skipped)
    if getattr(args, "linear_only", False):
        cases, args.grad = [], False
    peer_names = [peer.name for peer in peers]
    table = forward_table(cases, peer_names) if cases else None
    for case in cases:
        _progress(f"measuring {case.label} {case.dtype} ...")
        result = run_case(case, peers, threads, args.repeat, args.seed, args.scaling)
        _clear_progress()
        report["cases"].append(result)
        table.row(forward_row(result, peer_names))
    if cases:
        print("\nvs X: X's median time / xent's median time: above 1x xent is faster, below "
              "1x slower.\nmem: peak RSS rise of one call. !: the result disagrees with "
              "xent's.")
    print_case_skips(report)
    if args.grad:
        grad_case = select_grad_case(args)
        _progress(f"measuring loss + gradient on {grad_case.label} {grad_case.dtype} ...")
        report["grad"] = run_grad(grad_case, peers, threads, args.repeat, args.seed)
        _clear_progress()
        print_grad(report["grad"])
    if args.scaling and cases:
        print_scaling(report)
    from . import bench_linear

    bench_linear.measure(args, peers, threads, report)
    return report
