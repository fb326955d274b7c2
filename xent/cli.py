"""The ``xent`` command.

``xent`` (or ``xent demo``): evaluate the mean cross-entropy of a generated dataset with xent
and with the numpy reference, and print both losses and times side by side.
``xent config``: print the kernel variant, threads and versions in use.
``xent bench``: time xent against the reference and the installed peers (:mod:`xent.bench`).
``xent eval``: loss, perplexity, top-k accuracy and entropy of logits files (any size).
``xent selftest``: every public function against the reference on every kernel variant.
"""

import argparse
import glob
import json
import math
import os
import re
import sys
import time
import types

import numpy as np

from . import __version__, _check, _dispatch
from ._dispatch import show_config
from ._evaluation import evaluate, long_row_cols
from ._io import ArrayFileError, FileArray
from ._io import file_kind as _file_kind
from ._io import npz_arrays as _npz_arrays
from ._io import open_npy as _open_npy
from ._io import open_raw as _open_raw
from ._io import row_chunks as _row_chunks
from ._multiclass import cross_entropy
from ._selftest import selftest
from ._threads import get_num_threads
from .bench import command as bench_command
from .bench.cases import positive_int, reference_mean, thread_count
from .bench.measure import median_time
from .bench.report import format_time

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


def _progress_printer(total, enabled):
    def show(done):
        if enabled:
            print(
                f"\r  reference: {min(done, total):,} / {total:,} rows",
                end="",
                file=sys.stderr,
                flush=True,
            )
            if done >= total:
                print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)

    return show


def demo(args):
    """The default job; returns the exit status (1 if xent and the reference disagree)."""
    dtype = np.dtype(args.dtype)
    threads = get_num_threads(args.threads)
    logits, labels = generate(args.rows, args.classes, dtype, args.seed)
    size_mib = logits.nbytes / 2**20
    print(
        f"xent {__version__}: mean cross-entropy of {args.rows:,} rows x {args.classes:,} "
        f"classes, {dtype} ({size_mib:,.1f} MiB), generated with seed {args.seed}"
    )
    print(f"kernels: {_dispatch.current_isa()}, {threads} thread(s)")

    xent_time, loss = median_time(
        lambda: cross_entropy(logits, labels, num_threads=threads), args.repeat
    )
    ref_time, ref_loss = median_time(
        lambda: reference_mean(
            logits, labels, REFERENCE_ROWS, _progress_printer(args.rows, sys.stderr.isatty())
        ),
        1,
    )

    elements = logits.size
    print(f"{'':10} {'loss':>14} {'time':>12} {'Gelem/s':>9}")
    print(
        f"{'xent':10} {float(loss):14.8f} {format_time(xent_time):>12} "
        f"{elements / xent_time / 1e9:9.3f}   (median of {args.repeat})"
    )
    print(
        f"{'reference':10} {ref_loss:14.8f} {format_time(ref_time):>12} "
        f"{elements / ref_time / 1e9:9.3f}"
    )
    diff = abs(float(loss) - ref_loss)
    rtol, atol = _check.TOLERANCES[dtype]
    tolerance = atol + rtol * abs(ref_loss)
    agree = diff <= tolerance
    print(
        f"xent is {ref_time / xent_time:,.0f}x faster than the reference; "
        f"|difference| {diff:.2e} {'<=' if agree else '>'} tolerance {tolerance:.1e}: "
        f"{'agree' if agree else 'DISAGREE'}"
    )
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
        raise EvalInputError(
            f"{path}: a .npz file holds both logits and labels: give "
            f".npz files alone, without label files"
        )
    if args.dtype is None or args.shape is None:
        raise EvalInputError(
            f"{path}: not a .npy or .npz file; to read raw binary logits "
            f"give --dtype and --shape (such as --shape 1000: rows from the size)"
        )
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
        raise EvalInputError(f"{xpath}: logits must be float16, float32 or float64, got {x.dtype}")
    if y.dtype.kind not in "iu":
        raise EvalInputError(f"{ypath}: labels must be integers, got {y.dtype}")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise EvalInputError(f"{xpath}: logits of shape {x.shape} have no classes")
    if y.size != int(np.prod(x.shape[:-1], dtype=np.int64)):
        raise EvalInputError(
            f"{ypath}: {y.size:,} labels for {xpath}'s "
            f"{int(np.prod(x.shape[:-1], dtype=np.int64)):,} rows of logits "
            f"(shape {x.shape})"
        )
    # A raw label file has no shape: its labels take the logits'. A .npy or .npz one has
    # its own, which must be the logits' without the class axis, as xent.evaluate requires
    # ((N, 1) labels for (N, C) logits are a mistake upstream, not a layout to guess).
    if y.shape != x.shape[:-1] and _file_kind(ypath) != "raw":
        raise EvalInputError(
            f"{ypath}: labels of shape {y.shape} for {xpath}'s logits of "
            f"shape {x.shape}: expected shape {x.shape[:-1]} (the logits' "
            f"shape without the class axis)"
        )
    return x, y.reshape(x.shape[:-1])


def eval_sources(args, names=None):
    """The list of (logits, labels) pairs ``xent eval`` reads, every file opened and checked.

    ``names``, a list, receives the (logits file, labels file) of each pair.
    """
    names = [] if names is None else names
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
                names.append((f, f))
            return pairs
        if len(given) % 2:
            raise EvalInputError(
                f"{len(given)} files given: give the logits files, then as "
                f"many label files (or .npz files holding both)"
            )
        half = len(given) // 2
        logit_files = [f for g in given[:half] for f in _expand(g)]
        label_files = [f for g in given[half:] for f in _expand(g)]
    if (
        len(logit_files) == 1
        and len(label_files) == 1
        and _file_kind(logit_files[0]) == "npz"
        and _file_kind(label_files[0]) == "npz"
    ):
        names.extend((f, f) for f in logit_files + label_files)
        return [_check_pair(*_npz_arrays(f), f, f) for f in logit_files + label_files]
    if len(logit_files) != len(label_files):
        raise EvalInputError(
            f"{len(logit_files)} logits files but {len(label_files)} "
            f"label files: give one label file per logits file"
        )
    names.extend(zip(logit_files, label_files))
    return [
        _check_pair(_open_logits(xf, args), _open_labels(yf, args), xf, yf)
        for xf, yf in zip(logit_files, label_files)
    ]


def _topk_list(text):
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers such as 1,5, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 1,5, got {text!r}")
    return ks


def _shape(text):
    """argparse type: "C" or "N,C" (N may be -1: from the file size) -> (N, C)."""
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a shape such as 1000000,1000, got {text!r}"
        ) from None
    if len(shape) == 1:
        shape = (-1,) + shape
    if len(shape) != 2 or shape[1] < 1 or shape[0] < -1:
        raise argparse.ArgumentTypeError(
            f"expected CLASSES or ROWS,CLASSES such as 1000000,1000, got {text!r}"
        )
    return shape


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


#: ``xent eval``'s default chunk: about this many bytes of logits (as xent.evaluate's).
EVAL_CHUNK_BYTES = 128 << 20


def _check_sources(pairs, names, args):
    """What xent.evaluate would refuse, or take silently, said with the file names."""
    classes = pairs[0][0].shape[-1]
    for (x, _), (xpath, _) in zip(pairs, names):
        if x.shape[-1] != classes:
            raise EvalInputError(
                f"{xpath}: logits of {x.shape[-1]} classes, {names[0][0]}'s have {classes}"
            )
    # The API takes k > C (every row is then correct); on the command line it is a typo.
    if max(args.topk) > classes:
        raise EvalInputError(
            f"--topk {max(args.topk)} is more than the {classes:,} classes "
            f"of {names[0][0]}: give k of at most {classes:,}"
        )
    own = [xpath for xpath, _ in names if _file_kind(xpath) in ("npy", "npz")]
    given = [
        option
        for option, value in (("--dtype", args.dtype), ("--shape", args.shape))
        if value is not None
    ]
    if own and given:
        print(
            f"xent eval: warning: {' and '.join(given)} ignored for {own[0]}"
            f"{f' and {len(own) - 1} more' if len(own) > 1 else ''}: a .npy or .npz file "
            f"carries its own dtype and shape",
            file=sys.stderr,
        )


def _flat(x, y):
    """(rows, classes) and (rows,) views of a pair, or None where no view can flatten it."""
    try:
        return (np.reshape(x, (-1, x.shape[-1]), copy=False), np.reshape(y, (-1,), copy=False))
    except ValueError:
        return None


def _chunks(pairs, names, args, bar):
    """The pairs cut into chunks of rows for xent.evaluate, each chunk's labels checked
    first (an out-of-range label is named with its file and row), the progress bar
    advanced as each chunk is taken."""
    for (x, y), (_, ypath) in zip(pairs, names):
        classes = x.shape[-1]
        step = args.chunk_rows or max(
            1, min(1 << 20, EVAL_CHUNK_BYTES // (classes * x.dtype.itemsize))
        )
        flat = _flat(x, y)
        # a generator, not a list: a file's chunks are read one at a time, when evaluated
        if flat is None:
            parts = [(x, y)]
        elif isinstance(flat[0], FileArray) and classes > long_row_cols(x.dtype):
            # rows longer than a piece: passed unread, one at a time; xent.evaluate reads
            # each a piece at a time (a row read whole would be one unbounded chunk)
            parts = ((flat[0].rows(i, i + 1), flat[1][i : i + 1]) for i in range(flat[0].shape[0]))
        else:
            parts = ((part, flat[1][i : i + len(part)]) for i, part in _row_chunks(flat[0], step))
        row = 0
        for px, py in parts:
            labels = np.asarray(py).reshape(-1)
            bad = ((labels < 0) | (labels >= classes)) & (labels != args.ignore_index)
            if bad.any():
                i = int(np.argmax(bad))
                raise EvalInputError(
                    f"{ypath}: label {labels[i]} at row {row + i:,} is out of range: labels "
                    f"must lie in [0, {classes:,}) or be --ignore-index "
                    f"({args.ignore_index})"
                )
            yield px, py
            row += labels.size
            if bar is not None:
                bar.update(labels.size)


def count_nan_rows(pairs, ignore_index, chunk_rows=1 << 16):
    """Counted rows (label not ``ignore_index``) whose logits hold a NaN."""
    count = 0
    for x, y in pairs:
        flat = _flat(x, y)
        xs, ys = flat if flat is not None else (x.reshape(-1, x.shape[-1]), y.reshape(-1))
        if isinstance(xs, FileArray) and xs.shape[1] > chunk_rows:
            # long rows: a piece of each at a time, never a row read whole
            for i in range(xs.shape[0]):
                if ys[i] == ignore_index:
                    continue
                piece = 1 << 22
                count += any(
                    np.isnan(xs.read_span(i, lo, min(lo + piece, xs.shape[1]))).any()
                    for lo in range(0, xs.shape[1], piece)
                )
            continue
        for i in range(0, xs.shape[0], chunk_rows):
            nan = np.isnan(xs[i : i + chunk_rows]).any(axis=1)
            count += int(np.count_nonzero(nan & (ys[i : i + chunk_rows] != ignore_index)))
    return count


#: Seconds between redraws of the progress bar.
PROGRESS_INTERVAL = 0.1


def _stderr_is_terminal():
    return sys.stderr.isatty()


def _progress_bar(rows, args):
    """A progress bar with the total, the percentage and the time left (None: no bar)."""
    if args.no_progress or not _stderr_is_terminal():
        return None
    from tqdm.auto import tqdm  # a dependency of xent

    return tqdm(
        total=rows,
        unit="rows",
        unit_scale=True,
        desc="xent eval",
        dynamic_ncols=True,
        leave=False,
        smoothing=0.1,
        file=sys.stderr,
        mininterval=PROGRESS_INTERVAL,
    )


def evaluate_files(args):
    """``xent eval``: metrics of logits and labels files; returns the exit status.

    The files are cut into chunks here, not in xent.evaluate, so that the progress bar knows
    its total and a label error names its file.
    """
    names = []
    try:
        pairs = eval_sources(args, names)
        if pairs:
            _check_sources(pairs, names, args)
    except (EvalInputError, ValueError, TypeError) as exc:
        print(f"xent eval: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"xent eval: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    rows = sum(len(y.reshape(-1)) for _, y in pairs)
    bar = _progress_bar(rows, args)
    start = time.perf_counter()
    try:
        report = evaluate(
            _chunks(pairs, names, args, bar),
            topk=args.topk,
            ignore_index=args.ignore_index,
            num_threads=args.threads,
            chunk_rows=args.chunk_rows,
            calibration=args.calibration,
            calibration_bins=args.calibration_bins,
            num_bytes=args.bytes,
        )
        # A NaN logit makes its row's loss NaN, and so the mean: say how many rows did it.
        nan_rows = (
            count_nan_rows(pairs, args.ignore_index)
            if not (math.isfinite(report.loss) and math.isfinite(report.entropy))
            else 0
        )
    except (EvalInputError, ValueError, TypeError, IndexError, OSError) as exc:
        print(f"xent eval: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if args.plot:
        from ._plots import reliability_diagram

        reliability_diagram(report, args.plot)
    if args.json:
        out = {k: _json_number(v) for k, v in report.as_dict().items()}
        out.update(
            nan_rows=nan_rows,
            rows=rows,
            files=len(pairs),
            seconds=seconds,
            ece_error_bound=report.ece_error_bound,
        )
        out["calibration_bins"] = [
            dict(
                zip(
                    ("low", "high", "count", "confidence", "accuracy"),
                    (_json_number(float(v)) for v in row),
                )
            )
            for row in report.calibration_table
        ]
        print(json.dumps(out, indent=2))
        return 0
    classes = pairs[0][0].shape[-1] if pairs else 0
    print(
        f"xent eval: {rows:,} rows x {classes:,} classes in {len(pairs)} file pair(s), "
        f"{format_time(seconds)} ({rows / max(seconds, 1e-9):,.0f} rows/s)"
    )
    table = [
        ("loss", f"{report.loss:.6f}", "mean cross-entropy, nats"),
        ("perplexity", f"{report.perplexity:.4f}", "exp(loss)"),
        ("accuracy", f"{report.accuracy:.4%}", "top-1"),
    ]
    table += [(f"top-{k}", f"{acc:.4%}", "") for k, acc in report.topk_accuracy if k != 1]
    table += [
        ("entropy", f"{report.entropy:.6f}", "mean predictive entropy, nats"),
        ("count", f"{report.count:,}", "rows counted"),
        ("ignored", f"{report.ignored:,}", f"label {args.ignore_index}"),
        (
            "NaN rows",
            f"{nan_rows:,}",
            "counted rows holding a NaN logit (their loss is NaN, so is the mean)"
            if nan_rows
            else "counted rows holding a NaN logit",
        ),
    ]
    kind = "equal-mass" if report.calibration == "mass" else "equal-width"
    table += [
        ("brier", f"{report.brier:.6f}", "multi-class Brier score"),
        (
            "ECE",
            f"{report.ece:.6f}",
            f"expected calibration error, {args.calibration_bins} {kind} bins",
        ),
        ("MCE", f"{report.mce:.6f}", "maximum calibration error"),
    ]
    if report.bits_per_byte is not None:
        table += [
            ("bits/byte", f"{report.bits_per_byte:.6f}", f"over {args.bytes:,} bytes"),
            ("byte ppl", f"{report.byte_perplexity:.6f}", "2 ** bits/byte"),
        ]
    table += [
        (
            "loss 95%",
            "[{:.6f}, {:.6f}]".format(*report.interval("loss")),
            f"standard error {report.stderr['loss']:.3g}",
        ),
        (
            "acc. 95%",
            "[{:.4%}, {:.4%}]".format(*report.interval("accuracy")),
            f"standard error {report.stderr['accuracy']:.3g}",
        ),
    ]
    for name, value, note in table:
        print(f"  {name:<11} {value:>16}   {note}".rstrip())
    return 0


def build_parser():
    """The ``xent`` command's argparse parser, every subcommand and option with its help."""
    parser = argparse.ArgumentParser(
        prog="xent",
        description="Fast, exact cross-entropy on multicore CPUs. Without a "
        "command (or with only options), runs 'xent demo'.",
    )
    parser.add_argument("--version", action="version", version=f"xent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo_parser = commands.add_parser(
        "demo",
        help="cross-entropy of a generated dataset, xent against the reference (the default)",
        description="Mean cross-entropy of generated logits (standard normal, the label's "
        "logit raised by 2) by xent and by the numpy reference, with both times; "
        "exit status 1 if they disagree.",
    )
    demo_parser.add_argument(
        "--rows",
        type=positive_int,
        default=DEFAULT_ROWS,
        help=f"rows of logits (default {DEFAULT_ROWS:,})",
    )
    demo_parser.add_argument(
        "--classes",
        type=positive_int,
        default=DEFAULT_CLASSES,
        help=f"classes per row (default {DEFAULT_CLASSES:,})",
    )
    demo_parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="dtype of the logits (default float32)",
    )
    demo_parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="threads for xent (default: all CPUs this process may use)",
    )
    demo_parser.add_argument(
        "--seed", type=int, default=0, help="seed of the generated data (default 0)"
    )
    demo_parser.add_argument(
        "--repeat", type=positive_int, default=5, help="xent runs to take the median of (default 5)"
    )
    demo_parser.set_defaults(run=demo)

    config_parser = commands.add_parser(
        "config",
        help="show kernel variant, threads, versions",
        description="Print the kernel variant in use, the thread count and the versions.",
    )
    config_parser.set_defaults(run=lambda args: show_config() or 0)

    bench_parser = commands.add_parser(
        "bench",
        help="time xent against the numpy reference, PyTorch, SciPy, scikit-learn "
        "and JAX (those installed)",
        description=bench_command.__doc__.split("\n\n")[1].replace("\n", " "),
    )
    bench_command.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench_command.run)

    eval_parser = commands.add_parser(
        "eval",
        help="loss, perplexity, top-k accuracy and entropy of logits files",
        description="Evaluate logits against labels in one pass, a chunk at a time (files "
        "larger than memory are fine). FILES: LOGITS LABELS, each a file or a "
        "quoted glob ('logits_*.npy'); or several logits files then as many "
        "label files; or .npz files holding arrays 'logits' and 'labels'. "
        ".npy files are read a chunk at a time; other files are raw binary "
        "(--dtype, --shape).",
    )
    eval_parser.add_argument(
        "files", nargs="+", metavar="FILES", help="logits files then label files, or .npz files"
    )
    eval_parser.add_argument(
        "--topk",
        type=_topk_list,
        default=[1, 5],
        help="comma-separated k of the top-k accuracies, each at most "
        "the number of classes (default 1,5)",
    )
    eval_parser.add_argument(
        "--ignore-index", type=int, default=-100, help="label of rows to leave out (default -100)"
    )
    eval_parser.add_argument("--json", action="store_true", help="print JSON")
    eval_parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="threads (default: all CPUs this process may use)",
    )
    eval_parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (there is none unless stderr is a terminal)",
    )
    eval_parser.add_argument(
        "--dtype",
        type=np.dtype,
        default=None,
        help="dtype of raw binary logits files, such as float32 (a .npy file carries its own)",
    )
    eval_parser.add_argument(
        "--shape",
        type=_shape,
        default=None,
        help="shape of raw binary logits files: ROWS,CLASSES, or CLASSES "
        "alone (rows from the file size; a .npy file carries its "
        "own)",
    )
    eval_parser.add_argument(
        "--labels-dtype",
        type=np.dtype,
        default=np.dtype(np.int64),
        help="dtype of raw binary label files (default int64)",
    )
    eval_parser.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=None,
        help="rows per chunk (default: about 128 MiB of logits)",
    )
    eval_parser.add_argument(
        "--calibration",
        choices=["mass", "width"],
        default="mass",
        help="calibration bins of equal mass (default, as HELM) or equal width",
    )
    eval_parser.add_argument(
        "--calibration-bins",
        type=positive_int,
        default=15,
        help="number of calibration bins (default 15)",
    )
    eval_parser.add_argument(
        "--bytes",
        type=positive_int,
        default=None,
        help="bytes of the text the labels encode: adds bits per byte and byte perplexity",
    )
    eval_parser.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="write a reliability diagram (accuracy against confidence per bin, with bin counts)",
    )
    eval_parser.set_defaults(run=evaluate_files)

    from ._compare_cli import add_compare_command

    add_compare_command(
        commands,
        types.SimpleNamespace(
            expand=_expand,
            open_logits=_open_logits,
            open_labels=_open_labels,
            shape=_shape,
            positive_int=positive_int,
            thread_count=thread_count,
            stderr_is_terminal=lambda: _stderr_is_terminal(),
            format_time=format_time,
        ),
    )

    selftest_parser = commands.add_parser(
        "selftest",
        help="check every function against the reference on every kernel variant",
        description="Compare every public function of xent with xent.reference, on each "
        "kernel variant this CPU supports, at a few shapes and dtypes; print a "
        "table and exit with status 1 on any disagreement. Run it first on a new "
        "machine or after a build with other flags.",
    )
    selftest_parser.set_defaults(run=selftest)
    return parser


def main(argv=None):
    """Entry point of the ``xent`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The default job takes its options without naming it (``xent --rows 1000``); anything
    # else that is not an option is a command, and argparse says "invalid choice" if unknown.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["demo"] + argv
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("\nxent: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        print(f"xent: out of memory ({exc})", file=sys.stderr)
        return 1
    except BrokenPipeError:  # xent selftest | head: the reader has gone, say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1


if __name__ == "__main__":
    sys.exit(main())
