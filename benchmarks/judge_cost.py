"""The cost of evaluate's added outputs and the memory of xent.compare.

    python benchmarks/judge_cost.py evaluate OTHER_CHECKOUT   # this tree against another
    python benchmarks/judge_cost.py compare                   # peak memory of xent compare

``evaluate``: the same data (.npy files in a temporary directory) evaluated by this checkout's
xent.evaluate (loss, accuracies, entropy, calibration, Brier, standard errors) and by the
xent.evaluate of OTHER_CHECKOUT (a build without them, such as main), each in its own
process, alternating, seven times; prints the median seconds of each and their ratio. One
evaluation per process run is timed after a warm-up, so both read the file from page cache.

``compare``: writes two float32 logit files of 256 MiB each (larger than any L3 cache), runs
``xent compare`` on them in a subprocess and reports its peak resident set (VmHWM, which
counts the memory-mapped file pages it touched, page cache the kernel may drop) and its peak
anonymous memory (RssAnon, sampled every 2 ms), the memory xent itself holds.
"""

import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

TIMED = """
import sys, time, numpy as np
sys.path.insert(0, {root!r})
import xent
x = np.load({x!r}, mmap_mode='r'); t = np.load({t!r})
xent.evaluate(x[:1000], t[:1000])
best = []
for _ in range(3):
    s = time.perf_counter(); xent.evaluate(x, t); best.append(time.perf_counter() - s)
print(min(best))
"""


def evaluate_cost(other):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        for n, c in ((2**20, 50), (2**12, 32000)):
            rng = np.random.default_rng(0)
            x = rng.standard_normal((n, c), dtype=np.float32) * 2
            t = rng.integers(0, c, n)
            xp, tp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "t.npy")
            np.save(xp, x)
            np.save(tp, t)
            del x
            times = {here: [], other: []}
            for _ in range(7):
                for root in (here, other):
                    out = subprocess.run(
                        [sys.executable, "-c", TIMED.format(root=root, x=xp, t=tp)],
                        capture_output=True,
                        text=True,
                        cwd=tmp,
                        check=True,
                    )
                    times[root].append(float(out.stdout.split()[-1]))
            a, b = statistics.median(times[here]), statistics.median(times[other])
            print(
                f"{n} x {c} float32: with calibration {a * 1e3:.1f} ms, "
                f"{os.path.basename(other)} {b * 1e3:.1f} ms, ratio {a / b:.3f}"
            )


MEMORY = """
import threading, time, numpy as np, xent, sys
from xent.cli import main
def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1])
base = anon(); peak = [base]; stop = []
def sample():
    while not stop:
        peak[0] = max(peak[0], anon()); time.sleep(0.002)
th = threading.Thread(target=sample); th.start()
status = main(['compare', 'r.npy', 'c.npy', 't.npy', '--json', '--no-progress'])
stop.append(1); th.join()
for line in open('/proc/self/status'):
    if line.startswith(('VmHWM', 'RssFile')):
        print(line.strip(), file=sys.stderr)
print(f'RssAnon before {base} kB, peak during xent compare {peak[0]} kB', file=sys.stderr)
"""


def compare_memory():
    n, c = 2048, 32768  # 256 MiB per model
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for name, noise in (("r", 0.0), ("c", 0.05)):
            out = np.lib.format.open_memmap(
                os.path.join(tmp, f"{name}.npy"), mode="w+", dtype=np.float32, shape=(n, c)
            )
            for start in range(0, n, 256):
                base = np.random.default_rng(start).standard_normal((256, c), np.float32)
                out[start : start + 256] = base + noise * rng.standard_normal((256, c), np.float32)
            del out
        np.save(os.path.join(tmp, "t.npy"), rng.integers(0, c, n))
        proc = subprocess.run(
            [sys.executable, "-c", MEMORY], capture_output=True, text=True, cwd=tmp, check=True
        )
        print(proc.stderr.strip())
        print("files: 2 x 256 MiB float32 logits, 2048 rows x 32768 classes")


if __name__ == "__main__":
    if sys.argv[1] == "evaluate":
        evaluate_cost(os.path.abspath(sys.argv[2]))
    else:
        compare_memory()
