"""The ``xent`` command.

``xent`` (or ``xent demo``): evaluate the mean cross-entropy of a generated dataset with xent
and with the numpy reference, and print both losses and times side by side.
``xent config``: print the kernel variant, threads and versions in use.
``xent bench``: time xent against the reference and the installed peers (:mod:`xent.bench`).
"""

import argparse
import statistics
import sys
import time

import numpy as np

from . import __version__, _check, _kernels, bench
from . import reference
from ._api import cross_entropy
from ._config import show_config
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
    return parser


COMMANDS = ("demo", "config", "bench")


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
