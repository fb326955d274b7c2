"""The ``xent`` command.

``xent`` (or ``xent demo``): evaluate the mean cross-entropy of a generated dataset with xent
and with the numpy reference, and print both losses and times side by side.
``xent config``: print the kernel variant, threads and versions in use.
``xent bench``: time xent against the reference and the installed peers (:mod:`xent.bench`).
``xent eval``: loss, perplexity, top-k accuracy and entropy of logits files (any size).
"""

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys
import time

import numpy as np

from . import __version__, _check, _kernels, bench
from . import reference
from ._api import cross_entropy
from ._config import show_config
from ._io import ArrayFileError
from ._io import file_kind as _file_kind
from ._io import npz_arrays as _npz_arrays
from ._io import open_npy as _open_npy
from ._io import open_raw as _open_raw
from ._evaluation import evaluate
from ._threads import get_num_threads

# The default dataset: 65,536 rows of 1,024 float32 logits, 256 MiB.
DEFAULT_ROWS = 65536
DEFAULT_CLASSES = 1024
# The reference runs over this many rows at a time, to keep its float64 temporaries small.
REFERENCE_ROWS = 4096


def generate(rows, classes, dtype, seed):
    """Logits (rows, classes) and integer labels, reproducible from ``seed``.

    The logits are standard normal with the label's logit raised by 2, so the loss is that
    of a mediocre classifier rather than of pure noise.
    """
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((rows, classes), dtype=np.float32).astype(dtype, copy=False)
    labels = rng.integers(0, classes, size=rows)
    logits[np.arange(rows), labels] += 2
    return logits, labels


def reference_mean(logits, labels, progress):
    """Mean cross-entropy by xent.reference, a block of rows at a time."""
    total = 0.0
    for start in range(0, len(labels), REFERENCE_ROWS):
        stop = start + REFERENCE_ROWS
        total += reference.cross_entropy(logits[start:stop], labels[start:stop],
                                         reduction="sum")
        progress(stop)
    return total / len(labels)


def _progress_printer(total, enabled):
    def show(done):
        if enabled:
            print(f"\r  reference: {min(done, total):,} / {total:,} rows", end="",
                  file=sys.stderr, flush=True)
            if done >= total:
                print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    return show


def _format_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def demo(args):
    """The default job; returns the exit status (1 if xent and the reference disagree)."""
    dtype = np.dtype(args.dtype)
    threads = get_num_threads(args.threads)
    logits, labels = generate(args.rows, args.classes, dtype, args.seed)
    size_mib = logits.nbytes / 2**20
    print(f"xent {__version__}: mean cross-entropy of {args.rows:,} rows x {args.classes:,} "
          f"classes, {dtype} ({size_mib:,.1f} MiB), generated with seed {args.seed}")
    print(f"kernels: {_kernels.current_isa()}, {threads} thread(s)")

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        loss = cross_entropy(logits, labels, num_threads=threads)
        times.append(time.perf_counter() - start)
    xent_time = statistics.median(times)

    start = time.perf_counter()
    ref_loss = reference_mean(logits, labels, _progress_printer(args.rows, sys.stderr.isatty()))
    ref_time = time.perf_counter() - start

    elements = logits.size
    print(f"{'':10} {'loss':>14} {'time':>12} {'Gelem/s':>9}")
    print(f"{'xent':10} {float(loss):14.8f} {_format_time(xent_time):>12} "
          f"{elements / xent_time / 1e9:9.3f}   (median of {args.repeat})")
    print(f"{'reference':10} {ref_loss:14.8f} {_format_time(ref_time):>12} "
          f"{elements / ref_time / 1e9:9.3f}")
    diff = abs(float(loss) - ref_loss)
    rtol, atol = _check.TOLERANCES[dtype]
    tolerance = atol + rtol * abs(ref_loss)
    agree = diff <= tolerance
    print(f"xent is {ref_time / xent_time:,.0f}x faster than the reference; "
          f"|difference| {diff:.2e} {'<=' if agree else '>'} tolerance {tolerance:.1e}: "
          f"{'agree' if agree else 'DISAGREE'}")
    return 0 if agree else 1


# ---- xent eval: metrics of logits files --------------------------------------------------------

# A problem with the files given to ``xent eval``: printed as one line, exit status 1. The
# files are opened by xent._io, which xent.evaluate uses too.
EvalInputError = ArrayFileError


def _natural_key(path):
    """Sort shard_2 before shard_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _expand(pattern):
    """The files a command-line argument names: itself, or the matches of a glob, sorted."""
    if glob.has_magic(pattern):
        matches = sorted(glob.glob(pattern), key=_natural_key)
        if not matches:
            raise EvalInputError(f"no file matches {pattern!r}")
        return matches
    return [pattern]


def _open_logits(path, args):
    kind = _file_kind(path)
    if kind == "npy":
        return _open_npy(path)
    if kind == "npz":
        raise EvalInputError(f"{path}: a .npz file holds both logits and labels: give "
                             f".npz files alone, without label files")
    if args.dtype is None or args.shape is None:
        raise EvalInputError(f"{path}: not a .npy or .npz file; to read raw binary logits "
                             f"give --dtype and --shape (such as --shape 1000: rows from the size)")
    return _open_raw(path, args.dtype, args.shape, "logits")


def _open_labels(path, args):
    kind = _file_kind(path)
    if kind == "npy":
        return _open_npy(path)
    if kind == "npz":
        raise EvalInputError(f"{path}: labels must be .npy or raw binary, not .npz")
    return _open_raw(path, args.labels_dtype, (-1,), "labels")


def _check_pair(x, y, xpath, ypath):
    """The same checks as xent.evaluate, phrased with the file names."""
    if x.dtype.kind != "f" or x.dtype.itemsize not in (2, 4, 8):
        raise EvalInputError(f"{xpath}: logits must be float16, float32 or float64, got "
                             f"{x.dtype}")
    if y.dtype.kind not in "iu":
        raise EvalInputError(f"{ypath}: labels must be integers, got {y.dtype}")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise EvalInputError(f"{xpath}: logits of shape {x.shape} have no classes")
    if y.size != int(np.prod(x.shape[:-1], dtype=np.int64)):
        raise EvalInputError(f"{ypath}: {y.size:,} labels for {xpath}'s "
                             f"{int(np.prod(x.shape[:-1], dtype=np.int64)):,} rows of logits "
                             f"(shape {x.shape})")
    return x, y.reshape(x.shape[:-1])


def eval_sources(args):
    """The list of (logits, labels) pairs ``xent eval`` reads, every file opened and checked."""
    given = args.files
    if len(given) == 2:
        logit_files, label_files = _expand(given[0]), _expand(given[1])
    else:
        files = [f for g in given for f in _expand(g)]
        if all(os.path.exists(f) and _file_kind(f) == "npz" for f in files):
            pairs = []
            for f in files:
                x, y = _npz_arrays(f)
                pairs.append(_check_pair(x, y, f, f))
            return pairs
        if len(given) % 2:
            raise EvalInputError(f"{len(given)} files given: give the logits files, then as "
                                 f"many label files (or .npz files holding both)")
        half = len(given) // 2
        logit_files = [f for g in given[:half] for f in _expand(g)]
        label_files = [f for g in given[half:] for f in _expand(g)]
    if len(logit_files) == 1 and len(label_files) == 1 and _file_kind(
            logit_files[0]) == "npz" and _file_kind(label_files[0]) == "npz":
        return [_check_pair(*_npz_arrays(f), f, f) for f in logit_files + label_files]
    if len(logit_files) != len(label_files):
        raise EvalInputError(f"{len(logit_files)} logits files but {len(label_files)} "
                             f"label files: give one label file per logits file")
    return [_check_pair(_open_logits(xf, args), _open_labels(yf, args), xf, yf)
            for xf, yf in zip(logit_files, label_files)]


def _topk_list(text):
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers such as 1,5, got {text!r}")
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 1,5, got {text!r}")
    return ks


def _shape(text):
    """argparse type: "C" or "N,C" (N may be -1: from the file size) -> (N, C)."""
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape such as 1000000,1000, got {text!r}")
    if len(shape) == 1:
        shape = (-1,) + shape
    if len(shape) != 2 or shape[1] < 1 or shape[0] < -1:
        raise argparse.ArgumentTypeError(
            f"expected CLASSES or ROWS,CLASSES such as 1000000,1000, got {text!r}")
    return shape


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluate_files(args):
    """``xent eval``: metrics of logits and labels files; returns the exit status."""
    try:
        pairs = eval_sources(args)
    except (EvalInputError, ValueError, TypeError) as exc:
        print(f"xent eval: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"xent eval: error: {exc.filename or ''}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    rows = sum(len(y.reshape(-1)) for _, y in pairs)
    show = not args.no_progress and sys.stderr.isatty()
    start = time.perf_counter()
    try:
        report = evaluate(pairs, topk=args.topk, ignore_index=args.ignore_index,
                          num_threads=args.threads, chunk_rows=args.chunk_rows,
                          progress=show)
    except (ValueError, TypeError, IndexError, OSError) as exc:
        print(f"xent eval: error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    if args.json:
        out = {k: _json_number(v) for k, v in report.as_dict().items()}
        out.update(rows=rows, files=len(pairs), seconds=seconds)
        print(json.dumps(out, indent=2))
        return 0
    classes = pairs[0][0].shape[-1] if pairs else 0
    print(f"xent eval: {rows:,} rows x {classes:,} classes in {len(pairs)} file pair(s), "
          f"{_format_time(seconds)} ({rows / max(seconds, 1e-9):,.0f} rows/s)")
    table = [("loss", f"{report.loss:.6f}", "mean cross-entropy, nats"),
             ("perplexity", f"{report.perplexity:.4f}", "exp(loss)"),
             ("accuracy", f"{report.accuracy:.4%}", "top-1")]
    table += [(f"top-{k}", f"{acc:.4%}", "") for k, acc in report.topk_accuracy if k != 1]
    table += [("entropy", f"{report.entropy:.6f}", "mean predictive entropy, nats"),
              ("count", f"{report.count:,}", "rows counted"),
              ("ignored", f"{report.ignored:,}", f"label {args.ignore_index}")]
    for name, value, note in table:
        print(f"  {name:<11} {value:>16}   {note}".rstrip())
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="xent", description="Fast, exact cross-entropy on multicore CPUs.")
    parser.add_argument("--version", action="version", version=f"xent {__version__}")
    commands = parser.add_subparsers(dest="command")

    demo_parser = commands.add_parser(
        "demo", help="cross-entropy of a generated dataset, xent against the reference "
                     "(the default)")
    demo_parser.add_argument("--rows", type=bench.positive_int, default=DEFAULT_ROWS)
    demo_parser.add_argument("--classes", type=bench.positive_int, default=DEFAULT_CLASSES)
    demo_parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    demo_parser.add_argument("--threads", type=bench.thread_count, default=None,
                             help="threads for xent (default: all CPUs this process may use)")
    demo_parser.add_argument("--seed", type=int, default=0)
    demo_parser.add_argument("--repeat", type=bench.positive_int, default=5,
                             help="xent runs to take the median of (default 5)")
    demo_parser.set_defaults(run=demo)

    config_parser = commands.add_parser("config", help="show kernel variant, threads, versions")
    config_parser.set_defaults(run=lambda args: show_config() or 0)

    bench_parser = commands.add_parser(
        "bench", help="time xent against the numpy reference, PyTorch, SciPy, scikit-learn "
                      "and JAX (those installed)")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench.run)

    eval_parser = commands.add_parser(
        "eval", help="loss, perplexity, top-k accuracy and entropy of logits files",
        description="Evaluate logits against labels in one pass, a chunk at a time (files "
                    "larger than memory are fine). FILES: LOGITS LABELS, each a file or a "
                    "quoted glob ('logits_*.npy'); or several logits files then as many "
                    "label files; or .npz files holding arrays 'logits' and 'labels'. "
                    ".npy files are memory-mapped; other files are raw binary "
                    "(--dtype, --shape).")
    eval_parser.add_argument("files", nargs="+", metavar="FILES")
    eval_parser.add_argument("--topk", type=_topk_list, default=[1, 5],
                             help="comma-separated k of the top-k accuracies (default 1,5)")
    eval_parser.add_argument("--ignore-index", type=int, default=-100,
                             help="label of rows to leave out (default -100)")
    eval_parser.add_argument("--json", action="store_true", help="print JSON")
    eval_parser.add_argument("--threads", type=bench.thread_count, default=None)
    eval_parser.add_argument("--no-progress", action="store_true",
                             help="no progress bar (there is none unless stderr is a terminal)")
    eval_parser.add_argument("--dtype", type=np.dtype, default=None,
                             help="dtype of raw binary logits files, such as float32")
    eval_parser.add_argument("--shape", type=_shape, default=None,
                             help="shape of raw binary logits files: ROWS,CLASSES, or CLASSES "
                                  "alone (rows from the file size)")
    eval_parser.add_argument("--labels-dtype", type=np.dtype, default=np.dtype(np.int64),
                             help="dtype of raw binary label files (default int64)")
    eval_parser.add_argument("--chunk-rows", type=bench.positive_int, default=None,
                             help="rows per chunk (default: about 128 MiB of logits)")
    eval_parser.set_defaults(run=evaluate_files)
    return parser


COMMANDS = ("demo", "config", "bench", "eval")


def main(argv=None):
    """Entry point of the ``xent`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["demo"] + argv  # the default job takes its options without naming it
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("\nxent: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        print(f"xent: out of memory ({exc})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
