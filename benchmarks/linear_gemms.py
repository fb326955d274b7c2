"""The fused linear head against one GEMM of its shape and against PyTorch, in one process.

    python benchmarks/linear_gemms.py [--shape 4096x1024x32000] [--repeat 5] [--no-torch]
                                      [--no-memory]

float32, xent.get_num_threads() threads (PyTorch and the BLAS on as many). Medians of
interleaved runs, so a shared machine slows every call alike. The yardstick is one GEMM of
the head's shape, (N x H) @ (H x V), through scipy's BLAS (the one xent's kernels call) with
its own threads: the forward needs one such product, the gradient three. Printed per call:
its median, that median over the GEMM's, and the rise of the process's peak resident set
during one call (VmHWM, reset before it: sees PyTorch's allocator too).

Calls: ``gemm`` (scipy's sgemm), ``xent fwd`` (linear_cross_entropy), ``xent grad``
(linear_cross_entropy_with_grad), ``torch eager`` (F.cross_entropy(h @ W.T) forward +
backward), ``torch chunked`` (F.linear_cross_entropy with LinearCrossEntropyOptions(),
forward + backward).
"""

import argparse
import warnings

import numpy as np
from scipy.linalg import blas

import xent
from xent.bench import medians_of, peak_rss_rise, time_interleaved


def parse_shape(text):
    n, h, v = (int(part) for part in text.lower().split("x"))
    return n, h, v


def torch_calls(hidden, weight, target, threads):
    """PyTorch's eager and chunked forward + backward, or {} without torch."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    F = torch.nn.functional
    th, tw, ty = torch.from_numpy(hidden), torch.from_numpy(weight), torch.from_numpy(target)

    def backward_of(loss_of):
        def run():
            h = th.detach().requires_grad_(True)
            w = tw.detach().requires_grad_(True)
            loss = loss_of(h, w)
            loss.backward()
            return float(loss.detach()), h.grad, w.grad

        return run

    calls = {"torch eager": backward_of(lambda h, w: F.cross_entropy(h @ w.T, ty))}
    options = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if options is not None and hasattr(F, "linear_cross_entropy"):
        calls["torch chunked"] = backward_of(
            lambda h, w: F.linear_cross_entropy(h, w, ty, options=options())
        )
    return calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_shape, default=(4096, 1024, 32000))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-torch", dest="torch", action="store_false")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    args = parser.parse_args()
    n, h, v = args.shape
    threads = xent.get_num_threads()
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((n, h), dtype=np.float32)
    weight = (rng.standard_normal((v, h), dtype=np.float32) / np.float32(np.sqrt(h))).astype(
        np.float32
    )
    target = rng.integers(0, v, n)

    calls = {
        # logits (N x V, C order) = hidden @ weight.T, as (V x N, Fortran order) = W x h^T:
        # both operands read in place, no copy
        "gemm": lambda: blas.sgemm(1.0, weight.T, hidden.T, trans_a=True),
        "xent fwd": lambda: xent.linear_cross_entropy(hidden, weight, target),
        "xent grad": lambda: xent.linear_cross_entropy_with_grad(hidden, weight, target),
    }
    if args.torch:
        calls.update(torch_calls(hidden, weight, target, threads))
    flops = 2.0 * n * h * v
    print(
        f"{n} x {h} x {v} float32, {threads} threads, repeat {args.repeat}, one GEMM = "
        f"{flops / 1e9:.0f} GFLOP",
        flush=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times, results = time_interleaved(calls, args.repeat)
    if "torch eager" in results:
        loss, gh, gw = results["xent grad"]
        ref_loss, ref_gh, ref_gw = results["torch eager"]
        print(
            f"xent grad vs torch eager: loss {abs(float(loss) - ref_loss) / abs(ref_loss):.1e}, "
            f"grad_hidden {np.abs(gh - ref_gh.numpy()).max() / np.abs(ref_gh.numpy()).max():.1e}, "
            f"grad_weight {np.abs(gw - ref_gw.numpy()).max() / np.abs(ref_gw.numpy()).max():.1e} "
            f"(relative to the largest entry)"
        )
    results.clear()
    medians = medians_of(times)
    gemm = medians["gemm"]
    print(f"GEMM rate: {flops / gemm / 1e9:.0f} GFLOP/s")
    print(f"\n{'call':14} {'median':>9} {'x GEMM':>7} {'peak RSS rise':>14}")
    for name in calls:
        rise = ""
        if args.memory:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rise = f"{peak_rss_rise(calls[name]) / 2**20:.0f} MiB"
        print(f"{name:14} {medians[name] * 1e3:7.0f}ms {medians[name] / gemm:6.2f}x {rise:>14}")
    for peer in ("torch eager", "torch chunked"):
        if peer in medians:
            print(f"xent grad is {medians[peer] / medians['xent grad']:.2f}x {peer}'s speed")


if __name__ == "__main__":
    main()
