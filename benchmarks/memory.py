"""Peak memory the forward loss adds over its input: xent, the reference, PyTorch.

    python benchmarks/memory.py [--shape 65536x1000 --shape 8192x32000]

Two measures per call: the peak of Python/numpy allocations (tracemalloc, which numpy
reports to) and the rise of the process's peak resident set (xent.bench.peak_rss_rise:
VmHWM reset through /proc/self/clear_refs after freed heap pages are handed back; Linux
only), which also sees PyTorch's allocator.
"""

import argparse
import tracemalloc

import numpy as np

import xent
from xent.bench import parse_shape, peak_rss_rise


def measure(fn):
    """(peak traced bytes, peak RSS rise in bytes) of one call of fn()."""
    tracemalloc.start()
    rss = peak_rss_rise(fn)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return traced_peak, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape",
        type=parse_shape,
        action="append",
        help="ROWSxCLASSES (repeatable; default 65536x1000 and 8192x32000)",
    )
    args = parser.parse_args()
    shapes = args.shape or [(65536, 1000), (8192, 32000)]
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"{'shape':>12} {'input MiB':>10} {'who':>10} {'traced MiB':>11} {'RSS rise MiB':>13}")
    for rows, cols in shapes:
        logits = rng.standard_normal((rows, cols), dtype=np.float32)
        labels = rng.integers(0, cols, rows)
        calls = {"xent": lambda: xent.cross_entropy(logits, labels)}
        if torch is not None:
            x, t = torch.from_numpy(logits), torch.from_numpy(labels)
            calls["torch"] = lambda: torch.nn.functional.cross_entropy(x, t)
        for who, fn in calls.items():
            fn()  # warm up: thread pools, allocator arenas
            traced, rss = measure(fn)
            print(
                f"{rows:>6}x{cols:<5} {logits.nbytes / 2**20:10.1f} {who:>10} "
                f"{traced / 2**20:11.3f} {rss / 2**20:13.1f}"
            )


if __name__ == "__main__":
    main()
