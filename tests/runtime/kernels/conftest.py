"""Shared fixtures: a module-wide kernel cache and a few characteristic multipliers."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.runtime.kernels import KernelCache
from approxtvm.runtime.multipliers.multiplier import Multiplier, exact_table, operand_values


def bam_table(signed: bool, h: int) -> np.ndarray:
    """Broken-array multiplier (vertical break h) on magnitudes, sign restored (test-local copy)."""
    vals = operand_values(signed)
    a = np.abs(vals)[:, None]
    b = np.abs(vals)[None, :]
    e = np.zeros((256, 256), np.int64)
    for i in range(8):
        e -= ((a >> i) & 1) * (b & ((1 << max(h - i, 0)) - 1)) << i
    return (np.sign(vals)[:, None] * np.sign(vals)[None, :] * (a * b + e)).astype(np.int32)


@pytest.fixture(scope="session")
def kcache() -> KernelCache:
    return KernelCache()


@pytest.fixture(scope="session")
def mults() -> dict[str, Multiplier]:
    rng = np.random.default_rng(1234)
    noncomm_u = rng.integers(0, 65536, (256, 256)).astype(np.int32)
    noncomm_s = rng.integers(-16384, 16385, (256, 256)).astype(np.int32)
    return {
        "exact_u": Multiplier("exact_u", exact_table(False), False),
        "exact_s": Multiplier("exact_s", exact_table(True), True),
        "bam_u": Multiplier("bam_u", bam_table(False, 4), False),
        "bam_s": Multiplier("bam_s", bam_table(True, 5), True),
        "rand_u": Multiplier("rand_u", noncomm_u, False),
        "rand_s": Multiplier("rand_s", noncomm_s, True),
    }
