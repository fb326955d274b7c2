"""The BLAS the linear head's gemms run on: which library, and on one thread while xent's
threads call it.

Which library. xent's linear cross-entropy calls gemm from inside its OpenMP threads, one gemm
per tile; by default scipy's (``scipy.linalg.cython_blas``). An OpenBLAS picks its kernels
for the CPU when it is loaded, and may pick less than the CPU has: scipy's OpenBLAS 0.3.30
took a 2-core AMD EPYC with AVX-512 for a Haswell, and its gemm ran at half the speed of its
own AVX-512 kernels (forced with ``OPENBLAS_CORETYPE=SkylakeX``). :func:`choose` (at the first
linear call) compares the kernels of the OpenBLAS libraries the process has (scipy's and
numpy's, which every numpy wheel loads) with the CPU's vector extensions (/proc/cpuinfo), and
takes the one with the widest kernels, scipy's on a tie. When none of them uses AVX-512 on a
CPU that has it and the ``scipy-openblas32`` wheel is installed, it loads that library for
xent alone, with ``OPENBLAS_CORETYPE`` set to the AVX-512 kernels for the load (unless the
user set ``OPENBLAS_CORETYPE`` themselves: then their choice stands). ``XENT_BLAS`` in the
environment, or :func:`use`, names the library instead (``auto``, ``scipy``, ``numpy``,
``scipy-openblas32``).

One thread. A BLAS that runs its own threads would start them inside each of xent's
(2 threads x 2 BLAS threads on 2 cores, and so on): oversubscription. A BLAS built with
OpenMP notices that it runs in a parallel region and stays serial; one built with pthreads
(the OpenBLAS in scipy's and numpy's wheels) does not, and its
``openblas_set_num_threads_local`` is, despite its name, process-wide there. So
:func:`single_threaded` sets every OpenBLAS's thread count to 1 for the duration of the call,
and restores it afterwards.

Concurrent calls from several Python threads share one reference count: the first one in
saves and lowers the count, the last one out restores it. While a call runs, other BLAS calls
in the process also run on one thread.
"""

import contextlib
import ctypes
import glob
import importlib.util
import os
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


# ---- which library ---------------------------------------------------------------------------

# The names :func:`use` takes (and XENT_BLAS), "auto" first.
LIBRARIES = ("auto", "scipy", "numpy", "scipy-openblas32")
ENV = "XENT_BLAS"

# The vector extensions of OpenBLAS's x86-64 kernel families, by its core names (lower case):
# 2 for AVX-512, 1 for AVX2 with FMA, 0 for anything older or unknown.
_AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")
_AVX2_CORES = ("haswell", "zen")
_AVX512_FLAGS = frozenset(("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"))
_LEVELS = {2: "AVX-512", 1: "AVX2", 0: "older"}

_chosen = None


def core_level(core):
    """2 if an OpenBLAS core name (``openblas_get_corename``) is a family of AVX-512 kernels,
    1 if of AVX2 ones, else 0."""
    core = (core or "").lower()
    if core in _AVX512_CORES:
        return 2
    return 1 if core in _AVX2_CORES else 0


def cpu_level(flags=None):
    """The widest vector extension this CPU and its OS give OpenBLAS's kernels (2: AVX-512
    F/CD/BW/DQ/VL, 1: AVX2 and FMA, 0: neither), from /proc/cpuinfo unless flags (a set of
    its flag names) are given; None where they cannot be read."""
    if flags is None:
        try:
            with open("/proc/cpuinfo") as f:
                line = next((line for line in f if line.startswith("flags")), None)
        except OSError:
            return None
        if line is None:
            return None
        flags = set(line.split(":", 1)[1].split())
    if _AVX512_FLAGS <= flags:
        return 2
    return 1 if {"avx2", "fma"} <= flags else 0


class Library:
    """One OpenBLAS shared library: its gemms' addresses, kernels, version, thread control."""

    def __init__(self, name, path, handle=None):
        self.name, self.path = name, path
        self.handle = handle if handle is not None else ctypes.CDLL(path)
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
            if hasattr(self.handle, f"{prefix}sgemm_{suffix}") and hasattr(
                self.handle, f"{prefix}openblas_get_corename{suffix}"
            ):
                break
        else:
            raise OSError(f"{path}: not an OpenBLAS (no sgemm_ and openblas_get_corename)")
        self.ilp64 = suffix == "64_"
        self._prefix, self._suffix = prefix, suffix
        self.core = self._text("openblas_get_corename")
        config = self._text("openblas_get_config").split()
        self.version = config[1] if len(config) > 1 else "?"

    def symbol(self, name):
        """The library's own symbol for a BLAS or OpenBLAS name (its prefix and suffix added)."""
        return getattr(self.handle, f"{self._prefix}{name}{self._suffix}")

    def address(self, name):
        return ctypes.cast(self.symbol(name), ctypes.c_void_p).value

    def _text(self, name):
        function = self.symbol(name)
        function.restype, function.argtypes = ctypes.c_char_p, []
        return function().decode(errors="replace")

    @property
    def level(self):
        return core_level(self.core)

    def describe(self):
        """E.g. "scipy's OpenBLAS 0.3.30, SkylakeX kernels"."""
        owner = (
            "the scipy-openblas32 wheel's"
            if self.name == "scipy-openblas32"
            else (f"{self.name}'s")
        )
        return f"{owner} OpenBLAS {self.version}, {self.core} kernels"


def _loaded_openblas(directory_suffix):
    """The path of the loaded OpenBLAS in a wheel's bundled-library directory (scipy.libs,
    numpy.libs), or None."""
    for path in _scipy_blas_paths():
        if os.path.basename(os.path.dirname(path)) == directory_suffix:
            return path
    return None


def _candidate(name):
    """The Library of that name, loading it if need be, or None where it is not there."""
    path = _loaded_openblas(f"{name}.libs") if name in ("scipy", "numpy") else _wheel_path()
    if path is None:
        return None
    try:
        return Library(name, path)
    except OSError:
        return None


def _wheel_path():
    """The path of the scipy-openblas32 wheel's library, or None where it is not installed.

    Found without importing the package: its import loads the library with RTLD_GLOBAL, where
    its symbols (scipy_sgemm_, ...) would take the place of scipy's own for extensions loaded
    after it. xent loads it RTLD_LOCAL, for its own calls alone.
    """
    try:
        spec = importlib.util.find_spec("scipy_openblas32")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(location, "lib", "libscipy_openblas*.so*")))
        if found:
            return found[0]
    return None


def _load_wheel_with(core):
    """The scipy-openblas32 wheel's library, loaded with OPENBLAS_CORETYPE=core for its own
    start-up (the variable is read once, when the library is loaded: one loaded before keeps
    the kernels it has), or None where it is not installed."""
    path = _wheel_path()
    if path is None:
        return None
    if os.path.realpath(path) in map(os.path.realpath, _scipy_blas_paths()):
        return _candidate("scipy-openblas32")
    saved = os.environ.get("OPENBLAS_CORETYPE")
    os.environ["OPENBLAS_CORETYPE"] = core
    try:
        return Library("scipy-openblas32", path)
    except OSError:
        return None
    finally:
        if saved is None:
            del os.environ["OPENBLAS_CORETYPE"]
        else:
            os.environ["OPENBLAS_CORETYPE"] = saved


def decide(levels, cpu, user_coretype, wheel_available):
    """The automatic choice, from facts alone (tested without the libraries).

    levels: the kernel level (:func:`core_level`) of each library already loaded, scipy's
    first, in order of preference on a tie; cpu: :func:`cpu_level` (None: unknown);
    user_coretype: whether OPENBLAS_CORETYPE is set; wheel_available: whether the
    scipy-openblas32 wheel is installed. Returns (name, reason), name one of
    ``levels``' keys or "scipy-openblas32" (to be loaded with AVX-512 kernels).
    """
    if not levels:
        return "scipy", "scipy's BLAS is not an OpenBLAS xent can identify: it is used as it is"
    best = max(levels, key=lambda name: (levels[name], -list(levels).index(name)))
    level = levels[best]
    widest = f"the widest kernels of the OpenBLAS libraries loaded ({_LEVELS[level]})"
    if cpu is None or level >= cpu:
        return best, widest + (", all this CPU has" if cpu is not None else "")
    if user_coretype:
        return best, widest + "; OPENBLAS_CORETYPE, set in the environment, stands"
    if cpu == 2 and wheel_available:
        return "scipy-openblas32", (
            f"the OpenBLAS libraries loaded use {_LEVELS[level]} kernels on this AVX-512 CPU: "
            "the scipy-openblas32 wheel's, loaded with its AVX-512 kernels"
        )
    hint = "; pip install scipy-openblas32 lets xent load AVX-512 kernels" if cpu == 2 else ""
    return best, widest + f", below this CPU's ({_LEVELS[cpu]}){hint}"


def _apply(library):
    """Point the linear drivers at the library's gemms (None: scipy's cython_blas)."""
    global _controls
    from . import _linear

    if library is None or library.name == "scipy":
        _linear.use_gemm()
    else:
        _linear.use_gemm(library.address("sgemm_"), library.address("dgemm_"), library.ilp64)
    _controls = None  # the thread controls are found again: a library may have been loaded


def _choose(name):
    """(Library or None, how it was chosen) for a name of LIBRARIES."""
    if name != "auto":
        library = _candidate(name)
        if library is None and name == "scipy":
            return None, "asked for (scipy): scipy's BLAS, not an OpenBLAS xent can identify"
        if library is None:
            hint = " (pip install scipy-openblas32)" if name == "scipy-openblas32" else ""
            raise ValueError(f"BLAS {name!r} is not available in this process{hint}")
        return library, f"asked for ({name})"
    loaded = {}
    for candidate in ("scipy", "numpy"):
        library = _candidate(candidate)
        if library is not None:
            loaded[candidate] = library
    wheel = _wheel_path() is not None
    levels = {name: library.level for name, library in loaded.items()}
    if "scipy" not in loaded:
        levels = {}  # scipy's BLAS is not an OpenBLAS: keep it
    name, reason = decide(levels, cpu_level(), "OPENBLAS_CORETYPE" in os.environ, wheel)
    if name == "scipy-openblas32":
        library = _load_wheel_with("SkylakeX")
        if library is None or library.level < 2:  # it could not start its AVX-512 kernels
            best = max(loaded.values(), key=lambda lib: lib.level)  # scipy's first on a tie
            return best, (
                f"the widest kernels of the OpenBLAS libraries loaded ({_LEVELS[best.level]}); "
                "the scipy-openblas32 wheel's library could not start AVX-512 ones"
            )
        return library, reason
    return loaded.get(name), reason


def _select(name):
    """Choose the library of that name and point the drivers at it (the caller holds _lock)."""
    global _chosen
    library, reason = _choose(name)
    _apply(library)
    _chosen = (library, reason, name)


def use(name="auto"):
    """Choose the library the linear head's gemms run on (see the module's notes); returns the
    description :func:`info` gives."""
    if not isinstance(name, str) or name not in LIBRARIES:
        raise ValueError(f"BLAS must be one of {', '.join(LIBRARIES)}; got {name!r}")
    with _lock:
        if _active:
            raise RuntimeError("the BLAS cannot change while a linear cross-entropy call runs")
        _select(name)
    return info()


def chosen():
    """The Library the linear head uses (None: scipy's BLAS, not an OpenBLAS xent knows),
    choosing it first (XENT_BLAS, else automatically) if no call has yet.

    Several Python threads may make their first call at once: the first one in chooses,
    under the lock, and the others find the choice made (a call of theirs may already run).
    """
    if _chosen is None:
        with _lock:
            if _chosen is None:
                name = os.environ.get(ENV, "auto").strip().lower() or "auto"
                if name not in LIBRARIES:
                    raise ValueError(
                        f"{ENV}={os.environ[ENV]!r} is not one of {', '.join(LIBRARIES)}"
                    )
                _select(name)
    return _chosen[0]


def info():
    """What the linear head's gemms run on, as a dict (choosing it first if need be)."""
    library = chosen()
    _, reason, asked = _chosen
    cpu = cpu_level()
    return {
        "library": library.name if library is not None else "scipy",
        "path": library.path if library is not None else None,
        "version": library.version if library is not None else None,
        "kernels": library.core if library is not None else None,
        "cpu": _LEVELS.get(cpu, "unknown"),
        "asked": asked,
        "reason": reason,
        "description": library.describe() if library is not None else "scipy's BLAS",
    }
