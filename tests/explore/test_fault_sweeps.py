"""Fault sweeps on the shipped digits CNN: rows, energy trends, table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from approxtvm.explore import fault_sweeps as fs
from approxtvm.models import load_dataset

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return load_dataset("digits:test").take(120)


def test_noc_swing_sweep_trends_table_and_plot(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = fs.noc_swing_sweep("digits_cnn", (0.9, 0.5, 0.3), data, protected_msbs=(0, 3), seeds=(0, 1))
    assert [r.series for r in rows] == ["nominal"] + ["0 MSBs protected"] * 3 + ["3 MSBs protected"] * 3
    nominal, full, half, low = rows[:4]
    assert full.agreement == 1.0 and full.top1 == nominal.top1 and full.bits_flipped == 0  # 0.9 V: no faults
    assert full.component_energy_pj == pytest.approx(nominal.component_energy_pj)
    assert nominal.component_energy_pj > half.component_energy_pj > low.component_energy_pj
    assert low.ber > half.ber > 0 and low.bits_flipped > half.bits_flipped
    assert low.agreement < 1.0  # BER 1.3e-3 on every flit breaks predictions
    protected = rows[6]
    assert protected.component_energy_pj > low.component_energy_pj  # protected bits cost full swing
    assert protected.bits_flipped < low.bits_flipped
    console = Console(record=True, width=200)
    fs.print_sweep(console, rows, "swing")
    assert "3 MSBs protected" in console.export_text()
    assert fs.plot_sweep(rows, tmp_path / "noc.png").stat().st_size > 1000
    saved = json.loads(fs.save_sweep(rows, tmp_path / "noc.json").read_text())
    assert [(r["series"], r["voltage_v"]) for r in saved] == [(r.series, r.voltage_v) for r in rows]


def test_sram_voltage_sweep_series_and_energy(data) -> None:  # type: ignore[no-untyped-def]
    rows = fs.sram_voltage_sweep("digits_cnn", (0.7, 0.5), data=data)
    assert [(r.series, r.voltage_v) for r in rows] == [
        ("nominal", None),
        ("input_buffer", 0.7),
        ("input_buffer", 0.5),
        ("weight_buffer", 0.7),
        ("weight_buffer", 0.5),
        ("both", 0.7),
        ("both", 0.5),
    ]
    by = {(r.series, r.voltage_v): r for r in rows}
    assert by[("both", 0.5)].component_energy_pj < by[("input_buffer", 0.5)].component_energy_pj
    assert by[("input_buffer", 0.5)].component_energy_pj < by[("input_buffer", 0.7)].component_energy_pj
    assert by[("both", 0.5)].ber == pytest.approx(1e-2)
    assert by[("both", 0.5)].bits_flipped > by[("both", 0.7)].bits_flipped
    assert by[("both", 0.5)].top1 is not None and rows[0].top1 is not None
    assert by[("both", 0.5)].top1 < rows[0].top1


def test_link_swing_sweep_on_a_package(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from approxtvm.errors import PolicyError

    rows = fs.link_swing_sweep("digits_cnn", (0.3,), data.take(40), accelerator="simba_package_2x2")
    assert [r.series for r in rows] == ["nominal", "NoC", "package", "both"]
    nominal, noc, pkg, both = rows
    # linear swing model: the scaled links' energy halves, routers stay
    assert nominal.component_energy_pj > noc.component_energy_pj > both.component_energy_pj
    assert nominal.component_energy_pj > pkg.component_energy_pj > both.component_energy_pj
    saved_noc = nominal.component_energy_pj - noc.component_energy_pj
    saved_pkg = nominal.component_energy_pj - pkg.component_energy_pj
    assert nominal.component_energy_pj - both.component_energy_pj == pytest.approx(saved_noc + saved_pkg)
    assert noc.ber > 0 and noc.package_ber == 0 and not noc.note
    assert pkg.ber == 0 and pkg.package_ber > 0 and not pkg.note
    # package faults are injected on the chiplets' copies (BER ~1e-3 per hop at 0.3 of the swing), from
    # their own generator stream: together, the on-chip and package flips are exactly those of each alone
    assert pkg.bits_flipped > 0 and both.bits_flipped == pytest.approx(noc.bits_flipped + pkg.bits_flipped)
    console = Console(record=True, width=200)
    fs.print_sweep(console, rows, "links")
    assert "package BER per hop" in console.export_text()
    with pytest.raises(PolicyError, match="package spec"):
        fs.link_swing_sweep("digits_cnn", (0.5,), data.take(8), accelerator="simba_like")
