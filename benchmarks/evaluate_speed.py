"""xent.evaluate (loss, top-k, entropy in one pass) against xent.cross_entropy (loss only).

    python benchmarks/evaluate_speed.py [--shapes 65536x1000,1048576x10,64x1000000]
                                        [--threads 1,2] [--repeat 9]

float32, integer labels. Medians of interleaved runs in one process, printed with their
ratio; the aim is evaluate within 1.5x of cross_entropy at 65536x1000.
"""

import argparse

import numpy as np

import xent
from xent.bench import medians_of, parse_shape, time_interleaved


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
            times, _ = time_interleaved(  # interleaved: both see the same machine load
                {
                    "ce": lambda: xent.cross_entropy(logits, labels, num_threads=threads),
                    "ev": lambda: xent.evaluate(logits, labels, num_threads=threads),
                },
                args.repeat,
            )
            ce, ev = medians_of(times)["ce"], medians_of(times)["ev"]
            print(
                f"{shape[0]:>7}x{shape[1]:<6} {threads:>7} {ce * 1e3:>11.2f} ms "
                f"{ev * 1e3:>7.2f} ms {ev / ce:>6.2f}"
            )


if __name__ == "__main__":
    main()
