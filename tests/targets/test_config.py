"""ApproxPolicy / ApproxConfig: construction, YAML loading and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from approxtvm.errors import ApproxTvmError, PolicyError
from approxtvm.targets.vacc.config import ApproxConfig, ApproxPolicy


def test_uniform_policy_applies_to_every_layer() -> None:
    p = ApproxPolicy.uniform("mul8u_2HH", noc_swing_v=0.5, sram_v={"input_buffer": 0.7, "weight_buffer": 0.8})
    for lid in ("conv1", "fc"):
        c = p.config_for(lid)
        assert c.multiplier == "mul8u_2HH"
        assert c.noc_swing_v == 0.5
        assert c.sram_v_map == {"input_buffer": 0.7, "weight_buffer": 0.8}


def test_rules_override_key_by_key_in_order() -> None:
    p = ApproxPolicy.per_layer(
        {"layer1.*": {"multiplier": "trunc:k=4", "noc_swing_v": 0.6}, "layer1.0.conv2": "exact"},
        default=ApproxConfig(multiplier="mul8u_KEM"),
    )
    assert p.config_for("conv1").multiplier == "mul8u_KEM"
    assert p.config_for("layer1.0.conv1") == ApproxConfig("trunc:k=4", 0.6)
    assert p.config_for("layer1.0.conv2") == ApproxConfig("exact", 0.6)  # swing kept from the glob rule
    assert p.unmatched_rules(["conv1", "fc"]) == ["layer1.*", "layer1.0.conv2"]


def test_yaml_round_trip_and_units(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "default:\n  multiplier: mul8u_2HH\n  noc_swing_v: 600 mV\n  sram_v: {weight_buffer: '0.8 V'}\n"
        "layers:\n  fc: exact\n"
    )
    p = ApproxPolicy.from_yaml(f)
    assert p.default.noc_swing_v == pytest.approx(0.6)
    assert p.default.sram_v_map == {"weight_buffer": 0.8}
    assert p.config_for("fc").multiplier == "exact"
    assert ApproxPolicy.from_dict(p.to_dict()) == p
    assert p.digest() == ApproxPolicy.from_dict(p.to_dict()).digest()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("default:\n  multiplyer: exact\n", "'multiplyer'"),
        ("defaults: {}\n", "'defaults'"),
        ("default:\n  noc_swing_v: 0.6 volts\n", "bad voltage"),
        ("default:\n  noc_swing_v: 1.5\n", "out of range"),
        ("default:\n  sram_v: {l2: 0.7}\n", "unknown buffer"),
        ("default:\n  sram_v: {input_buffer: 0.1}\n", "out of range"),
        ("default:\n  multiplier: exact\n  multiplier: mul8u_2HH\n", "duplicate key"),
        ("default:\n  compression: zip\n", "compression"),
        ("layers:\n  conv1: {noc_protected_msbs: 12}\n", "noc_protected_msbs"),
        ("default: [1, 2]\n", "mapping"),
    ],
)
def test_bad_yaml_names_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(PolicyError) as info:
        ApproxPolicy.from_yaml(f)
    msg = str(info.value)
    assert needle in msg
    assert "bad.yaml" in msg
    assert "expected" in msg and "fix" in msg
    assert isinstance(info.value, ApproxTvmError)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        ApproxPolicy.from_yaml(tmp_path / "none.yaml")


def test_config_json_is_canonical() -> None:
    a = ApproxConfig.from_dict({"sram_v": {"weight_buffer": 0.8, "input_buffer": 0.7}})
    b = ApproxConfig.from_dict({"sram_v": {"input_buffer": 0.7, "weight_buffer": 0.8}})
    assert a == b and a.to_json() == b.to_json()
    assert ApproxConfig.from_dict(a.to_dict()) == a
