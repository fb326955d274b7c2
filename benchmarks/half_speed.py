"""Half precision and loss + gradient speed, against limits measured in the same run.

    python benchmarks/half_speed.py [--threads 2] [--repeat 7] [--only forward|grad|memory]

forward: cross_entropy, logsumexp, softmax and cross_entropy_with_grad (grad) of float32,
bfloat16 and float16 logits of the same shapes; the half/float32 ratio of elements per second
(target for the forward: half at least 1.5x).
grad: cross_entropy_with_grad of float32 8192 x 32000, in place (out=logits) and into a new
array, against the time of one read and one write of the array (a parallel numpy copy of
the same size into a second array, and in place: x *= 1), and PyTorch's forward + backward.
memory: the peak memory traced (tracemalloc) by cross_entropy_with_grad of bfloat16 logits,
against the logits' own size.

Every timing is the median of interleaved repeats in one process: on a shared machine the
ratios mean more than the times.
"""

import argparse
import statistics
import time
import tracemalloc

import numpy as np

import xent
from xent import _kernels


def median_times(funcs, repeat):
    """Median seconds of each function, its runs interleaved with the others'."""
    times = {name: [] for name in funcs}
    for func in funcs.values():  # warm up
        func()
    for _ in range(repeat):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def half_dtypes():
    import ml_dtypes

    return {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def forward(threads, repeat):
    rng = np.random.default_rng(0)
    shapes = [(65536, 10), (4096, 1000), (512, 32000), (4096, 32000)]
    print("forward (median ms; half rate / float32 rate)")
    for n, c in shapes:
        x32 = rng.standard_normal((n, c), dtype=np.float32) * 3
        target = rng.integers(0, c, n)
        arrays = {"float32": x32}
        arrays.update({name: x32.astype(dt) for name, dt in half_dtypes().items()})
        funcs = {}
        for name, a in arrays.items():
            funcs["ce " + name] = lambda a=a: xent.cross_entropy(a, target, num_threads=threads)
            funcs["lse " + name] = lambda a=a: xent.logsumexp(a, axis=-1, num_threads=threads)
            funcs["smax " + name] = lambda a=a: xent.softmax(a, num_threads=threads)
            funcs["grad " + name] = lambda a=a: xent.cross_entropy_with_grad(
                a, target, num_threads=threads
            )
        t = median_times(funcs, repeat)
        for op in ("ce", "lse", "smax", "grad"):
            base = t[f"{op} float32"]
            line = f"  {n:>6} x {c:<6} {op:<3} f32 {base * 1e3:7.2f}"
            for name in ("bfloat16", "float16"):
                line += (
                    f" | {name} {t[f'{op} {name}'] * 1e3:7.2f} ({base / t[f'{op} {name}']:.2f}x)"
                )
            print(line, flush=True)


def grad(threads, repeat):
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    n, c = 8192, 32000
    x = rng.standard_normal((n, c), dtype=np.float32) * 3
    work = x.copy()
    other = np.empty_like(x)
    target = rng.integers(0, c, n)

    def copy():
        xent_copy(x, other)

    def inplace_scale():
        np.multiply(work, np.float32(1), out=work)

    def ours_inplace():
        # overwrites work with its gradient: the values stay finite and similar in scale
        xent.cross_entropy_with_grad(work, target, out=work, num_threads=threads)

    def ours_new():
        xent.cross_entropy_with_grad(x, target, out=other, num_threads=threads)

    tx = torch.from_numpy(x)
    tt = torch.from_numpy(target)

    def torch_fwd_bwd():
        leaf = tx.detach().requires_grad_()
        torch.nn.functional.cross_entropy(leaf, tt).backward()

    funcs = {
        "copy x -> y (numpy, 2 threads)": copy,
        "x *= 1 in place": inplace_scale,
        "xent grad out=logits": ours_inplace,
        "xent grad out=new array": ours_new,
        "xent forward": lambda: xent.cross_entropy(x, target, num_threads=threads),
        "torch fwd+bwd": torch_fwd_bwd,
    }
    t = median_times(funcs, repeat)
    print(f"loss + gradient float32 {n} x {c} (median ms)")
    for name, value in t.items():
        print(f"  {name:<32} {value * 1e3:8.1f}")
    print(f"  in place / (x *= 1):      {t['xent grad out=logits'] / t['x *= 1 in place']:.2f}")
    print(
        f"  new array / copy:         {t['xent grad out=new array'] / t['copy x -> y (numpy, 2 threads)']:.2f}"
    )
    print(f"  torch / in place:         {t['torch fwd+bwd'] / t['xent grad out=logits']:.1f}x")
    print(f"  torch / new array:        {t['torch fwd+bwd'] / t['xent grad out=new array']:.1f}x")


def xent_copy(src, dst):
    """A two-thread copy of src into dst (numpy's copy is one thread): the write limit."""
    import threading

    half = src.shape[0] // 2
    worker = threading.Thread(target=np.copyto, args=(dst[:half], src[:half]))
    worker.start()
    np.copyto(dst[half:], src[half:])
    worker.join()


def memory(threads, repeat):
    rng = np.random.default_rng(0)
    n, c = 2048, 32000
    for name, dt in half_dtypes().items():
        x = (rng.standard_normal((n, c), dtype=np.float32) * 3).astype(dt)
        target = rng.integers(0, c, n)
        for label, out in (("new gradient", None), ("out=logits", x)):
            xent.cross_entropy_with_grad(x, target, out=out, num_threads=threads)
            tracemalloc.start()
            start = time.perf_counter()
            xent.cross_entropy_with_grad(x, target, out=out, num_threads=threads)
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(
                f"{name} {n} x {c} ({x.nbytes / 2**20:.0f} MiB) with_grad {label}: peak traced "
                f"{peak / 2**20:.1f} MiB, {seconds * 1e3:.1f} ms"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=("forward", "grad", "memory"))
    args = parser.parse_args()
    print(f"xent {xent.__version__}, isa {_kernels.current_isa()}, {args.threads} threads")
    for part in (forward, grad, memory):
        if args.only in (None, part.__name__):
            part(args.threads, args.repeat)


if __name__ == "__main__":
    main()
