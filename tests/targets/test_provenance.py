"""Audit of the shipped numbers: every numeric leaf of every shipped spec and technology YAML has a
source, and every ``estimate`` says why. The walk below is written independently of
:mod:`approxtvm.targets.vacc.provenance` (it descends into tables element by element)."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from approxtvm.cli import main
from approxtvm.targets.vacc.provenance import shipped_specs, spec_path
from approxtvm.targets.vacc.technology import load_technology, shipped_technologies

#: An estimate must give its reasoning, not just the word.
MIN_REASONING_CHARS = 25


def _numbers(node: Any, path: str = "") -> list[tuple[str, float]]:
    """``(dotted.path[i][j], value)`` of every int/float leaf (booleans are not numbers)."""
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _numbers(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in _numbers(v, f"{path}[{i}]")]
    if isinstance(node, int | float) and not isinstance(node, bool):
        return [(path, float(node))]
    return []


def _check_text(where: str, text: str) -> None:
    assert isinstance(text, str) and text.strip(), f"{where}: empty source"
    if text.lower().startswith("estimate"):
        reasoning = text.split(":", 1)[1] if ":" in text else ""
        assert len(reasoning.strip()) >= MIN_REASONING_CHARS, f"{where}: estimate without reasoning: {text!r}"


def _tech_file(name: str) -> Path:
    res = importlib.resources.files("approxtvm.targets.vacc").joinpath("technologies", f"{name}.yaml")
    with importlib.resources.as_file(res) as p:
        return Path(p)


@pytest.mark.parametrize("name", shipped_specs())
def test_every_number_of_a_shipped_spec_has_a_source(name: str) -> None:
    data = yaml.safe_load(spec_path(name).read_text())
    sources = data.get("sources") or {}
    leaves = _numbers({k: v for k, v in data.items() if k not in ("sources", "name")})
    assert leaves, name
    for key, _ in leaves:
        bare = re.sub(r"\[\d+\]", "", key)  # a table element is covered by its table's key
        covering = [s for s in sources if bare == s or bare.startswith(f"{s}.")]
        assert covering, f"{name}: {key} has no source"
        _check_text(f"{name}: {key}", sources[max(covering, key=len)])


@pytest.mark.parametrize("name", shipped_technologies())
def test_every_number_of_a_shipped_technology_has_a_source(name: str) -> None:
    data = yaml.safe_load(_tech_file(name).read_text())
    sources: dict[str, str] = data["sources"]
    for key, text in sources.items():
        _check_text(f"{name}: {key}", text)
    for key, _ in _numbers({k: v for k, v in data.items() if k != "sources"}):
        m = re.fullmatch(r"sram\.ber_table\[(\d+)\]\[\d\]", key)
        if m:  # a table point: covered by the whole table, its voltage, or a voltage range
            volts = data["sram"]["ber_table"][int(m[1])][0]
            ok = "sram.ber_table" in sources or any(
                (r := re.fullmatch(r"sram\.ber_table\[([0-9.]+)(?:-([0-9.]+))?\]", s))
                and min(float(r[1]), float(r[2] or r[1])) - 1e-9
                <= volts
                <= max(float(r[1]), float(r[2] or r[1])) + 1e-9
                for s in sources
            )
            assert ok, f"{name}: point at {volts} V has no source"
        else:
            assert key in sources, f"{name}: {key} has no source"
    # the model choices are sourced too (how failures reach the data, how link energy scales)
    for choice in ("sram.failure", "noc.swing_model"):
        section, field = choice.split(".")
        if field in (data.get(section) or {}):
            assert choice in sources, f"{name}: {choice} has no source"
    load_technology(name)  # and the loader accepts it


def test_spec_show_prints_every_value_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "show", "simba_like"]) == 0
    out = capsys.readouterr().out
    for needle in ("mul_energy_pj", "Horowitz", "sigma_v", "estimate", "Simba", "ber_table"):
        assert needle in out, needle


def test_the_readme_example_technology_is_the_shipped_example_file() -> None:
    root = Path(__file__).resolve().parents[2]
    example = root / "docs" / "technology" / "my_node.yaml"
    tech = load_technology(example)
    assert tech.name == "my_node" and tech.sram_failure == "write" and tech.noc_swing_model == "linear"
    assert example.read_text() in (root / "README.md").read_text()  # the README shows this very file
