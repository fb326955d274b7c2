"""``xent.evaluate`` of a ``.npy`` file: the ``pread`` path (a path argument) against a memory
map of the same file (``np.load(..., mmap_mode="r")``), from a cold and a warm page cache.

    python benchmarks/read_path.py DIR [--mib 1024] [--classes 1024] [--repeat 5] [--keep]

Writes DIR/logits.npy (float32) and DIR/labels.npy, then times, interleaved in one process
so that a busy machine weighs on every variant alike:

- ``mmap``: ``xent.evaluate(np.load(path, mmap_mode="r"), labels)`` (SIGBUS if the file
  shrinks meanwhile);
- ``pread``: ``xent.evaluate(path, labels)``, with readahead advice
  (``xent._io.READ_AHEAD``: ``POSIX_FADV_WILLNEED`` on the next chunk);
- ``pread-plain``: the same with the advice off.

Cold: before each run the file's pages are dropped from the page cache with
``posix_fadvise(POSIX_FADV_DONTNEED)`` (allowed without root for a file's clean pages;
``/proc/sys/vm/drop_caches`` needs root and is tried first). Prints each variant's median
and all runs, and the load average, since the machine may be shared.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

import xent
from xent import _io


def write_files(directory, mib, classes):
    rows = mib * 2**20 // (4 * classes)
    path = os.path.join(directory, "logits.npy")
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, classes))
    step = max(1, (64 << 20) // (4 * classes))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        x[start:stop] = rng.standard_normal((stop - start, classes), dtype=np.float32)
    x.flush()
    del x
    labels = os.path.join(directory, "labels.npy")
    np.save(labels, rng.integers(0, classes, rows))
    return path, labels


def drop(path):
    """Drop the file's pages from the page cache; returns how ("drop_caches", "fadvise")."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return "drop_caches"
    except OSError:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return "fadvise"


def run(variant, path, labels):
    _io.READ_AHEAD = variant != "pread-plain"
    source = np.load(path, mmap_mode="r") if variant == "mmap" else path
    start = time.perf_counter()
    report = xent.evaluate(source, labels)
    seconds = time.perf_counter() - start
    _io.READ_AHEAD = True
    return seconds, report.loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--mib", type=int, default=1024, help="size of the logits file")
    parser.add_argument("--classes", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args(argv)
    path, labels_path = write_files(args.directory, args.mib, args.classes)
    labels = np.load(labels_path)
    variants = ("mmap", "pread", "pread-plain")
    try:
        for cache in ("warm", "cold"):
            times = {v: [] for v in variants}
            losses = set()
            how = None
            if cache == "warm":
                for v in variants:  # fill the cache, and first-use costs out of the way
                    run(v, path, labels)
            for _ in range(args.repeat):
                for v in variants:
                    if cache == "cold":
                        how = drop(path)
                    seconds, loss = run(v, path, labels)
                    times[v].append(seconds)
                    losses.add(loss)
            assert len(losses) == 1, losses  # every path reads the same numbers
            note = f" (page cache dropped with {how})" if how else ""
            print(f"{cache}{note}, {args.mib} MiB float32, {args.classes} classes:")
            for v in variants:
                runs = " ".join(f"{t:.3f}" for t in times[v])
                print(f"  {v:12s} median {statistics.median(times[v]):.3f} s   runs: {runs}")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)
    finally:
        if not args.keep:
            os.remove(path)
            os.remove(labels_path)


if __name__ == "__main__":
    main()
