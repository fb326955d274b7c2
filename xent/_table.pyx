# cython: language_level=3
"""The one compiled copy of xent's C row kernels, their table, and the instruction set in use.

This extension compiles the kernel bodies (xent/src/xent_isa_*.c, one copy per instruction
set) and owns the table of function pointers the drivers call. The drivers' extensions
(xent._kernels, xent._linear) compile no kernel: they cimport kernel_table() and keep a
pointer to this table. The table is filled here, at import, with the best variant the CPU
runs, so it never holds a NULL pointer; xent._dispatch then applies XENT_ISA. set_isa refills
the same table in place: every extension follows at once.
"""

from xent._kernel_api cimport xent_kernel_table


cdef extern from "xent_kernels.h" nogil:
    xent_kernel_table xent_table
    const char *const xent_kernel_names[]
    const int xent_kernel_count
    int xent_select_isa(const char *name)
    int xent_isa_supported(const char *name)
    const char *xent_current_isa()
    int XENT_OPENMP
    int xent_omp_max_threads()


cdef const xent_kernel_table *kernel_table() noexcept nogil:
    return &xent_table


def set_isa(str name):
    """Select the kernel variant ("auto", "avx512", "avx2", "baseline"); return its name.

    Raises ValueError if this build or this CPU cannot run it. Not thread-safe: meant for
    xent._dispatch, tests and benchmarks, between calls.
    """
    if xent_select_isa(name.encode()) != 0:
        raise ValueError(f"instruction set {name!r} is not available on this CPU/build")
    return current_isa()


def current_isa():
    """Name of the kernel variant in use."""
    return xent_current_isa().decode()


def isa_supported(str name):
    """Whether this CPU and build can run the named kernel variant."""
    return bool(xent_isa_supported(name.encode()))


def has_openmp():
    """Whether this build runs its loops in parallel (every extension is built alike)."""
    return bool(XENT_OPENMP)


def openmp_max_threads():
    """omp_get_max_threads(): what the OpenMP runtime would use (threadpoolctl changes it)."""
    return xent_omp_max_threads()


def kernel_names():
    """The fields of the C kernel table, in its order (from the list XENT_KERNELS)."""
    return [xent_kernel_names[i].decode() for i in range(xent_kernel_count)]


if xent_select_isa(b"auto") != 0:   # "baseline" always runs: this cannot fail
    raise ImportError("xent: no kernel variant runs on this CPU")
