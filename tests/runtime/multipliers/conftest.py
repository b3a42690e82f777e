"""Fixtures: EvoApproxLib tables as ``.bin`` files written from the package's own tables (any clone),
and the read-only pack in ../shared for cross-checks against the library's C models."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from approxtvm.runtime.multipliers import EvoApproxLibrary, load_catalog, save_lut


def _find_shared_pack() -> Path:
    env = os.environ.get("APPROXTVM_TEST_EVOAPPROX")
    if env:
        return Path(env)
    for up in Path(__file__).resolve().parents:
        if (up / "shared" / "evoapprox" / "catalog.tsv").is_file():
            return up / "shared" / "evoapprox"
    return Path(__file__).resolve().parents[4] / "shared" / "evoapprox"


SHARED_PACK = _find_shared_pack()


@pytest.fixture(scope="session")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pack-like folder (``luts/<name>.bin``, one per table file of the library's pack: 68) written
    from the tables shipped with approxtvm: real circuits on any clone, no ../shared needed."""
    root = tmp_path_factory.mktemp("evo_pack")
    lib = EvoApproxLibrary(allow_network=False, cache_dir=root / "unused-cache")
    seen: set[str] = set()
    for e in sorted(load_catalog(), key=lambda e: e.release != "v1"):
        # v1 names each have a file; a v2022 circuit gets one only when it is new (the pack's rule)
        if (e.release == "v1" or not e.same_circuit_as) and e.name not in seen:
            seen.add(e.name)
            save_lut(lib.packaged_multiplier(e.key), root / "luts" / f"{e.name}.bin")
    return root


@pytest.fixture(scope="session")
def shared_pack() -> Path:
    """The library's C models and tables in ../shared (cross-checks only; skipped when absent)."""
    if not (SHARED_PACK / "catalog.tsv").is_file():
        pytest.skip(f"cross-check against EvoApproxLib's C models: pack not found at {SHARED_PACK}")
    return SHARED_PACK


@pytest.fixture(scope="session")
def pack_rows(shared_pack: Path) -> list[dict[str, str]]:
    with open(shared_pack / "catalog.tsv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
