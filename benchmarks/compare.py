"""Medians of interleaved runs of xent, the numpy reference and PyTorch, in one process.

    python benchmarks/compare.py [--shape 65536x1000 ...] [--repeat 7] [--dtype float32]

Mean cross-entropy with integer labels. Runs are interleaved (xent, reference, torch, xent,
...) so that a noisy neighbour slows all of them alike; the table gives medians and the ratios
of medians. The reference runs a block of rows at a time (its float64 temporaries would
otherwise need several times the input).
"""

import argparse

import numpy as np

import xent
from xent.bench import medians_of, parse_shape, time_interleaved
from xent.bench import reference_mean  # a block of rows at a time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_shape, action="append")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reference-repeat", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    shapes = args.shape or [(65536, 1000), (8192, 32000), (1 << 20, 10), (64, 1 << 20)]
    try:
        import torch
    except ImportError:
        torch = None
    xent.show_config()
    if torch is not None:
        print(f"{'torch':>14}: {torch.__version__}, {torch.get_num_threads()} threads")
    print()
    print(
        f"{'shape':>14} {'xent':>10} {'reference':>10} {'torch':>10} {'xent Gelem/s':>13} "
        f"{'vs reference':>13} {'vs torch':>9}"
    )
    rng = np.random.default_rng(0)
    for rows, cols in shapes:
        logits = rng.standard_normal((rows, cols), dtype=np.float32).astype(args.dtype)
        labels = rng.integers(0, cols, rows)
        calls = {
            "xent": lambda: xent.cross_entropy(logits, labels),
            "reference": lambda: reference_mean(logits, labels),
        }
        if torch is not None:
            x, t = torch.from_numpy(logits), torch.from_numpy(labels)
            calls["torch"] = lambda: float(torch.nn.functional.cross_entropy(x, t))
        times, results = time_interleaved(calls, args.repeat, {"reference": args.reference_repeat})
        expected = results["reference"]
        for name, value in results.items():
            assert abs(float(value) - expected) <= 1e-5 * abs(expected), (name, value, expected)
        med = medians_of(times)
        torch_time = f"{med['torch'] * 1e3:8.1f}ms" if "torch" in med else f"{'-':>10}"
        vs_torch = f"{med['torch'] / med['xent']:8.1f}x" if "torch" in med else f"{'-':>9}"
        print(
            f"{rows:>7}x{cols:<6} {med['xent'] * 1e3:8.1f}ms {med['reference'] * 1e3:8.1f}ms "
            f"{torch_time} {rows * cols / med['xent'] / 1e9:13.2f} "
            f"{med['reference'] / med['xent']:12.1f}x {vs_torch}"
        )


if __name__ == "__main__":
    main()
