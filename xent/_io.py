"""Opening arrays stored in files: ``.npy``, ``.npz`` and raw binary.

One place for both :func:`xent.evaluate` (paths among its arguments) and ``xent eval`` (the
command line). What this module promises (docs/robustness.md says it for users):

- Only regular files are read. A FIFO, a character device, a socket or a directory is refused
  by name before anything reads from it (a FIFO would block forever, ``/dev/zero`` would read as
  endless zeros). The check is made on the opened descriptor (``O_NONBLOCK``: opening a FIFO
  does not wait for a writer), so a path swapped after a first look is caught too.
- A file's size is checked against what its header or the given shape needs, so a truncated
  file is refused by name before any kernel reads it.
- Files are not memory-mapped: rows are read with ``pread`` into private memory a chunk at a
  time (:class:`FileArray`). A file that shrinks, or is replaced, while it is read gives an
  :class:`ArrayFileError` naming it, where a memory map would kill the process with SIGBUS; a
  writer changing the bytes can only change the numbers read, never the kernels' memory.
  (Fortran-ordered .npy files of two or more dimensions are the exception: they are still
  memory-mapped, since their rows are not contiguous in the file.)
- No file stays open between reads: a dataset of thousands of shards needs one descriptor at a
  time, whatever the open-file limit.
- A ``.npz`` member is inflated only when its rows are read, one shard at a time, and only if
  its size is at most :data:`NPZ_MEMBER_LIMIT` and its compression ratio at most
  :data:`NPZ_RATIO_LIMIT` (read from the zip directory, before inflating anything).
"""

import math
import os
import stat

import numpy as np

__all__ = [
    "ArrayFileError",
    "FileArray",
    "NPZ_MEMBER_LIMIT",
    "NPZ_RATIO_LIMIT",
    "NpzMember",
    "file_kind",
    "is_path",
    "npz_arrays",
    "open_array",
    "open_npy",
    "open_raw",
    "row_chunks",
]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"

#: Largest .npz member (inflated bytes) xent reads: 16 GiB.
NPZ_MEMBER_LIMIT = 16 * 2**30

#: Largest ratio of inflated to compressed bytes of a .npz member larger than
#: :data:`NPZ_RATIO_FREE` (a zip bomb's ratio is about 1000; numbers rarely compress 20x).
NPZ_RATIO_LIMIT = 100

#: Members up to this size are read whatever their ratio (an array of zeros compresses 1000x;
#: at this size that is harmless).
NPZ_RATIO_FREE = 64 * 2**20

#: Bytes read by one pread call (a larger read is split: Linux reads at most ~2 GiB at once).
_READ_STEP = 1 << 30


#: Whether reads ask the kernel for readahead: the next chunk while this one is computed
#: (``POSIX_FADV_WILLNEED``), and a sequential window for each read. benchmarks/read_path.py
#: measures it; off, reads are plain ``pread`` calls.
READ_AHEAD = True

_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", 3)

#: Reads of at least this many bytes are split among threads (see :func:`_parallel_reads`).
_PARALLEL_READ_BYTES = 16 << 20


def _parallel_reads():
    """Threads that copy one large read: the CPUs this process may use, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _split(n_bytes, readers):
    """[(lo, hi)] byte ranges of one read for ``readers`` threads (one range when small)."""
    if n_bytes < _PARALLEL_READ_BYTES or readers == 1:
        return [(0, n_bytes)]
    step = -(-n_bytes // readers)
    step += -step % 4096  # page-aligned pieces
    return [(lo, min(n_bytes, lo + step)) for lo in range(0, n_bytes, step)]


class ArrayFileError(ValueError):
    """A file that does not hold the array it should (its message starts with the path)."""


def is_path(x):
    """Whether ``x`` names a file (a str or an os.PathLike), rather than holding an array."""
    return isinstance(x, (str, os.PathLike))


def _kind_of_mode(mode):
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _open_regular(path):
    """A read-only descriptor of ``path`` and its stat, refusing anything but a regular file.

    O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever; the type is
    checked on the descriptor itself, so a path swapped since an earlier look is caught.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ArrayFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        fd = None
    if fd is None:
        info_mode = stat.S_IFDIR
    else:
        info = os.fstat(fd)
        info_mode = info.st_mode
        if stat.S_ISREG(info_mode):
            return fd, info
        os.close(fd)
    kind = _kind_of_mode(info_mode)
    hint = (
        f" (give files, or a glob such as '{os.path.join(path, '*.npy')}')"
        if kind == "a directory"
        else ": xent reads arrays from regular files only"
    )
    raise ArrayFileError(f"{path}: is {kind}{hint}")


def _read_head(path, n):
    fd, _ = _open_regular(path)
    try:
        return os.pread(fd, n, 0)
    finally:
        os.close(fd)


def file_kind(path):
    """ "npy", "npz" or "raw", from the file's first bytes (not its name)."""
    head = _read_head(path, 6)
    if head == _NPY_MAGIC:
        return "npy"
    if head[:4] == _ZIP_MAGIC:
        return "npz"
    return "raw"


def _npy_header(f, path):
    """(shape, fortran, dtype, data bytes) of the .npy stream ``f`` at its start, checked.

    The size is computed with Python integers: numpy's int64 product of a hostile shape
    overflows (with a RuntimeWarning) to a small or negative size.
    """
    try:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f, max_header_size=2**20)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise ArrayFileError(f"{path}: not a valid .npy file ({exc})") from None
    if dtype.hasobject:
        raise ArrayFileError(f"{path}: holds Python objects (dtype {dtype}), not numbers")
    if any(d < 0 for d in shape):
        raise ArrayFileError(f"{path}: invalid .npy header: negative dimension in shape {shape}")
    size = math.prod(shape) * dtype.itemsize
    if size > 2**63 - 1:
        raise ArrayFileError(
            f"{path}: invalid .npy header: shape {shape} of {dtype} is "
            f"{size:.3g} bytes, more than any file can hold"
        )
    return tuple(shape), fortran, dtype, size


class FileArray:
    """A read-only C-ordered array in a regular file, read by rows into private memory.

    Looks enough like an ndarray for xent's readers: ``shape``, ``dtype``, ``ndim``, ``size``,
    ``len()``, ``reshape`` (no data moves), and slicing of the first axis, which reads those
    rows from the file (``pread``) into a new array. The file is opened for each read and
    closed after it; a file that was replaced, or no longer holds the rows, raises
    :class:`ArrayFileError` naming it.
    """

    def __init__(self, path, dtype, shape, offset, identity):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(d) for d in shape)
        self.offset = offset
        self._identity = identity  # (st_dev, st_ino): the file the header was read from

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self):
        return f"FileArray({self.path!r}, shape={self.shape}, dtype={self.dtype})"

    def reshape(self, *shape, order="C", copy=None):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if order != "C":
            raise ValueError("a FileArray reshapes in C order only")
        shape = _resolve_shape(shape, self.size)
        return FileArray(self.path, self.dtype, shape, self.offset, self._identity)

    def __getitem__(self, key):
        if not self.shape:
            raise IndexError("a 0-d FileArray is read whole with np.asarray")
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise IndexError("a FileArray is sliced by contiguous rows only")
            return self.read(start, max(start, stop))
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(
                    f"index {int(key)} is out of bounds for axis 0 with size {self.shape[0]}"
                )
            return self.read(i, i + 1)[0]
        raise IndexError("a FileArray takes an int or a slice of rows")

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None):
        whole = self.read(0, self.shape[0]) if self.shape else self.read(0, 1).reshape(())
        return whole if dtype is None else whole.astype(dtype, copy=False)

    @property
    def row_bytes(self):
        """Bytes of one row of the first axis."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def rows(self, start, stop):
        """Rows ``start:stop`` as a FileArray: nothing is read until its rows are."""
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"rows {start}:{stop} out of range for {self.shape[0]} rows")
        return FileArray(
            self.path,
            self.dtype,
            (stop - start, *self.shape[1:]),
            self.offset + start * self.row_bytes,
            self._identity,
        )

    def read(self, start, stop, out=None):
        """Rows ``start:stop`` of the first axis, read from the file (into ``out`` if given:
        a C-contiguous array of this dtype and of the rows' shape, reused by the caller)."""
        if out is None:
            out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        self._read_into(out, self.offset + start * self.row_bytes, f"rows {start:,} to {stop:,}")
        return out

    def read_span(self, row, lo, hi, out=None):
        """Elements ``lo:hi`` of row ``row`` of a 2-D FileArray (a long row, read a piece at
        a time), into ``out`` if given (a C-contiguous 1-D array of this dtype)."""
        if out is None:
            out = np.empty(hi - lo, dtype=self.dtype)
        position = self.offset + row * self.row_bytes + lo * self.dtype.itemsize
        self._read_into(out, position, f"row {row:,}, elements {lo:,} to {hi:,}")
        return out

    def advise(self, start, stop):
        """Tell the kernel that rows ``start:stop`` will be read soon (``POSIX_FADV_WILLNEED``):
        from a cold cache, the disk reads them while the caller computes on the rows before.
        A hint only: nothing is read here, and a failure is ignored."""
        self._advise(self.offset + start * self.row_bytes, (stop - start) * self.row_bytes)

    def advise_span(self, row, lo, hi):
        """:meth:`advise` for elements ``lo:hi`` of row ``row`` (the next piece of a long row)."""
        itemsize = self.dtype.itemsize
        self._advise(self.offset + row * self.row_bytes + lo * itemsize, (hi - lo) * itemsize)

    def _advise(self, position, length):
        if not READ_AHEAD or length <= 0 or not hasattr(os, "posix_fadvise"):
            return
        try:
            fd, _ = _open_regular(self.path)
        except (OSError, ArrayFileError):
            return  # the read itself will say what is wrong
        try:
            os.posix_fadvise(fd, position, length, _WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _read_into(self, out, position, what):
        """Fill the C-contiguous ``out`` with the file's bytes from ``position``."""
        want = out.nbytes
        if want == 0:
            return
        view = memoryview(out.reshape(-1).view(np.uint8))
        fd, info = _open_regular(self.path)
        try:
            if (info.st_dev, info.st_ino) != self._identity:
                raise ArrayFileError(f"{self.path}: the file was replaced while it was read")
            if READ_AHEAD and hasattr(os, "posix_fadvise"):  # a larger readahead window
                os.posix_fadvise(fd, position, want, os.POSIX_FADV_SEQUENTIAL)
            parts = _split(want, _parallel_reads())
            if len(parts) == 1:
                self._pread(fd, view, position, 0, want, what)
            else:  # a copy by one core is slower than the kernels' pass: several readers
                _read_in_threads(
                    parts, lambda lo, hi: self._pread(fd, view, position, lo, hi, what)
                )
        finally:
            os.close(fd)

    def _pread(self, fd, view, position, lo, hi, what):
        """Fill view[lo:hi] from the file at position + lo, or raise if the file ends first."""
        done = lo
        while done < hi:
            got = os.preadv(fd, [view[done : done + min(_READ_STEP, hi - done)]], position + done)
            if got == 0:
                size = os.fstat(fd).st_size
                raise ArrayFileError(
                    f"{self.path}: the file shrank to {size:,} bytes while it was read "
                    f"({what} need bytes up to at least "
                    f"{position + hi:,}): was it overwritten during the evaluation?"
                )
            done += got


def _read_in_threads(parts, read_part):
    """Run ``read_part(lo, hi)`` for each (lo, hi) of ``parts``, the first in this thread.

    Every reader is joined before this returns or raises, Ctrl-C included: a reader left
    running would write into a buffer the caller has moved on from (and keep the process
    alive after the interpreter wants to exit). The reads are bounded, so the wait is short.
    """
    import threading

    failures = []

    def run(lo, hi):
        try:
            read_part(lo, hi)
        except BaseException as exc:  # raised in the calling thread below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=part, name="xent-read") for part in parts[1:]]
    started, interrupted = [], False
    try:
        for t in threads:
            t.start()
            started.append(t)
        read_part(*parts[0])
    finally:
        for t in started:
            while t.is_alive():
                try:
                    t.join()
                except KeyboardInterrupt:  # join again: the read ends within milliseconds
                    interrupted = True
    if interrupted:
        raise KeyboardInterrupt
    if failures:
        raise failures[0]


def open_npy(path):
    """A .npy file as a :class:`FileArray`, its header and size checked (truncation).

    A Fortran-ordered file of two or more dimensions is memory-mapped instead (read-only).
    """
    fd, info = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        shape, fortran, dtype, expected = _npy_header(f, path)
        data_offset = f.tell()
    held = info.st_size - data_offset
    if held < expected:
        raise ArrayFileError(
            f"{path}: truncated: its header says {shape} {dtype} "
            f"({expected:,} bytes of data), the file holds {held:,}"
        )
    if fortran and len(shape) >= 2:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return FileArray(path, dtype, shape, data_offset, (info.st_dev, info.st_ino))


def open_raw(path, dtype, shape, what):
    """A raw binary file of ``dtype`` as a :class:`FileArray`; shape's -1 is inferred."""
    fd, info = _open_regular(path)
    os.close(fd)
    itemsize = dtype.itemsize
    size = info.st_size
    known = math.prod(d for d in shape if d != -1) * itemsize
    if -1 in shape:
        if known == 0 or size % known:
            raise ArrayFileError(
                f"{path}: {size:,} bytes is not a whole number of rows of "
                f"{known:,} bytes ({what} {dtype}, shape {shape})"
            )
        shape = tuple(size // known if d == -1 else d for d in shape)
    elif size != known:
        kind = "truncated" if size < known else "too long"
        raise ArrayFileError(
            f"{path}: {kind}: shape {shape} of {dtype} needs {known:,} "
            f"bytes, the file holds {size:,}"
        )
    return FileArray(path, dtype, shape, 0, (info.st_dev, info.st_ino))


class NpzMember:
    """One array of a .npz file, inflated only when its rows are read.

    Its shape and dtype come from the member's .npy header; its size and compression ratio
    from the zip directory, checked against :data:`NPZ_MEMBER_LIMIT` and
    :data:`NPZ_RATIO_LIMIT` before anything is inflated. The inflated array is kept while its
    rows are read in order and dropped when the last row has been read, so a list of shards
    read one after another holds one shard in memory at a time.
    """

    def __init__(self, path, name, shape, dtype, fortran, source=None, order="C"):
        self.path, self.name = path, name
        self.shape, self.dtype, self.fortran = shape, dtype, fortran
        self._source, self._order = source, order  # a reshape of source (in order)
        self._array = None

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"NpzMember({self.path!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def reshape(self, *shape, order="C", copy=None):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = _resolve_shape(shape, self.size)
        # the layout decides whether a view can do it: ask numpy with a stand-in of 1-byte
        # elements over a single byte (strides only: it is never read)
        probe = np.lib.stride_tricks.as_strided(
            np.zeros(1, dtype=np.uint8), self.shape, _strides(self.shape, self.fortran)
        )
        try:
            shaped = np.reshape(probe, shape, order=order, copy=False)
            fortran = shaped.ndim > 1 and not shaped.flags.c_contiguous
        except ValueError:
            if copy is False:
                raise
            fortran = False  # numpy's copy is C-ordered
        return NpzMember(self.path, self.name, shape, self.dtype, fortran, self, order)

    def load(self):
        """The whole member as an ndarray (inflated now, or the one kept)."""
        if self._array is None:
            if self._source is not None:
                self._array = self._source.load().reshape(self.shape, order=self._order)
                self._source._array = None
            else:
                self._array = _inflate(self.path, self.name)
        return self._array

    def __getitem__(self, key):
        array = self.load()
        part = array[key]
        if isinstance(key, slice) and key.indices(len(self))[1] >= len(self):
            self._array = None  # the last rows: later reads inflate it again
        return part

    def __array__(self, dtype=None, copy=None):
        array = self.load()
        self._array = None
        return array if dtype is None else array.astype(dtype, copy=False)


def _resolve_shape(shape, size):
    """``shape`` with its -1 worked out for ``size`` elements, or ValueError as numpy's."""
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) == 1:
        known = math.prod(d for d in shape if d != -1)
        shape = tuple((size // known if known else 0) if d == -1 else d for d in shape)
    if math.prod(shape) != size or any(d < 0 for d in shape):
        raise ValueError(f"cannot reshape array of size {size} into shape {shape}")
    return shape


def _strides(shape, fortran):
    """The strides of a 1-byte array of ``shape`` in C or Fortran order."""
    strides, step = [], 1
    for d in shape if fortran else reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(strides) if fortran else tuple(reversed(strides))


def _member_info(z, path, name):
    info = z.getinfo(name)
    if info.file_size > NPZ_MEMBER_LIMIT:
        raise ArrayFileError(
            f"{path}: member {name} inflates to {info.file_size:,} bytes, "
            f"more than the limit of {NPZ_MEMBER_LIMIT:,} "
            f"(xent._io.NPZ_MEMBER_LIMIT): store it as a .npy file"
        )
    if info.file_size > NPZ_RATIO_FREE and info.file_size > NPZ_RATIO_LIMIT * max(
        info.compress_size, 1
    ):
        raise ArrayFileError(
            f"{path}: member {name} inflates {info.compress_size:,} bytes to "
            f"{info.file_size:,}, a ratio beyond {NPZ_RATIO_LIMIT} "
            f"(xent._io.NPZ_RATIO_LIMIT): refused as a likely zip bomb"
        )
    return info


def _member_header(z, path, name):
    """(shape, dtype, fortran) of a member, from its header alone, consistent with its size."""
    info = _member_info(z, path, name)
    with z.open(info) as f:
        shape, fortran, dtype, size = _npy_header(f, f"{path} (member {name})")
        header = f.tell() if f.seekable() else None
    if header is not None and header + size != info.file_size:
        raise ArrayFileError(
            f"{path}: member {name}: its header says {shape} {dtype} "
            f"({size:,} bytes of data), the member holds "
            f"{info.file_size - header:,}"
        )
    return shape, dtype, fortran


def _open_zip(path):
    import zipfile  # here, not at the top: it imports bz2, lzma and shutil, a third of xent's

    # own import time, for the command line's .npz files only
    fd, _ = _open_regular(path)
    f = os.fdopen(fd, "rb")
    try:
        return f, zipfile.ZipFile(f)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        f.close()
        raise ArrayFileError(f"{path}: not a valid .npz file ({exc})") from None


def _inflate(path, name):
    """Read member ``name`` of the .npz ``path`` into a new array, checked as it goes."""
    f, z = _open_zip(path)
    with f, z:
        info = _member_info(z, path, name)
        with z.open(info) as member:
            shape, fortran, dtype, size = _npy_header(member, f"{path} (member {name})")
            out = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
            view = memoryview(out.reshape(-1, order="A").view(np.uint8))
            done = 0
            while done < size:
                got = member.readinto(view[done : done + min(size - done, 1 << 24)])
                if not got:
                    raise ArrayFileError(
                        f"{path}: member {name} ends after {done:,} of its {size:,} bytes of data"
                    )
                done += got
    return out


def npz_arrays(path):
    """(logits, labels) of a .npz holding arrays 'logits' and 'labels', as
    :class:`NpzMember` objects: checked now, inflated when read."""
    import zipfile

    f, z = _open_zip(path)
    with f, z:
        names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
        if not {"logits", "labels"} <= names:
            raise ArrayFileError(
                f"{path}: a .npz must hold arrays named 'logits' and "
                f"'labels', it holds {sorted(names)}"
            )
        try:
            return tuple(
                NpzMember(path, f"{key}.npy", *_member_header(z, path, f"{key}.npy"))
                for key in ("logits", "labels")
            )
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ArrayFileError(f"{path}: not a valid .npz file ({exc})") from None


def open_array(source, name):
    """An array for ``source``: a path to a ``.npy`` file is opened as a :class:`FileArray`.

    Raises FileNotFoundError for a missing file and :class:`ArrayFileError` (a ValueError)
    for one that is not a whole .npy regular file, both naming ``name`` and the path.
    """
    if isinstance(source, (FileArray, NpzMember)):
        return source
    if not is_path(source):
        from ._validation import input_array

        return input_array(source, name)
    path = os.fspath(source)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{name}: no such file: {path}")
    try:
        return open_npy(path)
    except ArrayFileError as exc:
        raise ArrayFileError(f"{name}: {exc}") from None


def row_chunks(rows, step):
    """(first row, rows) of each chunk of ``step`` rows of the (n, C) ``rows``.

    A file is read chunk by chunk into one buffer reused for every chunk (each chunk is done
    with before the next is read): private memory the kernels read, whatever happens to the
    file meanwhile, and no page faults after the first chunk.
    """
    n = rows.shape[0]
    buffer = None
    for start in range(0, n, step):
        stop = min(n, start + step)
        if isinstance(rows, FileArray):
            if buffer is None:
                buffer = np.empty((min(step, n), rows.shape[1]), dtype=rows.dtype)
            part = rows.read(start, stop, out=buffer[: stop - start])
            rows.advise(stop, min(n, stop + step))  # read from disk while this one is computed
            yield start, part
        else:
            yield start, rows[start:stop]
