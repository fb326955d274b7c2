# Part of xent/_kernels.pyx (included there): the memory probes behind `xent bench`'s
# roofline, a plain multi-threaded read (sum) and read + write (copy) of an array. The shared
# helpers (_threads_for, kern, BLOCK_ELEMENTS, ...) are defined in _kernels.pyx.


cdef double _add_parts(const double *parts, Py_ssize_t nparts) noexcept nogil:
    cdef double total = 0.0
    cdef Py_ssize_t p
    for p in range(nparts):  # in order: the same sum on any number of threads
        total += parts[p]
    return total


def read_sum(const floating[::1] x, int nthreads):
    """Sum of x, read once by up to nthreads threads.

    The array is cut into stretches of BLOCK_ELEMENTS elements, the block size of the row
    drivers, and split among the threads as they split their blocks (_threads_for), so that
    the probe reads the way the kernels do; each thread reads one contiguous run of stretches.
    The stretches' sums are added in order (the same result on any thread count).
    """
    cdef Py_ssize_t n = x.shape[0], nparts, p, start
    cdef double *parts
    cdef double total
    if n == 0:
        return 0.0
    nparts = (n + BLOCK_ELEMENTS - 1) // BLOCK_ELEMENTS
    parts = <double *>malloc(nparts * sizeof(double))
    if parts == NULL:
        raise MemoryError("xent: cannot allocate the probe's partial sums")
    with nogil:
        for p in prange(nparts, schedule="static", num_threads=_threads_for(nthreads, nparts)):
            start = p * BLOCK_ELEMENTS
            parts[p] = kern.read_sum(&x[start], min(<Py_ssize_t>BLOCK_ELEMENTS, n - start))
        total = _add_parts(parts, nparts)
    free(parts)
    return total


def copy_array(const floating[::1] x, floating[::1] out, int nthreads):
    """out[:] = x (out may be x itself: an in-place read and write), split among the
    threads as read_sum splits its read; returns the sum of x as read_sum does."""
    cdef Py_ssize_t n = x.shape[0], nparts, p, start
    cdef double *parts
    cdef double total
    if n == 0:
        return 0.0
    nparts = (n + BLOCK_ELEMENTS - 1) // BLOCK_ELEMENTS
    parts = <double *>malloc(nparts * sizeof(double))
    if parts == NULL:
        raise MemoryError("xent: cannot allocate the probe's partial sums")
    with nogil:
        for p in prange(nparts, schedule="static", num_threads=_threads_for(nthreads, nparts)):
            start = p * BLOCK_ELEMENTS
            parts[p] = kern.copy_array(&x[start], min(<Py_ssize_t>BLOCK_ELEMENTS, n - start),
                                       &out[start])
        total = _add_parts(parts, nparts)
    free(parts)
    return total
