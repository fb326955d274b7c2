"""The dtypes xent takes, and the dtype each is computed in: one table, fixed at import.

ml_dtypes' bfloat16 is known by its name, so that supporting it needs neither importing
ml_dtypes (about a second on a busy machine, longer than all of xent) nor registering it
when it is first seen: every lookup gives the same answer whatever ran before.
"""

import numpy as np

#: Input dtype -> the dtype xent computes it in (bfloat16 is added by :func:`compute_dtype`).
COMPUTE_DTYPE = {
    np.dtype(np.float16): np.dtype(np.float32),
    np.dtype(np.float32): np.dtype(np.float32),
    np.dtype(np.float64): np.dtype(np.float64),
}


def is_bfloat16(dtype):
    """Whether dtype is ml_dtypes' bfloat16 (known by name: ml_dtypes need not be imported)."""
    # the size first: dtype.name is slow to build, and most dtypes are not 2 bytes wide
    return dtype.itemsize == 2 and dtype.name == "bfloat16" and dtype.type.__module__ == "ml_dtypes"


def compute_dtype(dtype):
    """The dtype xent computes a float input of ``dtype`` in, or None if it takes no such input.

    Either byte order: the caller converts to native order.
    """
    dtype = np.dtype(dtype).newbyteorder("=")
    if is_bfloat16(dtype):
        return np.dtype(np.float32)
    return COMPUTE_DTYPE.get(dtype)


class DtypeTable(dict):
    """A dict keyed by dtype whose bfloat16 entry is read without ml_dtypes being imported.

    ``table[bfloat16]`` gives the ``bfloat16`` value passed at construction, found by the
    dtype's name; the dict itself never changes after construction.
    """

    def __init__(self, entries, bfloat16):
        super().__init__(entries)
        self.bfloat16 = bfloat16

    def __missing__(self, key):
        if isinstance(key, np.dtype) and is_bfloat16(key.newbyteorder("=")):
            return self.bfloat16
        raise KeyError(key)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key):
        return self.get(key) is not None
