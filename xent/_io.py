"""Opening arrays stored in files: ``.npy`` (memory-mapped), ``.npz`` and raw binary.

One place for both :func:`xent.evaluate` (paths among its arguments) and ``xent eval`` (the
command line): a file's size is checked against what its header or the given shape needs, so
a truncated file is refused by name before any kernel reads past its end.
"""

import os

import numpy as np

__all__ = ["ArrayFileError", "file_kind", "is_path", "npz_arrays", "open_array", "open_npy",
           "open_raw"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


class ArrayFileError(ValueError):
    """A file that does not hold the array it should (its message starts with the path)."""


def is_path(x):
    """Whether ``x`` names a file (a str or an os.PathLike), rather than holding an array."""
    return isinstance(x, (str, os.PathLike))


def file_kind(path):
    """"npy", "npz" or "raw", from the file's first bytes (not its name)."""
    if not os.path.exists(path):
        raise ArrayFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ArrayFileError(f"{path}: is a directory (give files, or a glob such as "
                             f"'{os.path.join(path, '*.npy')}')")
    with open(path, "rb") as f:
        head = f.read(6)
    if head == _NPY_MAGIC:
        return "npy"
    if head[:4] == _ZIP_MAGIC:
        return "npz"
    return "raw"


def open_npy(path):
    """A read-only memory map of a .npy file, checked against its size (truncation)."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
        except ValueError as exc:
            raise ArrayFileError(f"{path}: not a valid .npy file ({exc})") from None
        data_offset = f.tell()
    if dtype.hasobject:
        raise ArrayFileError(f"{path}: holds Python objects, not numbers")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    held = os.path.getsize(path) - data_offset
    if held < expected:
        raise ArrayFileError(f"{path}: truncated: its header says {shape} {dtype} "
                             f"({expected:,} bytes of data), the file holds {held:,}")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def open_raw(path, dtype, shape, what):
    """A read-only memory map of a raw binary file of ``dtype``; shape's -1 is inferred."""
    itemsize = dtype.itemsize
    size = os.path.getsize(path)
    known = int(np.prod([d for d in shape if d != -1], dtype=np.int64)) * itemsize
    if -1 in shape:
        if known == 0 or size % known:
            raise ArrayFileError(f"{path}: {size:,} bytes is not a whole number of rows of "
                                 f"{known:,} bytes ({what} {dtype}, shape {shape})")
        shape = tuple(size // known if d == -1 else d for d in shape)
    elif size != known:
        kind = "truncated" if size < known else "too long"
        raise ArrayFileError(f"{path}: {kind}: shape {shape} of {dtype} needs {known:,} "
                             f"bytes, the file holds {size:,}")
    if size == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def npz_arrays(path):
    """(logits, labels) of a .npz holding arrays 'logits' and 'labels' (read whole: a zip
    member cannot be memory-mapped)."""
    import zipfile   # here, not at the top: it imports bz2, lzma and shutil, a third of xent's
                     # own import time, for the command line's .npz files only
    try:
        # our own file object: np.load leaves the file it opened unclosed when the zip is bad
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            names = set(z.files)
            if not {"logits", "labels"} <= names:
                raise ArrayFileError(f"{path}: a .npz must hold arrays named 'logits' and "
                                     f"'labels', it holds {sorted(names)}")
            return z["logits"], z["labels"]
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ArrayFileError(f"{path}: not a valid .npz file ({exc})") from None


def open_array(source, name):
    """An ndarray for ``source``: a path to a ``.npy`` file is memory-mapped (read-only).

    Raises FileNotFoundError for a missing file and :class:`ArrayFileError` (a ValueError)
    for one that is not a whole .npy file, both naming ``name`` and the path.
    """
    if not is_path(source):
        return np.asarray(source)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file: {path}")
    try:
        return open_npy(path)
    except ArrayFileError as exc:
        raise ArrayFileError(f"{name}: {exc}") from None
