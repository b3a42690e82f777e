"""Shared fixtures: a module-wide kernel cache, a few characteristic multipliers, and a hypothesis
draw of small conv2d cases with their operand codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

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


def draw_conv_case(draw: Callable[[Any], Any], signed: bool) -> dict[str, Any]:
    """A small conv2d (strides, dilations, pads up to 2) with random operand codes: ``x``, ``w``,
    the geometry keywords and the ``rng`` that drew the codes (for further operands)."""
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 6))
    k = draw(st.integers(1, 5))
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(dilations[0] * (r - 1) + 1, 8))
    wd = draw(st.integers(dilations[1] * (s - 1) + 1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dt, lo, hi = (np.int8, -128, 128) if signed else (np.uint8, 0, 256)
    x = rng.integers(lo, hi, (n, c, h, wd)).astype(dt)
    w = rng.integers(lo, hi, (k, c, r, s)).astype(dt)
    return {"x": x, "w": w, "strides": strides, "dilations": dilations, "pads": pads, "rng": rng, "lo": lo, "hi": hi}


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
