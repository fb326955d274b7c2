"""GEMM rate of every BLAS this environment can load, against the machine's peak, in one run.

    python benchmarks/blas_choice.py [--shape 2048x1024x8192] [--repeat 3] [--calls 3]
                                     [--threads 2] [--ghz 2.6] [--fma-units 2]

Each OpenBLAS is called through its own ``cblas_sgemm`` (ctypes) into a preallocated output,
on the same number of threads, each in processes of its own, the rounds interleaved (in one
process, each library's threads spin a while after its calls, on the cores the next library's
calls need: the one timed first gained up to 1.5x): scipy's (the one
``scipy.linalg.cython_blas`` gives, which xent's kernels call), numpy's, and the
``scipy-openblas32`` / ``scipy-openblas64`` wheels when installed; PyTorch's ``torch.mm``
(``out=``) too when torch is installed. Printed per BLAS: the kernel family it picked for this
CPU (``openblas_get_corename``), the median time and GFLOP/s, and the fraction of the peak;
then the library xent's linear head chose (``xent.linear.blas_info()``) and why.

The peak: cores x clock x FMA units per core x 16 float32 lanes (AVX-512) x 2 flops per FMA.
The clock is /proc/cpuinfo's "cpu MHz" unless --ghz is given (a virtual machine shows the
nominal clock; turbo may exceed it); two FMA units per core is what Xeon Gold/Platinum and
Sapphire Rapids have (--fma-units 1 for parts with one).
"""

import argparse
import ctypes
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def cpu_ghz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000
    return float("nan")


class OpenBLAS:
    """One OpenBLAS shared library: its cblas_sgemm, thread count and core name."""

    def __init__(self, name, path):
        self.name, self.lib = name, ctypes.CDLL(path)
        for prefix, suffix, index_type in (
            ("scipy_", "64_", ctypes.c_int64),
            ("scipy_", "", ctypes.c_int),
            ("", "", ctypes.c_int),
        ):
            gemm = getattr(self.lib, f"{prefix}cblas_sgemm{suffix}", None)
            if gemm is not None:
                int_t = index_type
                break
        else:
            raise OSError(f"{path}: no cblas_sgemm")
        self.int_t = int_t
        self.gemm = gemm
        self.gemm.restype = None
        self.gemm.argtypes = (
            [ctypes.c_int] * 3
            + [int_t] * 3
            + [
                ctypes.c_float,
                ctypes.c_void_p,
                int_t,
                ctypes.c_void_p,
                int_t,
                ctypes.c_float,
                ctypes.c_void_p,
                int_t,
            ]
        )
        core = getattr(self.lib, f"{prefix}openblas_get_corename{suffix}")
        core.restype = ctypes.c_char_p
        self.core = core().decode()
        config = getattr(self.lib, f"{prefix}openblas_get_config{suffix}")
        config.restype = ctypes.c_char_p
        self.version = config().decode().split()[1]
        self.set_threads = getattr(self.lib, f"{prefix}openblas_set_num_threads{suffix}")
        self.set_threads.argtypes = [ctypes.c_int]

    def product(self, a, w, c):
        """c (n x v, C order) = a (n x h) @ w (v x h).T, in place."""
        (n, h), v = a.shape, w.shape[0]
        pointer = ctypes.c_void_p

        # CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112
        def run():
            # the operands by their addresses, taken here: run holds the arrays alive
            self.gemm(
                101,
                111,
                112,
                n,
                v,
                h,
                1.0,
                pointer(a.ctypes.data),
                h,
                pointer(w.ctypes.data),
                h,
                0.0,
                pointer(c.ctypes.data),
                v,
            )

        return run


def find_openblas():
    """The OpenBLAS libraries scipy, numpy and the scipy-openblas wheels ship."""
    import numpy
    import scipy

    found = []
    for name, pattern in (
        (
            "scipy (cython_blas)",
            os.path.join(os.path.dirname(scipy.__file__) + ".libs", "*openblas*.so*"),
        ),
        ("numpy", os.path.join(os.path.dirname(numpy.__file__) + ".libs", "*openblas*.so*")),
    ):
        found += [(name, path) for path in sorted(glob.glob(pattern))[:1]]
    for module in ("scipy_openblas32", "scipy_openblas64"):
        try:
            wheel = __import__(module)
        except ImportError:
            continue
        found.append((module, os.path.join(wheel.get_lib_dir(), f"lib{wheel.get_library()}.so")))
    return found


def _callers(n, h, v, threads):
    """name -> (zero-argument GEMM call, description), for every BLAS this process can load."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, h), dtype=np.float32)
    w = rng.standard_normal((v, h), dtype=np.float32)
    c = np.zeros((n, v), dtype=np.float32)
    calls = {}
    for name, path in find_openblas():
        blas = OpenBLAS(name, path)
        blas.set_threads(threads)
        calls[name] = (blas.product(a, w, c), f"{blas.core} (OpenBLAS {blas.version})")
    try:
        import torch

        torch.set_num_threads(threads)
        ta, tw, tc = torch.from_numpy(a), torch.from_numpy(w), torch.from_numpy(c)
        mkl = "MKL" if torch.backends.mkl.is_available() else "?"
        calls["torch.mm"] = (lambda: torch.mm(ta, tw.T, out=tc), mkl)
    except ImportError:
        pass
    return calls


def _one(args, n, h, v):
    """A child's work: one BLAS, a warm-up call, then --calls timed calls; prints them."""
    call, description = _callers(n, h, v, args.threads)[args.one]
    call()
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    print(json.dumps({"description": description, "times": times}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="2048x1024x8192")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of one process per BLAS")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per process")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--ghz", type=float, default=None)
    parser.add_argument("--fma-units", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process's BLAS
    args = parser.parse_args()
    n, h, v = (int(x) for x in args.shape.lower().split("x"))
    if args.one:
        return _one(args, n, h, v)
    ghz = args.ghz or cpu_ghz()
    peak = args.threads * ghz * args.fma_units * 16 * 2
    # xent's own choice, made in a process that loads no other library
    import xent.linear

    chosen = xent.linear.blas_info()
    names = list(_callers(1, 1, 1, 1))
    times, descriptions = {name: [] for name in names}, {}
    # One process per BLAS and round, the rounds interleaved: two libraries in one process
    # share the cores with each other's threads, which spin for a while after each call.
    for _ in range(args.repeat):
        for name in names:
            child = [
                sys.executable,
                __file__,
                "--one",
                name,
                "--shape",
                args.shape,
                "--calls",
                str(args.calls),
                "--threads",
                str(args.threads),
            ]
            result = json.loads(
                subprocess.run(
                    child, capture_output=True, text=True, check=True
                ).stdout.splitlines()[-1]
            )
            times[name] += result["times"]
            descriptions[name] = result["description"]
    flops = 2.0 * n * h * v
    print(
        f"sgemm {n} x {h} x {v}, {args.threads} threads; peak {peak:.0f} GFLOP/s = "
        f"{args.threads} cores x {ghz:.2f} GHz x {args.fma_units} FMA units x 16 lanes x 2"
    )
    print(f"medians of {args.repeat} processes x {args.calls} calls per BLAS, interleaved")
    for name in names:
        median = statistics.median(times[name])
        rate = flops / median / 1e9
        print(
            f"{name:20} {descriptions[name]:34} {median * 1e3:8.1f} ms {rate:7.1f} GFLOP/s "
            f"{rate / peak:6.1%} of peak"
        )
    print(f"xent's linear head: {chosen['description']} ({chosen['reason']})")


if __name__ == "__main__":
    main()
