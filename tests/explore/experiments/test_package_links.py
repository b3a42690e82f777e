"""Experiment 2 on a package: on-chip and package link swing, separately and together (tiny budget)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from approxtvm.errors import PolicyError
from approxtvm.explore.experiments import ExperimentSettings
from approxtvm.explore.experiments.package_links import TITLE, package_link_md, package_link_sweep

TINY = replace(
    ExperimentSettings(models=("digits_cnn",), resnet50_sweeps=()),
    limit=16,
    package_accelerator="simba_package_2x2",
    link_fractions=(0.3,),
)


def test_package_link_sweep_scales_each_link_family_and_reports_it() -> None:
    rows = package_link_sweep(TINY)
    assert [r.series for r in rows] == ["nominal", "NoC", "package", "both"]
    nom, noc, pkg, both = rows
    # each series lowers the link energy; together they save what the two save apart (disjoint components)
    assert noc.component_energy_pj < nom.component_energy_pj and pkg.component_energy_pj < nom.component_energy_pj
    saved = (nom.component_energy_pj - noc.component_energy_pj) + (nom.component_energy_pj - pkg.component_energy_pj)
    assert nom.component_energy_pj - both.component_energy_pj == pytest.approx(saved, rel=1e-9)
    assert both.total_energy_pj < min(noc.total_energy_pj, pkg.total_energy_pj) < nom.total_energy_pj
    # the BERs of the scaled links only
    assert noc.ber > 0 and noc.package_ber == 0 and pkg.ber == 0 and pkg.package_ber > 0
    assert both.ber == noc.ber and both.package_ber == pkg.package_ber
    md = "\n".join(package_link_md(rows, TINY.package_accelerator or ""))
    assert f"## {TITLE}" in md and "simba_package_2x2" in md
    assert md.count("\n| ") == 1 + len(rows)  # the header and one line per point


def test_no_package_sweep_without_a_package_spec() -> None:
    assert package_link_sweep(replace(TINY, package_accelerator=None)) == ()
    with pytest.raises(PolicyError, match="package spec"):
        package_link_sweep(replace(TINY, package_accelerator="simba_like"))
