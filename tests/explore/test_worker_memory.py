"""Measured resident memory of a worker and freed heap given back (Linux: /proc and glibc)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from approxtvm.explore.worker_memory import release_freed_memory, resident_bytes, settled_resident_bytes

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc are Linux-only")


@linux_only
def test_resident_size_sees_an_allocation_and_its_release():
    base = settled_resident_bytes()
    assert base is not None and base > 0
    big = np.ones(256 * 2**20, np.uint8)  # 256 MiB, touched
    grown = resident_bytes()
    assert grown is not None and grown - base > 200 * 2**20
    del big
    assert release_freed_memory() is True  # glibc
    settled = resident_bytes()
    assert settled is not None and settled - base < 64 * 2**20
