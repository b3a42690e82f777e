"""Shared fixtures of the fine-tuning tests (torch is the optional `train` extra)."""

from __future__ import annotations

from pathlib import Path

import pytest

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers import resolve_multiplier

pytest.importorskip("torch", reason="fine-tuning needs the optional `train` extra (torch)")

SHARED_EVOAPPROX = Path(__file__).resolve().parents[4] / "shared" / "evoapprox"


@pytest.fixture
def evoapprox(monkeypatch: pytest.MonkeyPatch) -> None:
    """EvoApproxLib tables: packaged, else the session's shared copy, else skip."""
    try:
        resolve_multiplier("mul8u_FTA")
        return
    except MultiplierError:
        pass
    if not SHARED_EVOAPPROX.is_dir():
        pytest.skip("EvoApproxLib tables are neither packaged nor available in ../shared/evoapprox")
    monkeypatch.setenv("APPROXTVM_EVOAPPROX", str(SHARED_EVOAPPROX))
