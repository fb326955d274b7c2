"""Fused linear cross-entropy: xent against PyTorch forming the logits, forward and gradient.

    python benchmarks/compare_linear.py [--shape 4096x1024x32000] [--repeat 5] [--no-grad]

float32 on xent.get_num_threads() threads (PyTorch on as many). Medians of interleaved runs
in one process; the peak memory each call adds (rise of the peak resident set, VmHWM, reset
before the call; and tracemalloc's peak, which sees numpy's arrays but not PyTorch's); xent's
largest difference from the float64 reference over 256 rows.
"""

import argparse

import numpy as np

import xent
from xent.bench import linear as bench_linear
from xent.bench import medians_of, peak_rss_rise, time_interleaved, tracemalloc_peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape", type=bench_linear.parse_linear_shape, default=(4096, 1024, 32000)
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-grad", dest="grad", action="store_false")
    args = parser.parse_args()
    import torch

    threads = xent.get_num_threads()
    torch.set_num_threads(threads)
    case = bench_linear.LinearCase(*args.shape)
    hidden, weight, target = bench_linear.make_linear_data(case, seed=0)
    th, tw, ty = torch.from_numpy(hidden), torch.from_numpy(weight), torch.from_numpy(target)
    F = torch.nn.functional

    def torch_grad():
        h = th.requires_grad_(True)
        w = tw.requires_grad_(True)
        h.grad = w.grad = None
        loss = F.cross_entropy(h @ w.T, ty)
        loss.backward()
        out = float(loss.detach()), h.grad, w.grad
        h.requires_grad_(False), w.requires_grad_(False)
        return out

    calls = {
        "xent": lambda: float(xent.linear_cross_entropy(hidden, weight, target)),
        "torch": lambda: float(F.cross_entropy(th @ tw.T, ty)),
    }
    if args.grad:
        calls["xent grad"] = lambda: xent.linear_cross_entropy_with_grad(hidden, weight, target)
        calls["torch grad"] = torch_grad
    print(
        f"{case.label} float32, {threads} threads, logits {case.logits_bytes / 2**20:.0f} "
        f"MiB, repeat {args.repeat}",
        flush=True,
    )
    times, results = time_interleaved(calls, args.repeat)
    worst_abs, worst_rel = bench_linear.check_rows(hidden, weight, target, threads)
    print(
        f"xent vs float64 reference on 256 rows: max abs {worst_abs:.2e}, max rel "
        f"{worst_rel:.2e}; xent {results['xent']!r} torch {results['torch']!r}"
    )
    if args.grad:
        _, gh, gw = results["xent grad"]
        _, eh, ew = results["torch grad"]
        print(
            f"gradients vs torch: hidden {np.abs(gh - eh.numpy()).max() / np.abs(eh.numpy()).max():.2e}, "
            f"weight {np.abs(gw - ew.numpy()).max() / np.abs(ew.numpy()).max():.2e} "
            f"(relative to the largest entry)"
        )
    results.clear()
    medians = medians_of(times)
    print(f"\n{'call':12} {'median':>9} {'torch / xent':>13} {'RSS rise':>10} {'tracemalloc':>12}")
    for name in calls:
        other = {"xent": "torch", "xent grad": "torch grad"}.get(name)
        ratio = f"{medians[other] / medians[name]:.2f}x" if other else "-"
        rss = peak_rss_rise(calls[name]) / 2**20
        traced = tracemalloc_peak(calls[name]) / 2**20
        print(
            f"{name:12} {medians[name]:8.3f}s {ratio:>13} {rss:9.1f}M {traced:11.1f}M", flush=True
        )


if __name__ == "__main__":
    main()
