"""``xent bench --plot``: every section of the report drawn with matplotlib, without pyplot
(no display needed): the forward throughput per shape, the loss + gradient, the fused linear
cross-entropy and, when measured, xent's thread scaling. Bars carry their values."""

import numpy as np

from .cases import QUICK_DIVISOR
from .peers import import_chain
from .report import format_time
from .roofline import format_fraction, format_gemms


def import_matplotlib_figure():
    """``matplotlib.figure``, or None if matplotlib is not installed."""
    try:
        import_chain("matplotlib")
        return import_chain("matplotlib.figure")
    except ImportError:
        return None


def write_plot(report, path, figure_module):
    """Draw every measured section of ``report`` into one image.

    Parameters
    ----------
    report : dict
        What ``xent bench`` measured.
    path : str
        The image file; its extension chooses the format (PNG by default).
    figure_module : module
        ``matplotlib.figure``.
    """
    cases = report["cases"]
    panels = []
    if cases:
        panels.append(_draw_throughput)
    if report.get("grad"):
        panels.append(_draw_grad)
    if report.get("linear"):
        panels.append(_draw_linear)
    if roofline_bars(report):
        panels.append(_draw_roofline)
    if cases and cases[0]["scaling"] is not None:
        panels.append(_draw_scaling)
    columns = min(2, max(1, len(panels)))
    rows = max(1, (len(panels) + 1) // 2)
    fig = figure_module.Figure(figsize=(7.5 * columns, 4.8 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, draw in zip(axes, panels):
        draw(ax, report)
        _fit_tick_labels(ax)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    shapes = (
        f"--quick shapes: the default ones with {QUICK_DIVISOR}x fewer rows"
        if report.get("quick") and not report["arguments"].get("shape")
        else ""
    )
    title = (
        f"xent {report['config']['xent']}, {report['config']['processor']}, "
        f"{report['threads']} threads, kernels {report['config']['isa']}"
    )
    fig.suptitle(title + (f"\n{shapes}" if shapes else ""))
    fig.savefig(path, dpi=110)


#: Short dtype names for crowded axes.
_SHORT_DTYPES = {"float32": "f32", "float64": "f64", "bfloat16": "bf16", "float16": "f16"}


def _fit_tick_labels(ax, most=5):
    """More than ``most`` groups on an axis: their labels on one line each, slanted, so that
    neighbours do not overlap."""
    labels = ax.get_xticklabels()
    if len(labels) <= most:
        return
    for label in labels:
        text = label.get_text().replace("\n", " ")
        for name, short in _SHORT_DTYPES.items():
            text = text.replace(name, short)
        label.set_text(text)
    ax.set_xticks(ax.get_xticks(), labels, rotation=40, ha="right", fontsize=7)


def _bars(ax, groups, series, values, labels):
    """Grouped bars: ``values[i][j]`` of series j in group i (NaN: none), each labelled."""
    width = 0.8 / len(series)
    positions = np.arange(len(groups))
    for j, name in enumerate(series):
        column = [row[j] for row in values]
        bars = ax.bar(positions + (j - (len(series) - 1) / 2) * width, column, width, label=name)
        ax.bar_label(
            bars, [labels[i][j] for i in range(len(groups))], fontsize=7, rotation=90, padding=2
        )
    ax.set_xticks(positions, groups)
    ax.margins(y=0.25)


def _draw_throughput(ax, report):
    cases = report["cases"]
    names = ["xent", "reference"] + [
        n for n in report["peers"] if any(n in c["medians"] for c in cases)
    ]
    values = [
        [c["elements"] / c["medians"][n] / 1e9 if n in c["medians"] else np.nan for n in names]
        for c in cases
    ]
    labels = [[f"{v:.3g}" if np.isfinite(v) else "" for v in row] for row in values]
    _bars(ax, [f"{c['rows']}x{c['classes']}\n{c['dtype']}" for c in cases], names, values, labels)
    ax.set_yscale("log")
    ax.set_ylabel("Gelem/s (logits per second / 1e9)")
    ax.set_title("Mean cross-entropy throughput (higher is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)


def _draw_grad(ax, report):
    grad = report["grad"]
    names = list(grad["medians"])
    medians = [grad["medians"][n] for n in names]
    bars = ax.bar(
        np.arange(len(names)),
        [m * 1e3 for m in medians],
        color=[f"C{i}" for i in range(len(names))],
    )
    ax.bar_label(bars, [format_time(m) for m in medians], fontsize=8, padding=2)
    ax.set_xticks(np.arange(len(names)), [n.replace("_", "\n") for n in names])
    ax.margins(y=0.2)
    ax.set_ylabel("median time, ms")
    ax.set_title(
        f"Loss + gradient, {grad['rows']}x{grad['classes']} {grad['dtype']} (lower is better)"
    )
    ax.grid(axis="y", alpha=0.3)


def _draw_linear(ax, report):
    results = report["linear"]
    names = list(dict.fromkeys(n for r in results for n in r["medians"]))
    values = [
        [r["medians"][n] * 1e3 if n in r["medians"] else np.nan for n in names] for r in results
    ]
    labels = [[format_time(v / 1e3) if np.isfinite(v) else "" for v in row] for row in values]
    _bars(
        ax,
        [f"{r['rows']}x{r['hidden']}x{r['vocab']}\n{r['dtype']}" for r in results],
        names,
        values,
        labels,
    )
    ax.set_ylabel("median time, ms")
    ax.set_title("Fused linear cross-entropy, N x H x V (lower is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _draw_scaling(ax, report):
    for c in report["cases"]:
        counts = c["scaling"]["threads"]
        ax.plot(
            counts,
            [c["elements"] / m / 1e9 for m in c["scaling"]["medians"]],
            "o-",
            label=f"{c['rows']}x{c['classes']} {c['dtype']}",
        )
    ax.set_xticks(counts)
    ax.set_xlabel("threads")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Gelem/s")
    ax.set_title("xent thread scaling")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def roofline_bars(report):
    """(label, fraction of the limit, value label, limit name) for every line that has a
    limit: each shape's xent against its read, the gradients against the in-place read +
    write, the linear head's loss against one GEMM of its shape and its loss with the
    gradients against three (the forward's and the two of the backward)."""
    bars = []
    for c in report["cases"]:
        if "fraction_of_read_bw" in c:
            value = c["fraction_of_read_bw"]
            label = f"{c['rows']}x{c['classes']}\n{c['dtype']}"
            bars.append((label, value, format_fraction(value), "read"))
    grad = report.get("grad") or {}
    names = {"xent": "grad", "xent_out": "grad\nout=", "xent_inplace": "grad\nin place"}
    for name, value in grad.get("fraction_of_read_write_bw", {}).items():
        bars.append((names.get(name, name), value, format_fraction(value), "read + write"))
    for r in report.get("linear") or []:
        shape = f"{r['rows']}x{r['hidden']}x{r['vocab']}"
        # the loss's limit is one GEMM, the loss with its gradients' three
        for section, what, limit in ((r, "linear", 1), (r.get("grad"), "linear\n+grad", 3)):
            if section and "gemms" in section and "xent" in section["gemms"]:
                gemms = section["gemms"]["xent"]
                text = f"{format_gemms(gemms)} GEMM"
                bars.append((f"{what}\n{shape}", limit / gemms, text, "GEMMs (1, or 3 with grads)"))
    return bars


def _draw_roofline(ax, report):
    bars = roofline_bars(report)
    limits = list(dict.fromkeys(limit for *_, limit in bars))
    colors = {limit: f"C{i}" for i, limit in enumerate(limits)}
    positions = np.arange(len(bars))
    drawn = ax.bar(
        positions,
        [value * 100 for _, value, _, _ in bars],
        color=[colors[limit] for *_, limit in bars],
    )
    ax.bar_label(drawn, [text for _, _, text, _ in bars], fontsize=7, rotation=90, padding=2)
    for limit in limits:  # one legend entry per kind of limit
        ax.bar([0], [0], color=colors[limit], label=f"of {limit}")
    ax.axhline(100, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(positions, [label for label, *_ in bars], fontsize=7)
    ax.margins(y=0.25)
    ax.set_ylabel("% of the machine's limit (100: at it)")
    ax.set_title("Roofline: each line's fraction of its limit (higher is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
