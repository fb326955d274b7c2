"""``xent compare REF CAND [LABELS]``: two models' logits files compared (:func:`xent.compare`).

REF and CAND are ``.npy`` files (memory-mapped) or raw binary files (``--dtype``,
``--shape``), or quoted globs of shards (``'ref_*.npy'``), matched shard by shard in natural
order; LABELS likewise (optional).
"""

import json
import math
import sys
import time

import numpy as np


def add_compare_command(commands, files):
    """Add the ``compare`` subcommand to the ``xent`` command's subparsers.

    ``files`` lends ``xent eval``'s ways with files and options (a namespace of xent.cli's
    expand, open_logits, open_labels, shape, positive_int, thread_count, stderr_is_terminal
    and format_time), so both commands read files alike.
    """
    shape, positive_int, thread_count = files.shape, files.positive_int, files.thread_count

    parser = commands.add_parser(
        "compare",
        help="KL, JSD, top-1 agreement and perplexity ratio of two models' logits",
        description="Compare a candidate model's logits (quantised, pruned, distilled) with "
        "a reference model's on the same tokens, in one pass with bounded "
        "memory: mean KL(ref || cand) with its standard error and percentiles, "
        "mean JSD, the share of rows whose top-1 agrees and, with labels, each "
        "model's perplexity, their ratio and the change of the target's "
        "probability. REF, CAND, LABELS: files or quoted globs of shards; .npy "
        "files are memory-mapped, others raw binary (--dtype, --shape).",
    )
    parser.add_argument("ref", metavar="REF", help="the reference model's logits")
    parser.add_argument("cand", metavar="CAND", help="the candidate model's logits")
    parser.add_argument(
        "labels", metavar="LABELS", nargs="?", default=None, help="target token ids (optional)"
    )
    parser.add_argument(
        "--ignore-index", type=int, default=-100, help="label of rows to leave out (default -100)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="write the KL histogram and the target-probability change",
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="threads (default: all CPUs this process may use)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (there is none unless stderr is a terminal)",
    )
    parser.add_argument(
        "--dtype", type=np.dtype, default=None, help="dtype of raw binary logits files"
    )
    parser.add_argument(
        "--shape",
        type=shape,
        default=None,
        help="shape of raw binary logits files: ROWS,CLASSES or CLASSES",
    )
    parser.add_argument(
        "--labels-dtype",
        type=np.dtype,
        default=np.dtype(np.int64),
        help="dtype of raw binary label files (default int64)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=None,
        help="rows per chunk (default: about 64 MiB of each model's logits)",
    )
    parser.set_defaults(run=lambda args: compare_files(args, files))


def _open_all(args, files):
    refs = [files.open_logits(f, args) for f in files.expand(args.ref)]
    cands = [files.open_logits(f, args) for f in files.expand(args.cand)]
    if len(refs) != len(cands):
        raise ValueError(
            f"{len(refs)} REF files but {len(cands)} CAND files: give one "
            f"candidate shard per reference shard"
        )
    labels = None
    if args.labels is not None:
        labels = [files.open_labels(f, args) for f in files.expand(args.labels)]
        if len(labels) != len(refs):
            raise ValueError(f"{len(refs)} REF files but {len(labels)} LABELS files")
        labels = [
            y.reshape(x.shape[:-1]) if y.size == int(np.prod(x.shape[:-1])) else y
            for x, y in zip(refs, labels)
        ]
    return refs, cands, labels


def _number(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def compare_files(args, files):
    """``xent compare``: returns the exit status."""
    from ._compare import compare
    from ._io import ArrayFileError

    try:
        refs, cands, labels = _open_all(args, files)
    except (ArrayFileError, ValueError, TypeError) as exc:
        print(f"xent compare: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"xent compare: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    rows = sum(int(np.prod(x.shape[:-1], dtype=np.int64)) for x in refs)
    progress = not args.no_progress and files.stderr_is_terminal()
    start = time.perf_counter()
    try:
        if len(refs) == 1:
            report = compare(
                refs[0],
                cands[0],
                None if labels is None else labels[0],
                ignore_index=args.ignore_index,
                chunk_rows=args.chunk_rows,
                num_threads=args.threads,
                progress=progress,
            )
        else:
            report = compare(
                refs,
                cands,
                labels,
                ignore_index=args.ignore_index,
                chunk_rows=args.chunk_rows,
                num_threads=args.threads,
                progress=progress,
            )
    except (ValueError, TypeError, IndexError, OSError) as exc:
        print(f"xent compare: error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    if args.plot:
        from ._plots import comparison_plot

        comparison_plot(report, args.plot)
    if args.json:
        out = {k: _number(v) for k, v in report.as_dict().items()}
        out.update(rows=rows, files=len(refs), seconds=seconds)
        print(json.dumps(out, indent=2))
        return 0
    classes = refs[0].shape[-1]
    print(
        f"xent compare: {rows:,} rows x {classes:,} classes in {len(refs)} file pair(s), "
        f"{files.format_time(seconds)}"
    )
    lines = [("KL mean", f"{report.kl:.6g}", f"nats, standard error {report.kl_stderr:.3g}")]
    lines += [
        ("KL max" if q == 100 else f"KL p{q:g}", f"{v:.6g}", "")
        for q, v in report.kl_percentiles.items()
    ]
    lines += [
        ("JSD mean", f"{report.js:.6g}", "nats"),
        (
            "top-1 agree",
            f"{report.top1_agreement:.4%}",
            f"standard error {report.top1_agreement_stderr:.3g}",
        ),
    ]
    if report.ref_loss is not None:
        lo, hi = report.perplexity_ratio_interval
        shift = report.target_prob_shift
        lines += [
            ("ref ppl", f"{report.ref_perplexity:.6g}", f"loss {report.ref_loss:.6f}"),
            ("cand ppl", f"{report.cand_perplexity:.6g}", f"loss {report.cand_loss:.6f}"),
            (
                "ppl ratio",
                f"{report.perplexity_ratio:.6f}",
                f"cand / ref, 95% [{lo:.6f}, {hi:.6f}]",
            ),
            ("dp mean", f"{shift['mean']:.4g}", "target probability, cand - ref"),
            ("dp RMS", f"{shift['rms']:.4g}", ""),
            ("dp p1/p99", f"{shift['p1']:.4g} / {shift['p99']:.4g}", ""),
        ]
    lines += [
        ("count", f"{report.count:,}", "rows compared"),
        ("ignored", f"{report.ignored:,}", f"label {args.ignore_index}"),
    ]
    for name, value, note in lines:
        print(f"  {name:<11} {value:>20}   {note}".rstrip())
    return 0
