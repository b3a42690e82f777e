"""A worker process's resident memory, measured, and freed heap given back to the system.

An evaluation of a heavily faulty ResNet-50 genome allocates gigabytes for a moment (the fault
sampler's per-flip arrays); glibc keeps much of that heap after it is freed (measured: 4.9 GiB
resident after a genome, 2.3 GiB after ``malloc_trim``), which a Dask nanny counts as the worker's
memory and answers by pausing or restarting the worker. The resident size after a trim is also
the honest size of what an evaluation left behind (its compiled model and the caches it filled),
which no static estimate keeps up with.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["release_freed_memory", "resident_bytes", "settled_resident_bytes"]


@functools.cache
def _malloc_trim() -> object | None:
    """glibc's ``malloc_trim``, or ``None`` (another C library, or not Linux)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Give freed heap back to the system (glibc ``malloc_trim(0)``); ``False`` where unavailable."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)  # type: ignore[operator]
    return True


def resident_bytes() -> int | None:
    """This process's resident set size, or ``None`` where ``/proc`` is not available."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def settled_resident_bytes() -> int | None:
    """:func:`resident_bytes` after :func:`release_freed_memory`."""
    release_freed_memory()
    return resident_bytes()
