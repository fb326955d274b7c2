"""Forward row kernels against the machine's read bandwidth of the same array, in one run.

    python benchmarks/rows_roofline.py [--shapes 1048576x10,65536x10,...] [--threads 2]
                                       [--repeat 15] [--dtype float32]

For each shape: the median time of xent.cross_entropy, xent.evaluate and of a plain
multi-threaded read of the same array (an OpenMP sum over it, compiled here with the C
compiler: the fastest a kernel that reads every element once can go), interleaved so that all
three see the same machine load. Prints Gelem/s and the fraction of the read's rate reached.
The issue's targets: cross_entropy at >= 80% of the read for C >= 1000, >= 50% for C 2..64,
evaluate within 1.5x of cross_entropy.
"""

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile

import numpy as np

import xent
import xent._kernels
from xent.bench import medians_of, parse_shape, time_interleaved

_READER = r"""
#include <stddef.h>
/* Sum of every element, 8 (16) independent accumulators per thread so that the adds keep up
 * with the loads: the time is the time to read the array. */
double read_f32(const float *x, ptrdiff_t n, int threads)
{
    double total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (ptrdiff_t b = 0; b < (n + 4095) / 4096; b++) {
        float acc[32] = {0};
        ptrdiff_t end = (b + 1) * 4096 < n ? (b + 1) * 4096 : n, i = b * 4096;
        for (; i + 32 <= end; i += 32)
#pragma omp simd
            for (int l = 0; l < 32; l++) acc[l] += x[i + l];
        for (; i < end; i++) acc[0] += x[i];
        for (int l = 0; l < 32; l++) total += acc[l];
    }
    return total;
}
double read_f64(const double *x, ptrdiff_t n, int threads)
{
    double total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (ptrdiff_t b = 0; b < (n + 2047) / 2048; b++) {
        double acc[16] = {0};
        ptrdiff_t end = (b + 1) * 2048 < n ? (b + 1) * 2048 : n, i = b * 2048;
        for (; i + 16 <= end; i += 16)
#pragma omp simd
            for (int l = 0; l < 16; l++) acc[l] += x[i + l];
        for (; i < end; i++) acc[0] += x[i];
        for (int l = 0; l < 16; l++) total += acc[l];
    }
    return total;
}
"""


def build_reader():
    """Compile the OpenMP read into a temporary shared library and load it."""
    tmp = tempfile.mkdtemp(prefix="xent_roofline_")
    src, lib = os.path.join(tmp, "read.c"), os.path.join(tmp, "read.so")
    with open(src, "w") as f:
        f.write(_READER)
    cc = os.environ.get("CC", "cc")
    subprocess.run(
        [cc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", src, "-o", lib], check=True
    )
    dll = ctypes.CDLL(lib)
    for name, ctype in (("read_f32", ctypes.c_float), ("read_f64", ctypes.c_double)):
        fn = getattr(dll, name)
        fn.restype = ctypes.c_double
        fn.argtypes = [ctypes.POINTER(ctype), ctypes.c_ssize_t, ctypes.c_int]
    return dll


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes", default="1048576x10,65536x10,262144x64,4096x1000,512x32000,4x1048576"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-evaluate", action="store_true")
    args = parser.parse_args()
    dll = build_reader()
    dtype = np.dtype(args.dtype)
    read = dll.read_f32 if dtype == np.float32 else dll.read_f64
    ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    t = args.threads
    print(f"xent {xent.__version__} isa={xent._kernels.current_isa()} threads={t} dtype={dtype}")
    print(
        f"{'shape':>16} {'read GB/s':>9} {'ce ms':>8} {'Gelem/s':>8} {'of read':>7} {'eval ms':>8} {'ev/ce':>6}"
    )
    for shape in (parse_shape(s) for s in args.shapes.split(",")):
        rng = np.random.default_rng(0)
        logits = rng.standard_normal(shape).astype(dtype)
        labels = rng.integers(0, shape[1], shape[0])
        ptr = logits.ctypes.data_as(ctypes.POINTER(ctype))
        calls = {
            "read": lambda: read(ptr, logits.size, t),
            "ce": lambda: xent.cross_entropy(logits, labels, num_threads=t),
        }
        if not args.no_evaluate:
            calls["ev"] = lambda: xent.evaluate(logits, labels, num_threads=t)
        times, _ = time_interleaved(calls, args.repeat)
        med = medians_of(times)
        gbs = logits.nbytes / med["read"] / 1e9
        ce = med["ce"]
        ev = f"{med['ev'] * 1e3:8.2f} {med['ev'] / ce:6.2f}" if "ev" in med else ""
        print(
            f"{shape[0]:>8}x{shape[1]:<7} {gbs:9.1f} {ce * 1e3:8.3f} "
            f"{logits.size / ce / 1e9:8.2f} {med['read'] / ce:7.0%} {ev}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
