"""Keep scipy's BLAS on one thread while xent's own threads call it.

xent's linear cross-entropy calls ``scipy.linalg.cython_blas`` gemm from inside its OpenMP
threads, one gemm per tile. A BLAS that runs its own threads would start them inside each of
xent's (2 threads x 2 BLAS threads on 2 cores, and so on): oversubscription. A BLAS built
with OpenMP notices that it runs in a parallel region and stays serial; one built with
pthreads (the OpenBLAS in scipy's wheels) does not, and its ``openblas_set_num_threads_local``
is, despite its name, process-wide there. So :func:`single_threaded` sets the BLAS's thread
count to 1 for the duration of the call, and restores it afterwards.

Concurrent calls from several Python threads share one reference count: the first one in
saves and lowers the count, the last one out restores it. While a call runs, other scipy
BLAS calls in the process also run on one thread.
"""

import contextlib
import ctypes
import threading

_lock = threading.Lock()
_active = 0
_saved = []
_controls = None


class _OpenBLAS:
    """Thread-count control of one OpenBLAS library, through its exported get/set symbols."""

    def __init__(self, get, set_):
        self._get, self._set = get, set_
        self._get.restype, self._get.argtypes = ctypes.c_int, []
        self._set.restype, self._set.argtypes = None, [ctypes.c_int]

    def get(self):
        return self._get()

    def set(self, n):
        self._set(n)


def _scipy_blas_paths():
    """Paths of the loaded shared libraries that look like scipy's BLAS (Linux: /proc)."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library)

    try:
        with open("/proc/self/maps") as f:
            fields = (line.split(None, 5) for line in f)
            paths = {parts[5].strip() for parts in fields if len(parts) == 6}
    except OSError:
        return []
    return sorted(p for p in paths if "openblas" in p.lower() and ".so" in p)


def _find_controls():
    """Controls of every OpenBLAS loaded in the process (scipy's, numpy's, a system one)."""
    controls = []
    for path in _scipy_blas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        # scipy's wheels prefix the symbols (scipy_openblas_...; 64-bit ints add 64_).
        for prefix, suffix in (
            ("scipy_openblas_", ""),
            ("scipy_openblas_", "64_"),
            ("openblas_", ""),
            ("openblas_", "64_"),
        ):
            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                controls.append(_OpenBLAS(get, set_))
                break
    return controls


def _threadpoolctl_limits():
    """threadpoolctl's limiter for every BLAS (MKL, BLIS, ...), or None if not installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


@contextlib.contextmanager
def single_threaded():
    """Run the body with every BLAS of the process on one thread (see the module's notes)."""
    global _active, _controls
    with _lock:
        if _controls is None:
            _controls = _find_controls()
        if _active == 0:
            if _controls:
                _saved[:] = [(c, c.get()) for c in _controls]
                for c in _controls:
                    c.set(1)
            else:
                _saved[:] = [(None, _threadpoolctl_limits())]
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                for control, value in _saved:
                    if control is not None:
                        control.set(value)
                    elif value is not None:
                        value.restore_original_limits()
                _saved.clear()


def blas_threads():
    """The thread counts of the OpenBLAS libraries xent controls (for tests)."""
    global _controls
    with _lock:
        if _controls is None:
            _controls = _find_controls()
        return [c.get() for c in _controls]
