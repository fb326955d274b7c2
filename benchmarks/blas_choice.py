"""GEMM rate of every BLAS this environment can load, against the machine's peak, in one run.

    python benchmarks/blas_choice.py [--shape 2048x1024x8192] [--repeat 7] [--threads 2]
                                     [--ghz 2.6] [--fma-units 2]

Each OpenBLAS is called through its own ``cblas_sgemm`` (ctypes) into the same preallocated
output, on the same number of threads, interleaved: scipy's (the one
``scipy.linalg.cython_blas`` gives, which xent's kernels call), numpy's, and the
``scipy-openblas32`` / ``scipy-openblas64`` wheels when installed; PyTorch's ``torch.mm``
(``out=``) too when torch is installed. Printed per BLAS: the kernel family it picked for this
CPU (``openblas_get_corename``), the median time and GFLOP/s, and the fraction of the peak.

The peak: cores x clock x FMA units per core x 16 float32 lanes (AVX-512) x 2 flops per FMA.
The clock is /proc/cpuinfo's "cpu MHz" unless --ghz is given (a virtual machine shows the
nominal clock; turbo may exceed it); two FMA units per core is what Xeon Gold/Platinum and
Sapphire Rapids have (--fma-units 1 for parts with one).
"""

import argparse
import ctypes
import glob
import os
import statistics
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
        args = (101, 111, 112, n, v, h, 1.0, a.ctypes.data, h, w.ctypes.data, h, 0.0)
        return lambda: self.gemm(*args, pointer(c.ctypes.data), v)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="2048x1024x8192")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--ghz", type=float, default=None)
    parser.add_argument("--fma-units", type=int, default=2)
    args = parser.parse_args()
    n, h, v = (int(x) for x in args.shape.lower().split("x"))
    ghz = args.ghz or cpu_ghz()
    peak = args.threads * ghz * args.fma_units * 16 * 2
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, h), dtype=np.float32)
    w = rng.standard_normal((v, h), dtype=np.float32)
    c = np.zeros((n, v), dtype=np.float32)
    calls, cores = {}, {}
    for name, path in find_openblas():
        blas = OpenBLAS(name, path)
        blas.set_threads(args.threads)
        calls[name], cores[name] = blas.product(a, w, c), f"{blas.core} (OpenBLAS {blas.version})"
    try:
        import torch

        torch.set_num_threads(args.threads)
        ta, tw, tc = torch.from_numpy(a), torch.from_numpy(w), torch.from_numpy(c)
        calls["torch.mm"] = lambda: torch.mm(ta, tw.T, out=tc)
        cores["torch.mm"] = "MKL" if torch.backends.mkl.is_available() else "?"
    except ImportError:
        pass
    times = {name: [] for name in calls}
    for _ in range(args.repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    flops = 2.0 * n * h * v
    print(
        f"sgemm {n} x {h} x {v}, {args.threads} threads; peak {peak:.0f} GFLOP/s = "
        f"{args.threads} cores x {ghz:.2f} GHz x {args.fma_units} FMA units x 16 lanes x 2"
    )
    for name in calls:
        median = statistics.median(times[name])
        rate = flops / median / 1e9
        print(
            f"{name:20} {cores[name]:28} {median * 1e3:8.1f} ms {rate:7.1f} GFLOP/s "
            f"{rate / peak:6.1%} of peak"
        )


if __name__ == "__main__":
    main()
