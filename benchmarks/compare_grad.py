"""Loss and gradient: xent.cross_entropy_with_grad against PyTorch's forward + backward.

    python benchmarks/compare_grad.py [--shape 8192x32000] [--repeat 7]

Mean cross-entropy with integer labels, float32. Medians of interleaved runs in one process,
and the peak memory each call adds (rise of the peak resident set, VmHWM, reset before each
call; Linux). "xent in place" writes the gradient over the logits (out=logits): a fresh copy
of the logits is made before each of its runs, outside the timed region.
"""

import argparse

import numpy as np

import xent
from xent.bench import medians_of, parse_shape, peak_rss_rise, time_interleaved


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_shape, default=(8192, 32000))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import torch

    rows, cols = args.shape
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((rows, cols), dtype=np.float32)
    labels = rng.integers(0, cols, rows)
    scratch = np.empty_like(logits)

    def run_xent():
        return xent.cross_entropy_with_grad(logits, labels)

    def run_xent_in_place():
        return xent.cross_entropy_with_grad(scratch, labels, out=scratch)

    t_labels = torch.from_numpy(labels)

    def run_torch():
        x = torch.from_numpy(logits).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(x, t_labels)
        loss.backward()
        return float(loss.detach()), x.grad

    def restore():  # the in-place call overwrote its input: untimed
        np.copyto(scratch, logits)

    calls = {"xent": run_xent, "xent in place": (restore, run_xent_in_place), "torch": run_torch}
    times, _ = time_interleaved(calls, args.repeat)
    memory = {}
    for name, fn in calls.items():
        restore()
        memory[name] = peak_rss_rise(fn[1] if isinstance(fn, tuple) else fn)
    loss_x, grad_x = run_xent()
    loss_t, grad_t = run_torch()
    assert abs(float(loss_x) - loss_t) <= 1e-5 * abs(loss_t)
    assert np.allclose(grad_x, grad_t.numpy(), rtol=1e-4, atol=1e-9)
    del grad_x, grad_t

    xent.show_config()
    print(f"{'torch':>14}: {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(
        f"cross-entropy + gradient, {rows}x{cols} float32 "
        f"({logits.nbytes / 2**20:.0f} MiB of logits), medians of {args.repeat}"
    )
    medians = medians_of(times)
    base = medians["torch"]
    for name in calls:
        med = medians[name]
        print(
            f"{name:>14}: {med * 1e3:8.1f} ms  {rows * cols / med / 1e9:6.2f} Gelem/s  "
            f"{base / med:6.1f}x torch  peak memory added {memory[name] / 2**20:8.1f} MiB"
        )


if __name__ == "__main__":
    main()
