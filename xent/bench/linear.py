"""``xent bench``'s linear section: ``linear_cross_entropy`` against forming the logits.

For each shape (N tokens, H hidden, V vocabulary), interleaved runs of

- ``xent``: :func:`xent.linear_cross_entropy` (tiles, no logits);
- ``torch``: ``F.cross_entropy(h @ W.T, y)`` (the logits formed, N x V), where installed;
- ``torch.lce``: ``F.linear_cross_entropy(h, W, y, options=LinearCrossEntropyOptions())``,
  PyTorch's chunked fused head (torch 2.13 on), where installed;
- ``numpy+xent``: ``xent.cross_entropy(h @ W.T, y)``, numpy's matmul forming the logits,

with the peak memory of each call (the rise of the resident set, and tracemalloc's peak for
the numpy ones) and xent's agreement with the float64 reference on a sample of rows; then the
loss with both gradients, :func:`xent.linear_cross_entropy_with_grad` against PyTorch's
forward + backward, eager (the logits formed) and chunked (``F.linear_cross_entropy``).

Beside them runs one GEMM of the same shape (``h @ W.T`` by the BLAS the linear head calls),
interleaved: every time is also given in units of that GEMM's ("1.04x GEMM").
"""

import argparse
from dataclasses import dataclass

import numpy as np

from .. import reference
from .._multiclass import cross_entropy
from ..linear import linear_cross_entropy, linear_cross_entropy_with_grad
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
from .roofline import GEMM, blas_description, blas_threads, format_gemms, gemm_call, gemm_gflops

#: The linear shapes measured by default (rows, hidden, vocabulary).
DEFAULT_SHAPES = [(4096, 1024, 32000)]
#: What ``--linear-large`` adds: PyTorch needs 4 GiB for its float32 logits alone.
LARGE_SHAPE = (8192, 2048, 128256)
#: Rows whose losses are compared with the float64 reference.
CHECK_ROWS = 256
#: Tolerance of that comparison (absolute and relative, per row).
CHECK_TOL = {"float32": 1e-5, "float64": 1e-10}
#: Rows of the GEMM's product compared with numpy's.
GEMM_CHECK_ROWS = 16


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


def _gemm_checked(hidden, weight):
    """The GEMM call, and a check of its product: a few rows against numpy's matmul."""
    gemm = gemm_call(hidden, weight)
    product = gemm()
    rows = np.unique(np.linspace(0, len(hidden) - 1, GEMM_CHECK_ROWS).astype(np.int64))
    expected = hidden[rows].astype(np.float64) @ weight.T.astype(np.float64)
    scale = float(np.max(np.abs(expected))) or 1.0
    agrees = float(np.max(np.abs(product[rows] - expected))) <= RTOL[hidden.dtype.name] * scale
    return gemm, bool(agrees)


def measure_gemm(case, threads, repeat, seed):
    """The header's GEMM rate: ``h @ W.T`` of a linear case's shape, BLAS on ``threads``.

    Returns
    -------
    dict
        Shape, ``seconds`` (median), ``gflops``, ``blas``, ``threads``, ``agree`` (its product
        checked against numpy's on a few rows).
    """
    hidden, weight, _ = make_linear_data(case, seed)
    with blas_threads(threads):
        gemm, agree = _gemm_checked(hidden, weight)
        timings, _ = time_interleaved({GEMM: gemm}, min(3, repeat))
    seconds = medians_of(timings)[GEMM]
    return {
        "rows": case.rows,
        "hidden": case.hidden,
        "vocab": case.vocab,
        "dtype": case.dtype,
        "seconds": seconds,
        "gflops": gemm_gflops(case.rows, case.hidden, case.vocab, seconds),
        "blas": blas_description(),
        "threads": threads,
        "agree": agree,
    }


def torch_chunked(torch, case):
    """PyTorch's chunked fused head, ``F.linear_cross_entropy(..., options=...)``, as a
    function ``(h, W, y) -> loss``, or the reason it sits this case out (a str).

    It is left out where this PyTorch has none (before 2.13), and for fewer rows than hidden
    units, where PyTorch's documentation says chunking does not pay and the plain path is
    cheaper (measured on a 2-core Xeon at 256 x 1024 x 32000: 8.8 s against 0.65 s eager):
    a user would not chunk there.
    """
    functional = torch.nn.functional
    options_class = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if options_class is None or not hasattr(functional, "linear_cross_entropy"):
        return f"torch {torch.__version__} has no chunked F.linear_cross_entropy (2.13 on)"
    if case.rows < case.hidden:
        return (
            "F.linear_cross_entropy left out: fewer rows than hidden units, where PyTorch's "
            "documentation says chunking does not pay"
        )
    options = options_class()
    return lambda h, w, y: functional.linear_cross_entropy(h, w, y, options=options)


def run_linear(case, torch, threads, repeat, seed):
    """Time xent, PyTorch (``torch`` module or None) and numpy+xent on one linear case."""
    hidden, weight, target = make_linear_data(case, seed)
    skipped = {}
    calls = {
        "xent": lambda: float(linear_cross_entropy(hidden, weight, target, num_threads=threads))
    }
    if torch is not None:
        th, tw, ty = torch.from_numpy(hidden), torch.from_numpy(weight), torch.from_numpy(target)
        functional = torch.nn.functional
        calls["torch"] = lambda: float(functional.cross_entropy(th @ tw.T, ty))
        chunked = torch_chunked(torch, case)
        if isinstance(chunked, str):
            skipped["torch.lce"] = chunked
        else:
            calls["torch.lce"] = lambda: float(chunked(th, tw, ty))
    calls["numpy+xent"] = lambda: float(
        cross_entropy(hidden @ weight.T, target, num_threads=threads)
    )
    for fn in calls.values():
        fn()  # warm-up
    with blas_threads(threads):
        gemm, gemm_agrees = _gemm_checked(hidden, weight)
        timings, results = time_interleaved({**calls, GEMM: gemm}, repeat)
    gemm_timings = timings.pop(GEMM)
    del results[GEMM]
    gemm_median = medians_of({GEMM: gemm_timings})[GEMM]
    medians = medians_of(timings)
    worst_abs, worst_rel = check_rows(hidden, weight, target, threads)
    expected = results["xent"]
    agree = {
        name: relative_difference(value, expected) <= RTOL[case.dtype]
        for name, value in results.items()
        if name != "xent"
    }
    agree["reference"] = worst_abs <= CHECK_TOL[case.dtype] * max(1.0, abs(expected))
    agree[GEMM] = gemm_agrees
    return {
        "rows": case.rows,
        "hidden": case.hidden,
        "vocab": case.vocab,
        "dtype": case.dtype,
        "logits_bytes": case.logits_bytes,
        "timings": timings,
        "medians": medians,
        "speedup": speedups_of(medians),
        "gemm": {
            "timings": gemm_timings,
            "median": gemm_median,
            "gflops": gemm_gflops(case.rows, case.hidden, case.vocab, gemm_median),
        },
        "gemms": {name: median / gemm_median for name, median in medians.items()},
        "results": results,
        "agree": agree,
        "skipped": skipped,
        "reference_rows": CHECK_ROWS,
        "reference_max_abs_difference": worst_abs,
        "reference_max_rel_difference": worst_rel,
        "peak_rss_rise": {name: peak_rss_rise(fn) for name, fn in calls.items()},
        "tracemalloc_peak": {
            name: tracemalloc_peak(calls[name]) for name in ("xent", "numpy+xent")
        },
    }


def _relative_max_difference(got, expected):
    """max |got - expected| over max |expected| (0 for two zero arrays)."""
    scale = float(np.max(np.abs(expected)))
    worst = float(np.max(np.abs(got - expected)))
    return worst / scale if scale else (0.0 if worst == 0 else float("inf"))


def run_linear_grad(case, torch, threads, repeat, seed):
    """Time the loss with both gradients: xent against PyTorch's forward + backward, eager
    and chunked, with one GEMM of the shape interleaved; gradients checked against xent's.

    Returns
    -------
    dict
        Timings, medians, speedups, times in GEMMs, losses, the gradients' largest relative
        differences from xent's, agreement, peak extra memory.
    """
    hidden, weight, target = make_linear_data(case, seed)

    def run_xent():
        loss, grad_hidden, grad_weight = linear_cross_entropy_with_grad(
            hidden, weight, target, num_threads=threads
        )[:3]
        return float(loss), grad_hidden, grad_weight

    calls, skipped = {"xent": run_xent}, {}
    if torch is not None:
        th, tw, ty = torch.from_numpy(hidden), torch.from_numpy(weight), torch.from_numpy(target)
        functional = torch.nn.functional

        def backward_of(loss_of):
            def run():
                h = th.detach().requires_grad_(True)
                w = tw.detach().requires_grad_(True)
                loss = loss_of(h, w)
                loss.backward()
                return float(loss.detach()), h.grad.numpy(), w.grad.numpy()

            return run

        calls["torch"] = backward_of(lambda h, w: functional.cross_entropy(h @ w.T, ty))
        chunked = torch_chunked(torch, case)
        if isinstance(chunked, str):
            skipped["torch.lce"] = chunked
        else:
            calls["torch.lce"] = backward_of(lambda h, w: chunked(h, w, ty))
    for fn in calls.values():
        fn()  # warm-up
    with blas_threads(threads):
        gemm, gemm_agrees = _gemm_checked(hidden, weight)
        timings, results = time_interleaved({**calls, GEMM: gemm}, repeat)
    gemm_timings = timings.pop(GEMM)
    del results[GEMM]
    gemm_median = medians_of({GEMM: gemm_timings})[GEMM]
    medians = medians_of(timings)
    loss, grad_hidden, grad_weight = results["xent"]
    tolerance = RTOL[case.dtype]
    losses, differences, agree = {"xent": loss}, {}, {GEMM: gemm_agrees}
    for name, (peer_loss, peer_hidden, peer_weight) in results.items():
        if name == "xent":
            continue
        losses[name] = peer_loss
        differences[name] = {
            "loss": relative_difference(peer_loss, loss),
            "grad_hidden": _relative_max_difference(peer_hidden, grad_hidden),
            "grad_weight": _relative_max_difference(peer_weight, grad_weight),
        }
        agree[name] = all(value <= tolerance for value in differences[name].values())
    del results, grad_hidden, grad_weight
    return {
        "rows": case.rows,
        "hidden": case.hidden,
        "vocab": case.vocab,
        "dtype": case.dtype,
        "timings": timings,
        "medians": medians,
        "speedup": speedups_of(medians),
        "gemm": {
            "timings": gemm_timings,
            "median": gemm_median,
            "gflops": gemm_gflops(case.rows, case.hidden, case.vocab, gemm_median),
        },
        "gemms": {name: median / gemm_median for name, median in medians.items()},
        "losses": losses,
        "relative_difference": differences,
        "agree": agree,
        "skipped": skipped,
        "rtol": tolerance,
        "peak_rss_rise": {name: peak_rss_rise(fn) for name, fn in calls.items()},
    }


def print_linear(results, file=None):
    """One table per linear case for the loss, one for the loss with its gradients.

    Its comparison column is headed ``vs torch`` (``vs numpy+xent`` without PyTorch), as in
    the other sections: the compared median over the row's, above 1x the row is faster. The
    column ``GEMMs`` is each median in units of one GEMM of the shape, timed in the same
    rounds.
    """
    titles = {
        "xent": "xent.linear_cross_entropy",
        "torch": "torch F.cross_entropy(h @ W.T)",
        "torch.lce": "torch F.linear_cross_entropy (chunked)",
        "numpy+xent": "xent.cross_entropy(h @ W.T)",
    }
    grad_titles = {
        "xent": "xent.linear_cross_entropy_with_grad",
        "torch": "torch eager forward + backward",
        "torch.lce": "torch F.linear_cross_entropy (chunked) fwd + bwd",
    }
    width = max(len(t) for t in [*titles.values(), *grad_titles.values()])
    for r in results:
        gemm = r["gemm"]
        print(
            f"\nFused linear cross-entropy, N x H x V = {r['rows']} x {r['hidden']} x "
            f"{r['vocab']} {r['dtype']} ({format_bytes(r['logits_bytes'])} of logits "
            f"when formed); xent within {r['reference_max_abs_difference']:.1e} of the "
            f"float64 reference on {r['reference_rows']} rows; one GEMM h @ W.T "
            f"{format_time(gemm['median'])} ({gemm['gflops']:.0f} GFLOP/s):",
            file=file,
        )
        baseline = "torch" if "torch" in r["medians"] else "numpy+xent"
        table = Table(
            ["who", "median", "GEMMs", f"vs {baseline}", "RSS rise", "tracemalloc"],
            [width, 9, 6, 9, 12, 12],
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
                    format_gemms(r["gemms"][name]),
                    ratio,
                    format_bytes(r["peak_rss_rise"].get(name)),
                    format_bytes(traced),
                ]
            )
        grad = r.get("grad")
        if not grad:
            continue
        print(
            f"\nLoss + gradients of both, same shape (GEMM {format_time(grad['gemm']['median'])}):",
            file=file,
        )
        compare = ["vs torch"] if "torch" in grad["medians"] else []
        table = Table(
            ["who", "median", "GEMMs"] + compare + ["RSS rise"],
            [width, 9, 6] + [9] * len(compare) + [12],
            file,
        )
        for name, median in grad["medians"].items():
            mark = "" if name == "xent" or grad["agree"][name] else " !"
            cells = [
                grad_titles.get(name, name),
                format_time(median) + (mark if not compare else ""),
                format_gemms(grad["gemms"][name]),
            ]
            if compare:
                torch_median = grad["medians"]["torch"]
                cells.append(
                    ("-" if name == "torch" else format_ratio(torch_median / median)) + mark
                )
            table.row(cells + [format_bytes(grad["peak_rss_rise"].get(name))])
        for name, why in r.get("skipped", {}).items():
            print(f"  {name} skipped: {why}", file=file)


def disagreements(results):
    """Messages for the linear results that disagree with xent's (or xent's with the
    reference, or the GEMM's product with numpy's)."""
    messages = []
    for r in results:
        shape = f"linear {r['rows']}x{r['hidden']}x{r['vocab']}"
        for section, what in (
            (r, "xent.linear_cross_entropy"),
            (r.get("grad"), "xent.linear_cross_entropy_with_grad"),
        ):
            if not section:
                continue
            for name, ok in section["agree"].items():
                if ok:
                    continue
                if name == GEMM:
                    messages.append(f"{shape}: the GEMM's product differs from numpy's matmul")
                elif name == "reference":
                    messages.append(f"{shape}: {what} differs from the float64 reference")
                else:
                    messages.append(f"{shape}: {name} disagrees with {what}")
    return messages


def measure(args, peers, threads, report, progress=None):
    """Run the linear section (unless ``--no-linear``) into ``report["linear"]``: each
    case's loss, and (key ``"grad"``) its loss with the gradients.

    ``progress(message)`` shows what is being measured (None: nothing).
    """
    if not getattr(args, "linear", True):
        return
    torch = import_chain("torch") if any(p.name == "torch" for p in peers) else None
    report["linear"] = []
    for case in select_linear_cases(args):
        if progress is not None:
            progress(f"measuring linear {case.label} ...")
        result = run_linear(case, torch, threads, args.repeat, args.seed)
        if progress is not None:
            progress(f"measuring linear {case.label} with gradients ...")
        result["grad"] = run_linear_grad(case, torch, threads, args.repeat, args.seed)
        report["linear"].append(result)
        if progress is not None:
            progress(None)
    print_linear(report["linear"])
