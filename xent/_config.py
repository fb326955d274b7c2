"""Old name of :mod:`xent._dispatch` (which owns the instruction set and the configuration)."""

from ._dispatch import config, show_config  # noqa: F401 (re-exported)
