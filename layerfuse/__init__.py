"""The ``layerfuse`` command line and the Python client of the service; the library and the
service install beside them as ``layerfuse.compression``, ``layerfuse.service`` and
``layerfuse.worker``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("layerfuse")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
