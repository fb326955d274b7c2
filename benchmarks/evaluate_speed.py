"""xent.evaluate (loss, top-k, entropy, calibration in one pass) against xent.cross_entropy.

    python benchmarks/evaluate_speed.py [--shapes 1000000x10,100000x100:bfloat16]
                                        [--threads 1,2] [--repeat 15]

Integer labels; float32 unless a shape says otherwise after a colon (float16, bfloat16,
float64). Each round runs both calls once, one after the other, so both see the same load;
the table has the medians over the rounds of the wall time and of the process's CPU time
(time.process_time: every thread's, so on a shared machine it shows the work done where the
wall time shows the waiting too), and their ratios. The aim: evaluate within 1.5x of
cross_entropy at every row length.
"""

import argparse
import statistics
import time

import numpy as np

import xent
from xent.bench import parse_shape

DEFAULT_SHAPES = "1000000x10,100000x100,10000x1000,1000x32000,100000x100:bfloat16"


def dtype_named(name):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def time_pair(calls, repeat):
    """Name -> (median wall seconds, median CPU seconds) over interleaved rounds."""
    wall = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for fn in calls.values():  # a warm-up run each: threads started, pages touched
        fn()
    for _ in range(repeat):
        for name, fn in calls.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in calls}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--threads", default="2")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(
        f"{'shape':>14} {'dtype':>8} {'thr':>3} {'cross_entropy':>13} {'evaluate':>9} "
        f"{'ratio':>5} {'CE cpu':>9} {'ev cpu':>9} {'cpu ratio':>9}"
    )
    for spec in args.shapes.split(","):
        shape_text, _, dtype_text = spec.partition(":")
        shape, dtype = parse_shape(shape_text), dtype_named(dtype_text or "float32")
        rng = np.random.default_rng(0)
        logits = (rng.standard_normal(shape, dtype=np.float32) * 3).astype(dtype)
        labels = rng.integers(0, shape[1], shape[0])
        for threads in (int(t) for t in args.threads.split(",")):
            result = time_pair(
                {
                    "ce": lambda: xent.cross_entropy(logits, labels, num_threads=threads),
                    "ev": lambda: xent.evaluate(logits, labels, num_threads=threads),
                },
                args.repeat,
            )
            (ce, ce_cpu), (ev, ev_cpu) = result["ce"], result["ev"]
            print(
                f"{shape[0]:>7}x{shape[1]:<6} {dtype.name:>8} {threads:>3} {ce * 1e3:>10.2f} ms "
                f"{ev * 1e3:>6.2f} ms {ev / ce:>5.2f} {ce_cpu * 1e3:>6.1f} ms "
                f"{ev_cpu * 1e3:>6.1f} ms {ev_cpu / ce_cpu:>9.2f}"
            )


if __name__ == "__main__":
    main()
