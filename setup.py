"""Build xent's Cython extensions, with OpenMP when the compiler has it.

xent._table compiles the C row kernels once (one copy per instruction set, xent/src) and owns
their table; xent._kernels and xent._linear hold the Cython drivers and compile no kernel.
Before cythonize, xent/src/gen_kernel_api.py writes the drivers' view of the table
(xent/_kernel_api.pxd) from the one C list of kernels. The C files of all extensions are
compiled in parallel (XENT_BUILD_JOBS, default: the CPUs this process may use).

OpenMP is detected by compiling and running a small probe. Without it the extension is built
serially with a warning; set XENT_REQUIRE_OPENMP=1 to make that an error instead (CI does),
or XENT_DISABLE_OPENMP=1 to build the serial fallback on purpose.
"""

import glob
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "xent", "src"))
import gen_kernel_api  # noqa: E402 (from xent/src, just above)

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n);
    return n > 0 ? 0 : 1;
}
"""

# No -ffast-math: it would break inf and NaN. -fno-math-errno and -fno-trapping-math only let
# the compiler vectorise selects and skip errno; -ffp-contract=fast lets it fuse a*b+c into
# one FMA (ISO modes such as -std=c11 forbid that, which costs the exp a third of its speed).
# Results stay IEEE.
# -g0: no debug information in what users install (Python's own CFLAGS ask for -g).
BASE_FLAGS = [
    "-O3",
    "-g0",
    "-std=gnu11",
    "-ffp-contract=fast",
    "-fno-math-errno",
    "-fno-trapping-math",
]


def openmp_flags(compiler):
    """Compile and link flags for OpenMP with this compiler, or None if it has none."""
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        for cflags, ldflags in candidates:
            try:
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=cflags)
                exe = os.path.join(tmp, "probe")
                # LDFLAGS too: objects built with CFLAGS such as -fsanitize need them to link
                compiler.link_executable(
                    objects, exe, extra_postargs=ldflags + os.environ.get("LDFLAGS", "").split()
                )
                subprocess.run([exe], check=True, capture_output=True, timeout=60)
                return cflags, ldflags
            except Exception:  # any failure means: this flag set does not work here
                continue
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        # XENT_DISABLE_OPENMP=1 builds the serial fallback on purpose (to test it).
        disabled = os.environ.get("XENT_DISABLE_OPENMP", "") not in ("", "0")
        flags = None if disabled else openmp_flags(self.compiler)
        if flags is None:
            message = (
                "xent: building without threads (XENT_DISABLE_OPENMP is set)"
                if disabled
                else "xent: the C compiler has no working OpenMP; building without threads"
            )
            if os.environ.get("XENT_REQUIRE_OPENMP", "") not in ("", "0"):
                raise RuntimeError(message + " (XENT_REQUIRE_OPENMP is set)")
            print("WARNING: " + message, file=sys.stderr)
            cflags, ldflags = ["-fopenmp-simd"], []
        else:
            cflags, ldflags = flags
        for ext in self.extensions:
            ext.extra_compile_args = BASE_FLAGS + cflags + ext.extra_compile_args
            ext.extra_link_args = ldflags + ext.extra_link_args
        jobs = _build_jobs()
        if jobs > 1:
            _compile_in_parallel(self.compiler, jobs)
            # setuptools' own option builds whole extensions in parallel; the compiler's
            # files (several per extension) are spread over the same number of threads
            self.parallel = jobs
        super().build_extensions()


def _build_jobs():
    """Compiler processes to run at once: XENT_BUILD_JOBS, or the CPUs this process may use."""
    value = os.environ.get("XENT_BUILD_JOBS", "").strip()
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _compile_in_parallel(compiler, jobs):
    """Make compiler.compile() run its source files on a pool of jobs threads.

    distutils compiles an extension's sources one after another; the kernel library has four
    (one per instruction set and the dispatch), each a few seconds. Each file is still compiled
    by one compiler process with the same arguments, so the objects are the same.
    """
    pool = ThreadPoolExecutor(jobs)
    serial = compiler._compile

    def compile(
        sources,
        output_dir=None,
        macros=None,
        include_dirs=None,
        debug=0,
        extra_preargs=None,
        extra_postargs=None,
        depends=None,
    ):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs
        )
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)
        list(
            pool.map(
                lambda obj: serial(obj, *build[obj], cc_args, extra_postargs, pp_opts),
                [obj for obj in objects if obj in build],
            )
        )
        return objects

    compiler.compile = compile


KERNEL_HEADERS = [
    os.path.join("xent", "src", name)
    for name in sorted(
        os.listdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "xent", "src"))
    )
    if name.endswith(".h")
]
COMMON = dict(
    include_dirs=["xent/src", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
)

extensions = [
    # The one compiled copy of the kernels, their table and the instruction set in use.
    Extension(
        "xent._table",
        [
            "xent/_table.pyx",
            "xent/src/xent_dispatch.c",
            "xent/src/xent_isa_baseline.c",
            "xent/src/xent_isa_avx2.c",
            "xent/src/xent_isa_avx512.c",
        ],
        depends=KERNEL_HEADERS,
        **COMMON,
    ),
    # The row drivers: loops over blocks of rows, calling the kernels through the table.
    Extension(
        "xent._kernels",
        ["xent/_kernels.pyx"],
        depends=KERNEL_HEADERS + glob.glob("xent/_kernels_*.pxi"),
        **COMMON,
    ),
    # The fused linear cross-entropy: tiles of logits from scipy's BLAS (cython_blas).
    Extension("xent._linear", ["xent/_linear.pyx"], depends=KERNEL_HEADERS, **COMMON),
]

gen_kernel_api.generate()

setup(
    ext_modules=cythonize(
        extensions, compiler_directives={"language_level": "3"}, nthreads=_build_jobs()
    ),
    cmdclass={"build_ext": BuildExt},
)
