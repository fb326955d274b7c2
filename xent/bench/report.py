"""Printing and saving what ``xent bench`` measured: the tables, the notes, the JSON.

The format helpers (:func:`format_time`, :func:`format_ratio`, :func:`format_bytes`) and
:class:`Table` are shared with ``xent``, ``xent eval`` and the scripts in ``benchmarks/``.
Every comparison column is headed ``vs X``: X's median time over xent's, above 1x xent is
faster.
"""

import json
import os

import numpy as np

from .cases import EVALUATE, REFERENCE_MAX_RUNS
from .roofline import format_fraction


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
    print(
        f"xent bench: mean cross-entropy with integer labels, medians of {report['repeat']} "
        f"interleaved runs (the numpy reference: {min(report['repeat'], REFERENCE_MAX_RUNS)})",
        file=file,
    )
    print(f"  cpu:      {cfg['processor']} ({cfg['cpus']} CPUs available)", file=file)
    print(
        f"  kernels:  {cfg['isa']} (available: {', '.join(cfg['isa_available'])}; "
        f"OpenMP: {'yes' if cfg['openmp'] else 'no'})",
        file=file,
    )
    print(f"  threads:  xent {report['threads']}", file=file)
    busy = report["busy_cpus_before"]
    if busy is not None and busy >= 0.3:
        print(
            f"  WARNING:  other processes kept {busy:.1f} of {os.cpu_count()} CPUs busy just "
            f"before the run: timings (on all threads most of all) will be slow and noisy",
            file=file,
        )
    print_limits(report.get("limits"), file)
    print(f"  versions: {', '.join(versions)}", file=file)
    for peer in peers:
        print(f"  peer:     {peer.name}: {peer.title}, {peer.threads}", file=file)
    for name, why in skipped.items():
        print(f"  skipped:  {name}: {why}", file=file)
    print(file=file)


def print_limits(limits, file=None):
    """The header's lines of the machine's measured limits (nothing if none were measured)."""
    if not limits:
        return
    memory = limits["memory"]
    cache = memory["last_level_cache_bytes"]
    cache_note = f"; largest cache {format_bytes(cache)}" if cache else ""
    print(
        f"  limits:   read {memory['read_dram_gb_per_s']:.1f} GB/s from DRAM "
        f"({format_bytes(memory['dram_probe_bytes'])} array{cache_note}), "
        f"{memory['read_cache_gb_per_s']:.1f} GB/s from cache "
        f"({format_bytes(memory['cache_probe_bytes'])}); in-place read + write "
        f"{memory['read_write_gb_per_s']:.1f} GB/s",
        file=file,
    )
    gemm = limits.get("gemm")
    if gemm:
        print(
            f"            GEMM {gemm['gflops']:.0f} GFLOP/s ({gemm['dtype']} "
            f"{gemm['rows']} x {gemm['hidden']} x {gemm['vocab']}, {gemm['blas']}, "
            f"{gemm['threads']} threads)",
            file=file,
        )
    print(
        "            each shape's fraction is against a read (or read + write) of its own "
        "array, timed\n            in the same rounds; the linear head's time is in GEMMs "
        "of its shape, timed alike;\n            in the main table a run under 20 ms follows "
        "an untimed run of the same call\n            (a loop's steady state: its threads "
        "awake), for every peer alike",
        file=file,
    )


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
    """The forward table for these cases and the loaded peers; prints its header.

    A peer that is not installed has no column (it is listed as skipped above the table).
    """
    headers = ["shape", "dtype", "xent", "Gelem/s", "GB/s", "of read bw", "evaluate"]
    headers += ["vs reference"] + [f"vs {name}" for name in peer_names]
    headers += ["xent mem"] + (["torch mem"] if "torch" in peer_names else [])
    widths = [max(len(case.label) for case in cases), 8, 9, 7, 6, 10, 8, 7]
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
    return (
        [
            f"{result['rows']} x {result['classes']}",
            result["dtype"],
            format_time(result["medians"]["xent"]),
            f"{result['gelem_per_s']:.2f}",
            f"{result['gb_per_s']:.2f}",
            format_fraction(result["fraction_of_read_bw"]),
            ratio(EVALUATE),
            ratio("reference"),
        ]
        + [ratio(name) for name in peer_names]
        + [format_bytes(memory.get("xent"))]
        + ([format_bytes(memory.get("torch"))] if "torch" in peer_names else [])
    )


def disagreements(report):
    """One message for each result of the cross-entropy and gradient sections that differs
    from xent's beyond the tolerance (the linear section has its own,
    :func:`xent.bench.linear.disagreements`)."""
    messages = []
    for result in report["cases"]:
        shape = f"{result['rows']} x {result['classes']} {result['dtype']}"
        for name, ok in result["agree"].items():
            if not ok and not _peer_failed(result, name):
                messages.append(
                    f"{name} gives {result['results'][name]!r} where xent gives "
                    f"{result['results']['xent']!r} on {shape}: relative difference "
                    f"{result['relative_difference'][name]:.2e} > {result['rtol']:.0e}"
                )
    grad = report.get("grad")
    if grad:
        shape = f"{grad['rows']} x {grad['classes']} {grad['dtype']}"
        for name, ok in grad["agree"].items():
            if not ok:
                messages.append(
                    f"{name} loss + gradient differ from xent's on {shape}: relative "
                    f"difference of the loss {grad['relative_difference_loss'][name]:.2e}, "
                    f"of the gradient {grad['relative_difference_grad'][name]:.2e} "
                    f"(tolerance {grad['rtol']:.0e})"
                )
    return messages


def _peer_failed(result, name):
    """Whether a peer gave inf or NaN where xent's result is finite (a float16 sum that
    overflowed, say): the peer is wrong, not in doubt."""
    value, expected = float(result["results"][name]), float(result["results"]["xent"])
    return not np.isfinite(value) and bool(np.isfinite(expected))


def peer_failures(report):
    """One message for each peer result that is inf or NaN where xent's is finite.

    These are marked ``!`` in the table like a disagreement, but do not set the exit status:
    that says a result is in doubt, and a non-finite mean of finite logits is not."""
    messages = []
    for result in report["cases"]:
        for name in result["agree"]:
            if name != "reference" and _peer_failed(result, name):
                messages.append(
                    f"{name} gives {result['results'][name]!r} where xent gives "
                    f"{result['results']['xent']!r} on {result['rows']} x {result['classes']} "
                    f"{result['dtype']}: the logits are finite (the peer's result overflowed)"
                )
    return messages


def print_case_skips(report, file=None):
    """Peers that sat out single cases, and why."""
    for result in report["cases"]:
        for name, why in result["skipped"].items():
            print(
                f"  {name} skipped on {result['rows']} x {result['classes']} "
                f"{result['dtype']}: {why}",
                file=file,
            )


def print_grad(grad, file=None):
    """The loss + gradient table."""
    print(
        f"\nLoss + gradient, {grad['rows']} x {grad['classes']} {grad['dtype']} "
        f"({format_bytes(grad['bytes'])} of logits):",
        file=file,
    )
    titles = {
        "xent": "xent.cross_entropy_with_grad",
        "xent_out": "  same, out=a reused buffer",
        "xent_inplace": "  same, in place (out=logits)",
        "torch": "torch forward + backward",
    }
    torch_median = grad["medians"].get("torch")
    # "vs torch" only where PyTorch ran: a column of dashes says nothing
    compare = ["vs torch"] if torch_median is not None else []
    fractions = grad.get("fraction_of_read_write_bw", {})
    table = Table(
        ["who", "median", "of r+w bw"] + compare + ["peak extra memory"],
        [max(len(t) for t in titles.values()), 9, 9] + [9] * len(compare) + [17],
        file,
    )
    for name, median in grad["medians"].items():
        mark = "" if name == "xent" or grad["agree"][name] else " !"
        cells = [titles.get(name, name), format_time(median) + (mark if not compare else "")]
        cells.append(format_fraction(fractions[name]) if name in fractions else "")
        if compare:
            cells.append(("-" if name == "torch" else format_ratio(torch_median / median)) + mark)
        table.row(cells + [format_bytes(grad["peak_rss_rise"].get(name))])
    probe = grad.get("read_write_probe")
    if probe:
        print(
            f"of r+w bw: an in-place read and write of the same array (the in-place "
            f"gradient's traffic) took {format_time(probe['median'])} "
            f"({probe['gb_per_s']:.1f} GB/s), over each time",
            file=file,
        )
    for name, why in grad["skipped"].items():
        print(f"  {name} skipped: {why}", file=file)


def print_scaling(report, file=None):
    """xent's throughput on 1..n threads for every case."""
    counts = report["cases"][0]["scaling"]["threads"]
    print("\nThread scaling of xent, Gelem/s (speedup over 1 thread):", file=file)
    widths = [max(len(f"{r['rows']} x {r['classes']} {r['dtype']}") for r in report["cases"])]
    table = Table(
        ["shape"] + [f"{n} thread{'s' * (n != 1)}" for n in counts],
        widths + [14] * len(counts),
        file,
    )
    for result in report["cases"]:
        medians = result["scaling"]["medians"]
        table.row(
            [f"{result['rows']} x {result['classes']} {result['dtype']}"]
            + [
                f"{result['elements'] / m / 1e9:.2f} ({format_ratio(medians[0] / m)})"
                for m in medians
            ]
        )


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
