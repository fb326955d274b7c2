"""xent's version, written once: the package metadata reads it at build time."""

__version__ = "0.1.0"
