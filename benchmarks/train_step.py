"""A training step of a language-model head: xent.torch against PyTorch's ways of computing it.

    python benchmarks/train_step.py [--shape 4096x1024x32000 ...] [--dtype float32 bfloat16]
                                    [--repeat 3] [--no-compile] [--threads N]

One step is the loss of hidden states (N x H, the output of the model's trunk) under an
output layer (V x H) and its backward pass: ``d loss / d hidden`` and ``d loss / d weight``.
Compared, each from the same tensors:

- ``xent``: :func:`xent.torch.linear_cross_entropy` (tiles; no N x V logits, forward or
  backward);
- ``torch eager``: ``F.cross_entropy(F.linear(h, W), y)``, the logits and their gradient
  formed;
- ``torch chunked``: ``F.linear_cross_entropy(h, W, y, options=LinearCrossEntropyOptions())``,
  PyTorch's own chunked head;
- ``torch.compile``: the eager step compiled by inductor (the first call, which compiles, is
  not timed).

Printed per (shape, dtype): the median time of a step over interleaved runs (so a noisy
neighbour slows every method alike), the rise of the process's peak resident set during one
step (VmHWM, reset before the step: it sees PyTorch's allocator), and each loss's difference
from xent's. PyTorch and xent use the same number of threads.
"""

import argparse
import platform
import sys

import xent
from xent.bench import git_commit, medians_of, peak_rss_rise, time_interleaved
from xent.bench.linear import parse_linear_shape

#: The issue's sizes: V = 32000 and 128256, H = 1024 to 2048, N = 4096 to 8192.
SHAPES = {"small": (4096, 1024, 32000), "large": (8192, 2048, 128256)}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def make_step_calls(torch, shape, dtype, compile_step):
    """Name -> function running one training step (loss and backward) on fresh gradients."""
    import xent.torch as xt

    F = torch.nn.functional
    rows, hidden_size, vocab = shape
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(rows, hidden_size, generator=g).to(dtype).requires_grad_(True)
    weight = torch.randn(vocab, hidden_size, generator=g) * (2 / hidden_size**0.5)
    weight = weight.to(dtype).requires_grad_(True)
    target = torch.randint(0, vocab, (rows,), generator=g)

    def step(loss_fn):
        def run():
            hidden.grad = weight.grad = None
            loss = loss_fn(hidden, weight, target)
            loss.backward()
            return loss.detach().item()

        return run

    def eager(h, w, y):
        return F.cross_entropy(F.linear(h, w), y)

    calls = {
        "xent": step(lambda h, w, y: xt.linear_cross_entropy(h, w, y)),
        "torch eager": step(eager),
        "torch chunked": step(
            lambda h, w, y: F.linear_cross_entropy(
                h, w, y, options=torch.nn.LinearCrossEntropyOptions()
            )
        ),
    }
    if compile_step:
        compiled = torch.compile(eager)
        calls["torch.compile"] = step(compiled)
    return calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape",
        type=parse_linear_shape,
        action="append",
        metavar="NxHxV",
        help="tokens x hidden x vocabulary (repeatable; default "
        + "x".join(map(str, SHAPES["small"]))
        + ")",
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=["float32", "bfloat16", "float16", "float64"],
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed steps per method")
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="leave out torch.compile (its first call compiles C++: minutes)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for xent and PyTorch (default xent.get_num_threads())",
    )
    args = parser.parse_args(argv)
    import torch

    threads = xent.get_num_threads(args.threads)
    torch.set_num_threads(threads)
    print(
        f"xent {xent.__version__} commit {git_commit() or '?'}, torch {torch.__version__}, "
        f"{cpu_name()}, {threads} threads, repeat {args.repeat}",
        flush=True,
    )
    header = f"{'method':15} {'time/step':>10} {'/ xent':>8} {'peak RSS rise':>14} {'loss':>12}"
    for shape in args.shape or [SHAPES["small"]]:
        for dtype_name in args.dtype:
            dtype = getattr(torch, dtype_name)
            logits_mib = shape[0] * shape[2] * dtype.itemsize / 2**20
            print(
                f"\n{'x'.join(map(str, shape))} (tokens x hidden x vocab) {dtype_name}, "
                f"logits {logits_mib:.0f} MiB",
                flush=True,
            )
            calls = make_step_calls(torch, shape, dtype, args.compile)
            warm = {name: fn() for name, fn in calls.items()}  # compiles torch.compile's
            timings, _ = time_interleaved(calls, args.repeat)
            medians = medians_of(timings)
            print(header)
            for name, fn in calls.items():
                rise = peak_rss_rise(fn)
                rise = "?" if rise is None else f"{rise / 2**20:.0f} MiB"
                print(
                    f"{name:15} {medians[name]:9.3f}s {medians[name] / medians['xent']:7.2f}x "
                    f"{rise:>14} {warm[name]:12.6f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
