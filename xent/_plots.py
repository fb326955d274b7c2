"""Figures for ``xent eval --plot`` and ``xent compare --plot`` (matplotlib, loaded lazily)."""

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def reliability_diagram(report, path):
    """Accuracy against confidence per calibration bin, with the bins' row counts below.

    Parameters
    ----------
    report : xent.EvaluationReport
    path : str
        The image file to write (its extension picks the format, e.g. ``.png``).
    """
    plt = _pyplot()
    table = report.calibration_table
    low, high, count, conf, acc = table.T
    kept = count > 0
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    width = high - low
    top.bar(
        low[kept],
        acc[kept],
        width=width[kept],
        align="edge",
        color="#4c72b0",
        edgecolor="white",
        label="accuracy",
    )
    top.bar(
        low[kept],
        conf[kept] - acc[kept],
        bottom=acc[kept],
        width=width[kept],
        align="edge",
        color="#dd8452",
        alpha=0.5,
        edgecolor="white",
        label="gap to mean confidence",
    )
    top.plot(conf[kept], acc[kept], "o", color="black", ms=3, label="(confidence, accuracy)")
    top.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
    kind = "equal-mass" if report.calibration == "mass" else "equal-width"
    top.set_title(
        f"Reliability: ECE {report.ece:.4f}, MCE {report.mce:.4f} ({len(table)} {kind} bins)"
    )
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(low, count, width=width, align="edge", color="gray", edgecolor="white")
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("rows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def comparison_plot(report, path):
    """KL(ref || cand) histogram (log-spaced), and the target probability's change.

    Parameters
    ----------
    report : xent.ComparisonReport
    path : str
    """
    plt = _pyplot()
    shifts = report.target_prob_shifts
    panels = 2 if shifts is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    ax = axes[0, 0]
    kl = report.kl_values.astype(np.float64)
    kl = kl[np.isfinite(kl)]
    positive = kl[kl > 0]
    if len(positive):
        lo, hi = np.log10(positive.min()), np.log10(positive.max())
        bins = np.logspace(lo, max(hi, lo + 1e-3), 60)
        ax.hist(positive, bins=bins, color="#4c72b0")
        ax.set_xscale("log")
    for q, v in report.kl_percentiles.items():
        if v > 0 and np.isfinite(v):
            ax.axvline(v, color="#c44e52", lw=1, ls=":")
            ax.text(
                v,
                ax.get_ylim()[1] * 0.95,
                "max" if q == 100 else f"p{q:g}",
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
            )
    ax.set_title(f"KL(ref || cand) per row: mean {report.kl:.3g} nats")
    ax.set_xlabel("KL, nats")
    ax.set_ylabel("rows")
    if shifts is not None:
        ax = axes[0, 1]
        s = shifts[np.isfinite(shifts)].astype(np.float64)
        ax.hist(s, bins=80, color="#55a868")
        ax.set_yscale("log")
        ax.axvline(0, color="gray", lw=1)
        ax.set_title(
            f"target probability change (cand - ref): RMS {report.target_prob_shift['rms']:.3g}"
        )
        ax.set_xlabel("p_cand(target) - p_ref(target)")
        ax.set_ylabel("rows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
