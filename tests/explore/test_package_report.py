"""The package report: rows add up to their components, one chiplet has no package energy."""

from __future__ import annotations

import pytest

from approxtvm.explore.package_report import COMMUNICATION, package_markdown, package_rows
from approxtvm.targets.vacc.hardware import AcceleratorSpec


def test_rows_and_markdown() -> None:
    specs = [("one", AcceleratorSpec.load("simba_like")), ("four", AcceleratorSpec.load("simba_package_2x2"))]
    one, four = package_rows(specs, "resnet18")
    for r in (one, four):
        comp = dict(r.by_component_pj_per_mac)
        assert sum(comp.values()) == pytest.approx(r.pj_per_mac)
        assert r.communication_share == pytest.approx(sum(comp[c] for c in COMMUNICATION) / r.pj_per_mac)
        assert 0 < r.utilisation <= 1
        assert sum(n for _, n in r.partitions) == 21  # ResNet-18's conv/dense layers
        assert r.macs == 1_814_073_344
    assert one.chiplets == 1 and one.package_share == 0.0 and one.partitions == (("1", 21),)
    assert four.chiplets == 4 and four.package_share > 0
    assert four.latency_cycles < one.latency_cycles  # edp: the package splits what pays
    # the swing knob prices package links lower, nothing else
    (low,) = package_rows([("four, 0.1 V", specs[1][1])], "resnet18", nop_swing_v=0.1)
    a, b = dict(four.by_component_pj_per_mac), dict(low.by_component_pj_per_mac)
    assert b["package_link"] == pytest.approx(a["package_link"] / 2)
    assert all(b[c] == a[c] for c in a if c != "package_link")
    text = package_markdown([("ResNet-18", "text", [one, four])], "# intro")
    assert text.startswith("# intro") and "| four | 4 |" in text and "package_link" in text
    assert four.to_dict()["package_share"] == four.package_share
