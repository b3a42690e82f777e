"""Technology presets and spec provenance: sourced numbers, documented interpolation, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from approxtvm.cli import main
from approxtvm.errors import ConfigError, PolicyError
from approxtvm.runtime.faults.physics import noc_ber, sram_ber
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.provenance import shipped_specs, spec_sources, unsourced
from approxtvm.targets.vacc.technology import (
    apply_technology,
    load_technology,
    shipped_technologies,
    technology_sources,
)


def test_shipped_presets_load_and_every_number_has_a_source() -> None:
    assert {"illustrative_45nm", "sram_65nm_sun2017", "bram_28nm_salami2018"} <= set(shipped_technologies())
    for name in shipped_technologies():
        rows = technology_sources(name)
        assert rows and all(src.strip() for _, _, src in rows), name


@pytest.mark.parametrize("name", shipped_specs())
def test_shipped_specs_source_every_number(name: str) -> None:
    assert unsourced(name) == []
    rows = spec_sources(name)
    assert any(r.is_estimate for r in rows) and any(not r.is_estimate for r in rows)  # both kinds are labelled


def test_measured_points_are_reproduced_and_interpolation_is_log_linear() -> None:
    spec = apply_technology(AcceleratorSpec.load("simba_like"), "sram_65nm_sun2017")
    assert sram_ber(spec, 0.55) == pytest.approx(2.3e-3)  # Sun et al. 2017, measured
    assert sram_ber(spec, 0.50) == pytest.approx(1.56e-2)
    # halfway in volts = geometric mean of the neighbours (a straight line of log10 BER)
    assert sram_ber(spec, 0.525) == pytest.approx(math.sqrt(2.3e-3 * 1.56e-2), rel=1e-9)
    assert sram_ber(spec, 1.0) == 0.0  # nominal supply: unscaled, no fault model
    with pytest.raises(PolicyError, match="outside the BER table"):
        sram_ber(spec, 0.45)  # below the lowest measured point: never extrapolated


def test_presets_change_the_answer_and_keep_the_rest_of_the_spec() -> None:
    base = AcceleratorSpec.load("simba_like")
    sun = apply_technology(base, "sram_65nm_sun2017")
    bram = apply_technology(base, "bram_28nm_salami2018")
    assert sun.memories == base.memories and sun.energy == base.energy and sun.noc == base.noc
    assert sram_ber(sun, 0.6) != sram_ber(bram, 0.6)
    assert sram_ber(bram, 0.61) == pytest.approx(1e-9)
    illustrative = apply_technology(base, "illustrative_45nm")
    assert illustrative.sram == base.sram and noc_ber(illustrative, 0.5) == noc_ber(base, 0.5)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tech.yaml"
    p.write_text(text)
    return p


GOOD = """name: mine
node_nm: 22
sram:
  nominal_vdd_v: 0.8
  ber_table: [[0.8, 1.0e-12], [0.6, 1.0e-6], [0.5, 1.0e-3]]
noc:
  sigma_v: 0.04
sources:
  node_nm: "my test chips"
  sram.nominal_vdd_v: "estimate: foundry nominal"
  sram.ber_table[0.8-0.6]: "my measurement, chip A"
  sram.ber_table[0.5]: "my measurement, chip B"
  noc.sigma_v: "estimate: 40 mV"
"""


def test_a_users_own_technology_file(tmp_path: Path) -> None:
    tech = load_technology(_write(tmp_path, GOOD))
    spec = apply_technology(AcceleratorSpec.load("simba_like"), tech)
    assert spec.noc.sigma_v == 0.04 and sram_ber(spec, 0.6) == pytest.approx(1e-6)
    assert [r[0] for r in technology_sources(tech)][:3] == ["node_nm", "sram.nominal_vdd_v", "sram.ber_table[0.8]"]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace('  sram.ber_table[0.5]: "my measurement, chip B"\n', ""), "sources"),
        (lambda t: t.replace("node_nm: 22", "node_nm: 22\nvoltage: 3"), "voltage"),
        (lambda t: t.replace("sigma_v: 0.04", "sigma_mv: 40"), "noc.sigma_mv"),
        (lambda t: t.replace("[0.5, 1.0e-3]", "[0.7, 1.0e-3]"), "sram.ber_table"),
        (lambda t: t.replace("sram.ber_table[0.5]", "sram.ber_table[0.45]"), "sources.sram.ber_table[0.45]"),
        (lambda t: t.replace("nominal_vdd_v: 0.8", "nominal_vdd_v: 8"), "sram.nominal_vdd_v"),
        (lambda t: t.replace("[0.5, 1.0e-3]", "[-0.5, 1.0e-3]"), "sram.ber_table"),
        (lambda t: t.replace("sigma_v: 0.04", "sigma_v: 0.04\n  nominal_vdd_v: 9"), "noc.nominal_vdd_v"),
        (lambda t: t.replace("  ber_table:", "  failure: sometimes\n  ber_table:"), "sram.failure"),
        (lambda t: t.replace('  node_nm: "my test chips"\n', ""), "sources"),
    ],
    ids=[
        "unsourced point",
        "unknown key",
        "bad unit",
        "unsorted table",
        "source of no point",
        "nominal out of range",
        "negative table voltage",
        "link supply out of range",
        "unknown failure mode",
        "unsourced node",
    ],
)
def test_bad_technology_files_name_file_and_key(tmp_path: Path, edit: object, key: str) -> None:
    p = _write(tmp_path, edit(GOOD))  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        load_technology(p)
    assert str(p) in str(err.value) and repr(key) in str(err.value)


def test_spec_source_keys_must_name_a_value(tmp_path: Path) -> None:
    from approxtvm.targets.vacc.provenance import spec_path

    text = spec_path("simba_like").read_text().replace("  noc.routing:", "  noc.routeing:")
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"noc\.routeing"):
        spec_sources(p)
    assert AcceleratorSpec.load(p).name == "simba_like"  # the spec itself still loads: sources are metadata


def test_cli_spec_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "show", "simba_like", "--technology", "sram_65nm_sun2017", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    keys = {r["key"] for r in doc["spec"]}
    assert {"noc.sigma_v", "energy.mul_energy_pj", "memories.weight_buffer.read_energy_pj"} <= keys
    assert all(r["source"] for r in doc["spec"] if isinstance(r["value"], int | float))
    assert any(r["key"] == "sram.ber_table[0.55]" and "Sun" in r["source"] for r in doc["technology"])
    assert main(["spec", "show", "nonexistent_spec"]) == 2


@pytest.mark.parametrize(
    ("old", "new", "key", "what"),
    [
        ("[0.5, 1.0e-3]", "0.5", "sram.ber_table[2]", "a list"),
        ("sigma_v: 0.04", "sigma_v: 40 mV", "noc.sigma_v", "units are in the key name"),
        ("node_nm: 22", "node_nm: '22'", "node_nm", "an integer"),
    ],
)
def test_malformed_values_are_keyed_to_the_entry(tmp_path: Path, old: str, new: str, key: str, what: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as err:
        load_technology(_write(tmp_path, GOOD.replace(old, new, 1)))
    assert repr(key) in str(err.value) and what in str(err.value)
