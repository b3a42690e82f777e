"""Fixtures: the EvoApproxLib pack in ../shared (read-only test data, never copied into the repo)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

PACK = Path(os.environ.get("APPROXTVM_TEST_EVOAPPROX") or Path(__file__).resolve().parents[4] / "shared" / "evoapprox")


@pytest.fixture(scope="session")
def pack() -> Path:
    if not (PACK / "catalog.tsv").is_file():
        pytest.skip(f"EvoApproxLib pack not found at {PACK}")
    return PACK


@pytest.fixture(scope="session")
def pack_rows(pack: Path) -> list[dict[str, str]]:
    with open(pack / "catalog.tsv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
