"""AcceleratorSpec: the shipped specs, and the errors a user sees for a broken YAML file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from approxtvm.errors import ApproxTvmError, ConfigError
from approxtvm.targets.vacc.hardware import AcceleratorSpec

SPECS = Path(__file__).resolve().parents[2] / "approxtvm" / "targets" / "vacc" / "specs"


@pytest.fixture(scope="module")
def spec() -> AcceleratorSpec:
    return AcceleratorSpec.load("simba_like")


def test_simba_like_encodes_design_table(spec: AcceleratorSpec) -> None:
    pa = spec.pe_array
    assert (pa.mesh_rows, pa.mesh_cols, pa.vector_macs_per_pe, pa.lanes_per_vector_mac) == (4, 4, 8, 8)
    assert pa.num_pes == 16 and pa.num_macs == 1024
    wb, ib, acc, gb = (spec.memory(n) for n in ("weight_buffer", "input_buffer", "accum_buffer", "global_buffer"))
    assert (wb.capacity_bytes, wb.width_bits, wb.read_energy_pj) == (32 * 1024, 64, 12.0)
    assert (ib.capacity_bytes, ib.width_bits, ib.read_energy_pj) == (8 * 1024, 64, 6.1)
    assert (acc.capacity_bytes, acc.width_bits, acc.read_energy_pj) == (3 * 1024, 24, 4.0)
    assert (gb.capacity_bytes, gb.width_bits, gb.read_energy_pj) == (64 * 1024, 256, 51.8)
    assert gb.tensors == ("input", "output")  # weights bypass the global buffer
    assert spec.storage_chain("weight") == ("dram", "weight_buffer", "weight_register")
    assert spec.noc.hop_energy_pj_per_bit == pytest.approx(0.119)
    assert spec.dram.energy_pj_per_bit == 8.0
    assert (spec.energy.mul_energy_pj, spec.energy.add_energy_pj) == (0.20, 0.115)
    assert spec.precision.psum_bits == 24
    # issue-6 knobs: data present and defaulted
    assert spec.noc.swing_model == "linear" and spec.noc.nominal_vdd_v == 0.9 and spec.noc.sigma_v == 0.05
    assert spec.noc.link_energy_scale(0.45) == pytest.approx(0.5)
    assert spec.sram.ber_at(0.9) == 1e-12
    assert spec.sram.ber_at(0.75) == pytest.approx(10**-7.5)
    assert spec.sram.ber_at(0.3) == 1e-2  # clamped to the table


def test_package_variant_has_network_on_package() -> None:
    pkg = AcceleratorSpec.load("simba_package_2x2")
    assert pkg.package is not None and pkg.package.num_chiplets == 4
    assert pkg.pe_array == AcceleratorSpec.load("simba_like").pe_array
    assert AcceleratorSpec.load("simba_like").package is None


def test_load_by_path_and_round_trip(spec: AcceleratorSpec) -> None:
    assert AcceleratorSpec.load(SPECS / "simba_like.yaml") == spec
    d = json.loads(json.dumps(spec.to_dict()))
    assert AcceleratorSpec.from_dict(d) == spec
    assert hash(spec) == hash(AcceleratorSpec.from_dict(d))  # usable as a cache key


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_spec_survives_the_json_round_trip(path: Path) -> None:
    # the form saved models and the BYOC accelerator attribute carry
    spec = AcceleratorSpec.from_yaml(path)
    assert AcceleratorSpec.from_dict(json.loads(json.dumps(spec.to_dict())), str(path)) == spec


def test_unknown_spec_name() -> None:
    with pytest.raises(ConfigError, match="unknown accelerator 'simba_huge'") as exc:
        AcceleratorSpec.load("simba_huge")
    assert "simba_like" in str(exc.value)


def _write(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = (SPECS / "simba_like.yaml").read_text()
    assert old in text
    p = tmp_path / "broken.yaml"
    p.write_text(text.replace(old, new, count))
    return p


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    p = _write(tmp_path, "  flit_bits: 64", "  flit_bits: 64\n  flit_width: 64")
    with pytest.raises(ConfigError) as exc:
        AcceleratorSpec.from_yaml(p)
    msg = str(exc.value)
    assert str(p) in msg and "'noc.flit_width'" in msg and "did you mean 'flit_bits'" in msg
    assert isinstance(exc.value, ApproxTvmError)


def test_duplicate_key_is_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, "    width_bits: 256\n", "    width_bits: 256\n    width_bits: 128\n")
    with pytest.raises(ConfigError, match="duplicate key 'width_bits'") as exc:
        AcceleratorSpec.from_yaml(p)
    assert str(p) in str(exc.value)


def test_key_without_unit_is_rejected_with_a_hint(tmp_path: Path) -> None:
    # a field without its unit suffix is an unknown key; the hint names the unit-carrying key
    p = _write(tmp_path, "    read_energy_pj: 6.1", "    read_energy: 6.1")
    with pytest.raises(ConfigError) as exc:
        AcceleratorSpec.from_yaml(p)
    msg = str(exc.value)
    assert "'memories.input_buffer.read_energy'" in msg and "read_energy_pj" in msg and str(p) in msg


def test_missing_field(tmp_path: Path) -> None:
    p = _write(tmp_path, "  energy_pj_per_bit: 8.0\n", "")
    with pytest.raises(ConfigError, match="missing field") as exc:
        AcceleratorSpec.from_yaml(p)
    assert "'dram.energy_pj_per_bit'" in str(exc.value) and str(p) in str(exc.value)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("    capacity_bytes: 8192", "    capacity_bytes: 0", "memories.input_buffer.capacity_bytes"),
        ("  mesh_rows: 4", "  mesh_rows: -4", "pe_array.mesh_rows"),
        ("    capacity_bytes: 3072", "    capacity_bytes: 20", "memories.accum_buffer.capacity_bytes"),
        ("  global_buffer_node: [0, 0]", "  global_buffer_node: [7, 0]", "noc.global_buffer_node"),
        ("  swing_model: linear", "  swing_model: cubic", "noc.swing_model"),
        ("    - [0.8, 1.0e-9]", "    - [0.95, 1.0e-9]", "sram.ber_table"),
        (
            "  bandwidth_bits_per_cycle: 64",
            "  bandwidth_bits_per_cycle: fast",
            "dram.bandwidth_bits_per_cycle",
        ),
        ("  lane_spatial_dims: [C]", "  lane_spatial_dims: [K]", "pe_array.lane_spatial_dims"),
    ],
)
def test_impossible_values_name_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    p = _write(tmp_path, old, new)
    with pytest.raises(ConfigError) as exc:
        AcceleratorSpec.from_yaml(p)
    assert f"'{key}'" in str(exc.value) and str(p) in str(exc.value)
    assert exc.value.fix  # every error says how to fix it


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        AcceleratorSpec.from_yaml(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        AcceleratorSpec.from_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        AcceleratorSpec.from_yaml(tmp_path / "missing.yaml")
