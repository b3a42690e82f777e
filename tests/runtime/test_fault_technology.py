"""The technology preset reaches the run: its SRAM table sets the flip rate, its ``failure`` field the
fault mode (a run would flip other bits if either were not wired through to the fault planner)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from approxtvm.runtime import faults
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.technology import apply_technology, load_technology

VOLTS = 0.6  # inside every shipped table; 1e-4 on the default table, 3.4e-4 on Sun et al.'s
POLICY = ApproxPolicy.uniform(sram_v={"input_buffer": VOLTS, "weight_buffer": VOLTS})

READ_TECH = """name: read_mode_node
node_nm: 45
sram:
  nominal_vdd_v: 0.9
  ber_table: [[0.9, 1.0e-12], [0.6, 1.0e-4], [0.5, 1.0e-2]]
  failure: read
sources:
  node_nm: "estimate: test"
  sram.nominal_vdd_v: "estimate: test"
  sram.ber_table: "estimate: the default table's points"
  sram.failure: "estimate: a source that saw sensing failures on every read"
"""


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from approxtvm.models import load_dataset

    return load_dataset("digits:train").x[:64], load_dataset("digits:test").x[:20]


def _totals(spec: AcceleratorSpec, data: tuple[np.ndarray, np.ndarray], options: object = None) -> dict[str, dict]:
    import approxtvm as at
    from approxtvm.models import get_model

    calib, x = data
    model = at.compile_onnx(get_model("digits_cnn"), POLICY, accelerator=spec, calibration=calib, batch_size=20)
    if options is not None:
        model.set_fault_options(options)
    return model.run(x, seed=0).counters["faults"]


def _sum(counters: dict[str, dict], what: str) -> int:
    return sum(c[t]["sram"][what] for c in counters.values() for t in ("weight", "input"))


def test_planner_takes_the_failure_mode_from_the_spec_unless_overridden(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(READ_TECH)
    tech = load_technology(tmp_path / "t.yaml")
    spec = apply_technology(AcceleratorSpec.load("simba_like"), tech)
    assert tech.sram_failure == "read" and spec.sram.failure_mode == "read"
    assert AcceleratorSpec.load("simba_like").sram.failure_mode == "write"  # the default, DESIGN §5
    assert faults.FaultOptions().sram_fault_mode is None  # None: the spec's own mode
    with pytest.raises(Exception, match="unknown SRAM fault mode"):
        faults.FaultOptions(sram_fault_mode="sometimes")


def test_technology_table_and_failure_mode_change_the_flips_at_run_time(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    base = AcceleratorSpec.load("simba_like")
    plain = _totals(base, digits)
    sun = _totals(apply_technology(base, "sram_65nm_sun2017"), digits)
    # same exposure, Sun et al.'s rate at 0.6 V: flips ≈ exposure × 3.4e-4 (4σ), not × 1e-4
    exposed = _sum(plain, "bits_exposed")
    assert _sum(sun, "bits_exposed") == exposed
    ber = apply_technology(base, "sram_65nm_sun2017").sram.ber_at(VOLTS)
    assert ber == pytest.approx(3.4e-4)
    mean = exposed * ber
    assert abs(_sum(sun, "bits_flipped") - mean) <= 4 * math.sqrt(mean)
    assert _sum(plain, "bits_flipped") < mean - 4 * math.sqrt(mean)

    # failure: read (a user's technology file) exposes every read of a word: more bits than one per
    # residency on the conv layers, whose buffered words are read several times
    (tmp_path / "t.yaml").write_text(READ_TECH)
    read_spec = apply_technology(base, tmp_path / "t.yaml")
    read = _totals(read_spec, digits)
    assert read_spec.sram.ber_at(VOLTS) == base.sram.ber_at(VOLTS)  # only the mode differs
    for layer in ("conv2", "conv3"):
        assert read[layer]["input"]["sram"]["bits_exposed"] > plain[layer]["input"]["sram"]["bits_exposed"]
    # an explicit run option still wins over the spec
    forced = _totals(read_spec, digits, faults.FaultOptions(sram_fault_mode="write"))
    assert forced == plain  # same rate at 0.6 V, same seed: the write-mode run, flip for flip
