"""Build xent's Cython extension, with OpenMP when the compiler has it.

OpenMP is detected by compiling and running a small probe. Without it the extension is built
serially with a warning; set XENT_REQUIRE_OPENMP=1 to make that an error instead (CI does),
or XENT_DISABLE_OPENMP=1 to build the serial fallback on purpose.
"""

import os
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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
BASE_FLAGS = ["-O3", "-std=gnu11", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math"]


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
                compiler.link_executable(objects, exe, extra_postargs=ldflags + os.environ.get(
                    "LDFLAGS", "").split())
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
            message = ("xent: building without threads (XENT_DISABLE_OPENMP is set)" if disabled
                       else "xent: the C compiler has no working OpenMP; building without threads")
            if os.environ.get("XENT_REQUIRE_OPENMP", "") not in ("", "0"):
                raise RuntimeError(message + " (XENT_REQUIRE_OPENMP is set)")
            print("WARNING: " + message, file=sys.stderr)
            cflags, ldflags = ["-fopenmp-simd"], []
        else:
            cflags, ldflags = flags
        for ext in self.extensions:
            ext.extra_compile_args = BASE_FLAGS + cflags + ext.extra_compile_args
            ext.extra_link_args = ldflags + ext.extra_link_args
        super().build_extensions()


extensions = [
    Extension(
        "xent._kernels",
        ["xent/_kernels.pyx"],
        include_dirs=["xent/src", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        depends=["xent/src/xent_kernels.h", "xent/src/xent_body.h"],
    ),
    # The fused linear cross-entropy: tiles of logits from scipy's BLAS (cython_blas).
    Extension(
        "xent._linear",
        ["xent/_linear.pyx"],
        include_dirs=["xent/src", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        depends=["xent/src/xent_kernels.h", "xent/src/xent_body.h"],
    ),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildExt},
)
