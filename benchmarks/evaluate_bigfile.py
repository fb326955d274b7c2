"""``xent eval`` of a logits file larger than RAM: its time against reading the file, and its
peak anonymous memory.

    python benchmarks/evaluate_bigfile.py DIR [--gib 44] [--classes 1000] [--keep]

Writes DIR/logits.npy (float32, written a chunk at a time from a generator) and DIR/labels.npy,
then times ``cat FILE > /dev/null`` cold (after trying ``sync; echo 3 >
/proc/sys/vm/drop_caches``) and warm, and ``xent eval --json --no-progress`` while sampling
RssAnon from /proc/PID/status every 20 ms. Deletes the files at the end unless --keep.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def drop_caches():
    """Try to empty the page cache; returns whether it worked."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError as exc:
        print(f"  drop_caches failed: {exc}", flush=True)
        return False


def timed(cmd, sample_pid_status=False):
    """(seconds, peak RssAnon KiB or None, stdout) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        if sample_pid_status:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            peak = max(peak, int(line.split()[1]))
            except OSError:
                pass
        time.sleep(0.02)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed: {err}")
    return seconds, peak if sample_pid_status else None, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--gib", type=float, default=44)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    c = args.classes
    n = int(args.gib * 2**30) // (c * 4)
    logits_path = os.path.join(args.dir, "logits.npy")
    labels_path = os.path.join(args.dir, "labels.npy")
    try:
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        # plain sequential writes after the .npy header: faster than a memory map's writeback
        with open(logits_path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (n, c)}
            )
            labels = rng.integers(0, c, n)
            step = 65536
            for s in range(0, n, step):
                block = rng.standard_normal((min(step, n - s), c), dtype=np.float32)
                block[np.arange(len(block)), labels[s : s + step]] += 2
                f.write(block.data)
        np.save(labels_path, labels)
        size = os.path.getsize(logits_path)
        print(
            f"wrote {logits_path}: {n:,} x {c:,} float32, {size / 2**30:.2f} GiB in "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )

        dropped = drop_caches()
        cold, _, _ = timed(["sh", "-c", f"cat {logits_path} > /dev/null"])
        warm, _, _ = timed(["sh", "-c", f"cat {logits_path} > /dev/null"])
        print(
            f"cat cold{'' if dropped else ' (caches not dropped)'}: {cold:.1f} s "
            f"({size / cold / 2**30:.2f} GiB/s); warm: {warm:.1f} s "
            f"({size / warm / 2**30:.2f} GiB/s)",
            flush=True,
        )
        drop_caches()
        seconds, peak, out = timed(
            [
                sys.executable,
                "-m",
                "xent",
                "eval",
                logits_path,
                labels_path,
                "--json",
                "--no-progress",
            ],
            True,
        )
        report = json.loads(out)
        print(
            f"xent eval: {seconds:.1f} s ({size / seconds / 2**30:.2f} GiB/s, "
            f"{n / seconds:,.0f} rows/s), peak RssAnon {peak / 1024:.1f} MiB",
            flush=True,
        )
        print(json.dumps(report), flush=True)
        seconds2, peak2, _ = timed(
            [
                sys.executable,
                "-m",
                "xent",
                "eval",
                logits_path,
                labels_path,
                "--json",
                "--no-progress",
            ],
            True,
        )
        print(f"xent eval again: {seconds2:.1f} s, peak RssAnon {peak2 / 1024:.1f} MiB", flush=True)
    finally:
        if not args.keep:
            for path in (logits_path, labels_path):
                if os.path.exists(path):
                    os.remove(path)
            print("deleted the files", flush=True)


if __name__ == "__main__":
    main()
