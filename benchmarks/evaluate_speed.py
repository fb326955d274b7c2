"""xent.evaluate (loss, top-k, entropy in one pass) against xent.cross_entropy (loss only).

    python benchmarks/evaluate_speed.py [--shapes 65536x1000,1048576x10,64x1000000]
                                        [--threads 1,2] [--repeat 9]

float32, integer labels. Medians of interleaved runs in one process, printed with their
ratio; the aim is evaluate within 1.5x of cross_entropy at 65536x1000.
"""

import argparse
import statistics
import time

import numpy as np

import xent


def parse_shape(text):
    rows, cols = text.lower().split("x")
    return int(rows), int(cols)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="65536x1000,1048576x10,8192x32000,64x1000000")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    print(f"{'shape':>14} {'threads':>7} {'cross_entropy':>14} {'evaluate':>10} {'ratio':>6}")
    for shape in (parse_shape(s) for s in args.shapes.split(",")):
        rng = np.random.default_rng(0)
        logits = rng.standard_normal(shape, dtype=np.float32)
        labels = rng.integers(0, shape[1], shape[0])
        for threads in (int(t) for t in args.threads.split(",")):
            times = {"ce": [], "ev": []}
            for _ in range(args.repeat):   # interleaved: both see the same machine load
                start = time.perf_counter()
                xent.cross_entropy(logits, labels, num_threads=threads)
                times["ce"].append(time.perf_counter() - start)
                start = time.perf_counter()
                xent.evaluate(logits, labels, num_threads=threads)
                times["ev"].append(time.perf_counter() - start)
            ce, ev = statistics.median(times["ce"]), statistics.median(times["ev"])
            print(f"{shape[0]:>7}x{shape[1]:<6} {threads:>7} {ce * 1e3:>11.2f} ms "
                  f"{ev * 1e3:>7.2f} ms {ev / ce:>6.2f}")


if __name__ == "__main__":
    main()
