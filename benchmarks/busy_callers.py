"""Throughput when the caller already runs many threads that each call xent.

Each of K Python threads computes cross-entropy of the same 8192 x 1000 float32 logits in a
loop. With the automatic thread count, concurrent calls share the CPUs (K callers on P CPUs
get max(1, P // K) kernel threads each) instead of starting K x P threads; the table compares
that with every call forced to all CPUs (num_threads=-1) and to one thread.

    python benchmarks/busy_callers.py [--callers 1,2,4,8] [--repeat 5]
"""

import argparse
import threading
import time

import numpy as np

import xent


def throughput(x, target, callers, num_threads, calls):
    """Logits per second (Gelem/s) of `callers` threads each making `calls` calls."""

    def work():
        for _ in range(calls):
            xent.cross_entropy(x, target, num_threads=num_threads)

    threads = [threading.Thread(target=work) for _ in range(callers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return callers * calls * x.size / (time.perf_counter() - start) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", default="1,2,4,8")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8192, 1000), dtype=np.float32)
    target = rng.integers(0, 1000, 8192)
    policies = {"auto (shared)": None, "all CPUs each": -1, "one each": 1}
    print(f"{'callers':>8} " + " ".join(f"{p:>16}" for p in policies) + "   (Gelem/s, medians)")
    for callers in (int(c) for c in args.callers.split(",")):
        runs = {p: [] for p in policies}
        for _ in range(args.repeat):  # interleaved, so drift hits every policy alike
            for p, n in policies.items():
                runs[p].append(throughput(x, target, callers, n, args.calls))
        print(f"{callers:>8} " + " ".join(f"{np.median(r):>16.2f}" for r in runs.values()))


if __name__ == "__main__":
    main()
