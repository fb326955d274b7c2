"""``xent bench``'s linear section: ``linear_cross_entropy`` against forming the logits.

For each shape (N tokens, H hidden, V vocabulary), interleaved runs of

- ``xent``: :func:`xent.linear_cross_entropy` (tiles, no logits);
- ``torch``: ``F.cross_entropy(h @ W.T, y)`` (the logits formed, N x V), where installed;
- ``numpy+xent``: ``xent.cross_entropy(h @ W.T, y)``, numpy's matmul forming the logits,

with the peak memory of each call (the rise of the resident set, and tracemalloc's peak for
the numpy ones) and xent's agreement with the float64 reference on a sample of rows.
"""

import argparse
from dataclasses import dataclass

import numpy as np

from .. import reference
from .._multiclass import cross_entropy
from ..linear import linear_cross_entropy
from .cases import QUICK_DIVISOR, REFERENCE_ROWS, RTOL, parse_shape
from .measure import (
    medians_of,
    peak_rss_rise,
    relative_difference,
    speedups_of,
    time_interleaved,
    tracemalloc_peak,
)
from .peers import import_chain
from .report import Table, format_bytes, format_ratio, format_time

#: The linear shapes measured by default (rows, hidden, vocabulary).
DEFAULT_SHAPES = [(4096, 1024, 32000)]
#: What ``--linear-large`` adds: PyTorch needs 4 GiB for its float32 logits alone.
LARGE_SHAPE = (8192, 2048, 128256)
#: Rows whose losses are compared with the float64 reference.
CHECK_ROWS = 256
#: Tolerance of that comparison (absolute and relative, per row).
CHECK_TOL = {"float32": 1e-5, "float64": 1e-10}


@dataclass(frozen=True)
class LinearCase:
    """``rows`` hidden states of width ``hidden`` against a ``vocab`` x ``hidden`` weight."""

    rows: int
    hidden: int
    vocab: int
    dtype: str = "float32"

    @property
    def label(self):
        return f"{self.rows} x {self.hidden} x {self.vocab}"

    @property
    def logits_bytes(self):
        """Bytes of the logits a materialising peer forms."""
        return self.rows * self.vocab * np.dtype(self.dtype).itemsize


def parse_linear_shape(text):
    """argparse type: ``NxHxV`` as three positive ints (``k``/``M`` suffixes as for shapes)."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(
            f"expected ROWSxHIDDENxVOCAB such as 4096x1024x32000, got {text!r}"
        )
    rows, hidden = parse_shape(f"{parts[0]}x{parts[1]}")
    _, vocab = parse_shape(f"1x{parts[2]}")
    return rows, hidden, vocab


def add_arguments(parser):
    """The linear section's options of ``xent bench``."""
    parser.add_argument(
        "--linear-shape",
        type=parse_linear_shape,
        action="append",
        metavar="NxHxV",
        help="fused linear cross-entropy shape (repeatable; "
        f"default {'x'.join(map(str, DEFAULT_SHAPES[0]))})",
    )
    parser.add_argument(
        "--linear-large",
        action="store_true",
        help="add the linear shape "
        + "x".join(map(str, LARGE_SHAPE))
        + " (PyTorch needs 4 GiB of logits; minutes)",
    )
    parser.add_argument(
        "--no-linear",
        dest="linear",
        action="store_false",
        help="leave out the fused linear cross-entropy section",
    )
    parser.add_argument(
        "--linear-only",
        action="store_true",
        help="measure only the fused linear cross-entropy section",
    )


def select_linear_cases(args):
    """The linear cases the options ask for (``--quick`` divides the rows by 16).

    ``--shape`` replaces the default run's shapes, the linear one included: with it, only
    ``--linear-shape``, ``--linear-large`` or ``--linear-only`` bring the section back.
    """
    asked = args.linear_shape or args.linear_large or args.linear_only
    if getattr(args, "shape", None) and not asked:
        return []
    shapes = list(args.linear_shape or DEFAULT_SHAPES)
    if args.linear_large:
        shapes.append(LARGE_SHAPE)
    divisor = QUICK_DIVISOR if args.quick and not args.linear_shape else 1
    dtype = args.dtype or "float32"
    return list(dict.fromkeys(LinearCase(max(1, n // divisor), h, v, dtype) for n, h, v in shapes))


def make_linear_data(case, seed):
    """Normal hidden states, a weight scaled so the logits have standard deviation 2, labels."""
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((case.rows, case.hidden), dtype=np.float32)
    weight = rng.standard_normal((case.vocab, case.hidden), dtype=np.float32)
    weight *= np.float32(2 / np.sqrt(case.hidden))
    target = rng.integers(0, case.vocab, case.rows)
    return hidden.astype(case.dtype, copy=False), weight.astype(case.dtype, copy=False), target


def reference_mean(hidden, weight, target, rows=REFERENCE_ROWS // 8):
    """Mean loss by :func:`xent.reference.linear_cross_entropy`, ``rows`` rows at a time."""
    total = 0.0
    for start in range(0, len(target), rows):
        total += reference.linear_cross_entropy(
            hidden[start : start + rows], weight, target[start : start + rows], reduction="sum"
        )
    return float(total) / len(target)


def check_rows(hidden, weight, target, threads):
    """Largest per-row |xent - reference| over :data:`CHECK_ROWS` rows spread over the batch.

    Returns (worst absolute difference, worst difference relative to the loss).
    """
    rows = np.unique(np.linspace(0, len(target) - 1, min(len(target), CHECK_ROWS)).astype(np.int64))
    got = linear_cross_entropy(
        hidden[rows], weight, target[rows], reduction="none", num_threads=threads
    )
    expected = reference.linear_cross_entropy(hidden[rows], weight, target[rows], reduction="none")
    diff = np.abs(got - expected)
    return float(diff.max()), float((diff / np.abs(expected)).max())


def run_linear(case, torch, threads, repeat, seed):
    """Time xent, PyTorch (``torch`` module or None) and numpy+xent on one linear case."""
    hidden, weight, target = make_linear_data(case, seed)
    calls = {
        "xent": lambda: float(linear_cross_entropy(hidden, weight, target, num_threads=threads))
    }
    if torch is not None:
        th, tw, ty = torch.from_numpy(hidden), torch.from_numpy(weight), torch.from_numpy(target)
        functional = torch.nn.functional
        calls["torch"] = lambda: float(functional.cross_entropy(th @ tw.T, ty))
    calls["numpy+xent"] = lambda: float(
        cross_entropy(hidden @ weight.T, target, num_threads=threads)
    )
    for fn in calls.values():
        fn()  # warm-up
    timings, results = time_interleaved(calls, repeat)
    medians = medians_of(timings)
    worst_abs, worst_rel = check_rows(hidden, weight, target, threads)
    expected = results["xent"]
    agree = {
        name: relative_difference(value, expected) <= RTOL[case.dtype]
        for name, value in results.items()
        if name != "xent"
    }
    agree["reference"] = worst_abs <= CHECK_TOL[case.dtype] * max(1.0, abs(expected))
    return {
        "rows": case.rows,
        "hidden": case.hidden,
        "vocab": case.vocab,
        "dtype": case.dtype,
        "logits_bytes": case.logits_bytes,
        "timings": timings,
        "medians": medians,
        "speedup": speedups_of(medians),
        "results": results,
        "agree": agree,
        "reference_rows": CHECK_ROWS,
        "reference_max_abs_difference": worst_abs,
        "reference_max_rel_difference": worst_rel,
        "peak_rss_rise": {name: peak_rss_rise(fn) for name, fn in calls.items()},
        "tracemalloc_peak": {
            name: tracemalloc_peak(calls[name]) for name in ("xent", "numpy+xent")
        },
    }


def print_linear(results, file=None):
    """One table per linear case.

    Its comparison column is headed ``vs torch`` (``vs numpy+xent`` without PyTorch), as in
    the other sections: the compared median over the row's, above 1x the row is faster.
    """
    titles = {
        "xent": "xent.linear_cross_entropy",
        "torch": "torch F.cross_entropy(h @ W.T)",
        "numpy+xent": "xent.cross_entropy(h @ W.T)",
    }
    for r in results:
        print(
            f"\nFused linear cross-entropy, N x H x V = {r['rows']} x {r['hidden']} x "
            f"{r['vocab']} {r['dtype']} ({format_bytes(r['logits_bytes'])} of logits "
            f"when formed); xent within {r['reference_max_abs_difference']:.1e} of the "
            f"float64 reference on {r['reference_rows']} rows:",
            file=file,
        )
        baseline = "torch" if "torch" in r["medians"] else "numpy+xent"
        table = Table(
            ["who", "median", f"vs {baseline}", "RSS rise", "tracemalloc"],
            [max(len(t) for t in titles.values()), 9, 9, 12, 12],
            file,
        )
        for name, median in r["medians"].items():
            ratio = "-" if name == baseline else format_ratio(r["medians"][baseline] / median)
            if name != "xent" and not r["agree"][name]:
                ratio += " !"
            traced = r["tracemalloc_peak"].get(name)
            table.row(
                [
                    titles.get(name, name),
                    format_time(median),
                    ratio,
                    format_bytes(r["peak_rss_rise"].get(name)),
                    format_bytes(traced),
                ]
            )


def disagreements(results):
    """Messages for the linear results that disagree with xent's (or xent's with the
    reference)."""
    messages = []
    for r in results:
        for name, ok in r["agree"].items():
            if not ok:
                messages.append(
                    f"linear {r['rows']}x{r['hidden']}x{r['vocab']}: {name} "
                    f"disagrees with xent.linear_cross_entropy"
                )
    return messages


def measure(args, peers, threads, report, progress=None):
    """Run the linear section (unless ``--no-linear``) into ``report["linear"]``.

    ``progress(message)`` shows what is being measured (None: nothing).
    """
    if not getattr(args, "linear", True):
        return
    torch = import_chain("torch") if any(p.name == "torch" for p in peers) else None
    report["linear"] = []
    for case in select_linear_cases(args):
        if progress is not None:
            progress(f"measuring linear {case.label} ...")
        report["linear"].append(run_linear(case, torch, threads, args.repeat, args.seed))
        if progress is not None:
            progress(None)
    print_linear(report["linear"])
