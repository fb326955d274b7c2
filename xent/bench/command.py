"""The ``xent bench`` command: its options, and the run that measures, prints and saves.

Mean cross-entropy with integer labels, timed as interleaved runs in one process (xent, the
reference, each peer, xent, ...) so that a noisy neighbour slows all of them alike; the table
gives medians and the ratios of medians. Every result is checked against xent's; a
disagreement is printed and makes the exit status 1.
"""

import argparse
import os
import sys

from .._dispatch import config
from .._threads import get_num_threads
from . import linear
from .cases import (
    DTYPES,
    QUICK_DIVISOR,
    has_bfloat16,
    REFERENCE_MAX_RUNS,
    REFERENCE_ROWS,
    parse_shape,
    positive_int,
    select_cases,
    select_grad_case,
    thread_count,
)
from .measure import busy_cpus, git_commit
from .peers import load_peers
from .roofline import measure_memory_limits
from .plot import import_matplotlib_figure, write_plot
from .report import (
    disagreements,
    forward_row,
    peer_failures,
    forward_table,
    print_case_skips,
    print_grad,
    print_header,
    print_scaling,
    write_json,
)
from .sections import run_case, run_grad

_PLOT_SUFFIXES = ("", ".png", ".pdf", ".svg")


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
                f"expected a .png, .pdf or .svg file name, got {text!r}"
            )
        return text

    return check


def add_arguments(parser):
    """Add the options of ``xent bench`` to an argparse parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``bench`` subcommand's parser.
    """
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"shapes {QUICK_DIVISOR}x smaller in rows (under a minute)",
    )
    parser.add_argument(
        "--shape",
        type=parse_shape,
        action="append",
        metavar="NxC",
        help="rows x classes, e.g. 65536x1000 or 64x1M (repeatable; replaces "
        "the default shapes; the first is also the gradient's shape)",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="dtype of every shape (default: float32 for --shape; the default "
        "shapes are float32, one float64 and two each of bfloat16 and float16; bfloat16 "
        "needs ml_dtypes, without which its default shapes are left out)",
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="threads for xent and PyTorch (default: all CPUs this process may use)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=5,
        help=f"timed runs per shape, medians reported (default 5; the numpy "
        f"reference at most {REFERENCE_MAX_RUNS})",
    )
    parser.add_argument(
        "--no-grad",
        dest="grad",
        action="store_false",
        help="leave out the loss + gradient measurement",
    )
    parser.add_argument(
        "--scaling", action="store_true", help="also time xent on 1..THREADS threads"
    )
    parser.add_argument(
        "--no-limits",
        dest="limits",
        action="store_false",
        help="leave out the header's machine limits (its DRAM probe reads an array of up to "
        "1 GiB, and the GEMM runs at the linear shape); each shape's own probe still runs",
    )
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="leave out the torch.compile peer (it compiles each shape anew: seconds each)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument(
        "--json",
        type=_output_path(),
        metavar="FILE",
        help="write every timing, the medians and the configuration as JSON",
    )
    parser.add_argument(
        "--plot",
        type=_output_path(_PLOT_SUFFIXES),
        metavar="FILE.png",
        help="draw every section (throughputs, gradient, linear, thread scaling) "
        "with matplotlib, bars labelled with their values",
    )
    linear.add_arguments(parser)


def _progress(message):
    """Show ``message`` on a terminal's stderr, replacing the previous one (None: clear)."""
    if sys.stderr.isatty():
        text = f"  {message}" if message else ""
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def _clear_progress():
    _progress(None)


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
            print(
                "xent bench: error: --plot needs matplotlib, which is not installed "
                "(pip install matplotlib), or leave out --plot",
                file=sys.stderr,
            )
            return 2
    threads = get_num_threads(args.threads)
    cases = select_cases(args)
    if not args.shape and not args.dtype and not has_bfloat16():
        print("xent bench: the bfloat16 shapes are left out: they need ml_dtypes", file=sys.stderr)
    leave_out = {} if args.compile else {"torch.compile": "left out (--no-compile)"}
    peers, skipped = load_peers(threads, leave_out)
    try:
        report = measure_all(args, cases, peers, skipped, threads)
    finally:
        for peer in reversed(peers):  # the last loaded first: each restores what it found
            peer.close()
    messages = disagreements(report) + linear.disagreements(report.get("linear") or [])
    messages += limit_disagreements(report.get("limits"))
    failures = peer_failures(report)
    for message in failures:
        print(f"PEER FAILED: {message}")
    for message in messages:
        print(f"DISAGREEMENT: {message}")
    report["peer_failures"] = failures
    report["disagreements"] = messages
    report["exit_status"] = 1 if messages else 0
    if args.json:
        write_json(report, args.json)
        print(f"\nwrote {args.json}")
    if figure_module is not None:
        write_plot(report, args.plot, figure_module)
        print(f"wrote {args.plot}")
    if messages:
        print(
            f"\nxent bench: {len(messages)} result(s) DISAGREE with xent beyond the "
            f"tolerance; exit status 1",
            file=sys.stderr,
        )
    return report["exit_status"]


def measure_all(args, cases, peers, skipped, threads):
    """Measure every case (printing the table a row at a time) and the gradient.

    Returns
    -------
    dict
        The report: configuration, options, every case's numbers, the gradient's.
    """
    report = {
        "config": config(),
        "commit": git_commit(),
        "threads": threads,
        "busy_cpus_before": busy_cpus(),
        "arguments": {k: v for k, v in vars(args).items() if k != "run"},
        "repeat": args.repeat,
        "reference_max_runs": min(args.repeat, REFERENCE_MAX_RUNS),
        "reference_rows": REFERENCE_ROWS,
        "seed": args.seed,
        "quick": args.quick,
        "peers": {
            p.name: {"title": p.title, "version": p.version, "threads": p.threads} for p in peers
        },
        "skipped": skipped,
        "cases": [],
        "grad": None,
    }
    report["limits"] = None
    if getattr(args, "limits", True):
        _progress("measuring the machine's limits ...")
        report["limits"] = measure_limits(args, threads)
        _clear_progress()
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
        print(
            "\nof read bw: a plain multi-threaded read of the same array (its sum), timed in "
            "the same rounds,\nover xent's time: 100% is as fast as the memory (or the "
            "cache where the array fits) gives it.\nevaluate: xent.evaluate's median time "
            "(loss, accuracy, top-k, entropy, Brier score, calibration) / cross_entropy's."
            "\nvs X: X's median time / xent's median "
            "time: above 1x xent is faster, below 1x slower.\nmem: peak RSS rise of one "
            "call. !: the result disagrees with xent's."
        )
    print_case_skips(report)
    compile_seconds = [
        c["peer_warmup_seconds"]["torch.compile"]
        for c in report["cases"]
        if "torch.compile" in c.get("peer_warmup_seconds", {})
    ]
    if compile_seconds:
        print(
            f"  torch.compile: compiling and warming up took {sum(compile_seconds):.1f} s "
            f"over {len(compile_seconds)} shape(s), outside the timing"
        )
    if args.grad:
        grad_case = select_grad_case(args)
        _progress(f"measuring loss + gradient on {grad_case.label} {grad_case.dtype} ...")
        report["grad"] = run_grad(grad_case, peers, threads, args.repeat, args.seed)
        _clear_progress()
        print_grad(report["grad"])
    if args.scaling and cases:
        print_scaling(report)
    linear.measure(args, peers, threads, report, progress=_progress)
    return report


def measure_limits(args, threads):
    """The header's limits: memory bandwidths, and the GEMM rate at the first linear shape
    (when the linear section runs)."""
    limits = {"memory": measure_memory_limits(threads, args.repeat), "gemm": None}
    cases = linear.select_linear_cases(args) if getattr(args, "linear", True) else []
    if cases:
        limits["gemm"] = linear.measure_gemm(cases[0], threads, args.repeat, args.seed)
    return limits


def limit_disagreements(limits):
    """Messages for the header's probes whose results are wrong: a probe that did not read
    every element, or a GEMM whose product is not numpy's."""
    messages = []
    if limits and not limits["memory"]["sums_agree"]:
        messages.append("the bandwidth probes' sums of ones are not the number of elements")
    if limits and limits.get("gemm") and not limits["gemm"]["agree"]:
        messages.append("the header's GEMM product differs from numpy's matmul")
    return messages


def main(argv=None):
    """Run ``xent bench`` with these arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status, as :func:`run`.
    """
    parser = argparse.ArgumentParser(prog="xent bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
