"""Accelerator specs survive the JSON round trip used when saving compiled models."""

from __future__ import annotations

import json

import pytest

from approxtvm.compiler.plain import from_plain, to_plain
from approxtvm.targets.vacc.hardware import AcceleratorSpec


@pytest.mark.parametrize("name", ["simba_like", "simba_package_2x2"])
def test_spec_round_trip(name: str) -> None:
    spec = AcceleratorSpec.load(name)
    again = from_plain(AcceleratorSpec, json.loads(json.dumps(to_plain(spec))))
    assert again == spec
