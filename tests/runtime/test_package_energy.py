"""The package-link knob: energy scaling of package links, protected MSBs, the BER model."""

from __future__ import annotations

import dataclasses
import math

import pytest

from approxtvm.errors import PolicyError
from approxtvm.runtime.energy import COMPONENTS, energy_of, nop_energy_swing_v
from approxtvm.runtime.faults.physics import noc_ber, nop_ber
from approxtvm.targets.vacc.config import ApproxConfig, ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.package import PackageMapping, Partition, sub_shape
from approxtvm.targets.vacc.package_counts import package_counts
from approxtvm.targets.vacc.package_mapper import map_package
from approxtvm.targets.vacc.workload import LayerShape

SPEC = AcceleratorSpec.load("simba_package_2x2")
LAYER = LayerShape.conv2d(1, 64, 64, 8, 8, 3, 3, pads=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def counts():
    part = Partition((("K", 2), ("C", 2)))  # inputs multicast, partial sums reduced: every kind of traffic
    pm = PackageMapping(LAYER, part, map_layer(sub_shape(LAYER, part), SPEC))
    c = package_counts(pm, SPEC)
    assert c.package_traffic
    return c


def test_package_swing_scales_only_package_links(counts) -> None:
    full = energy_of("l", counts, SPEC).by_component()
    assert full["package_link"] > 0 and full["package_router"] > 0
    half = energy_of("l", counts, SPEC, nop_swing_v=0.1).by_component()
    assert half["package_link"] == pytest.approx(full["package_link"] * 0.5)  # linear: 0.1 / 0.2
    for comp in COMPONENTS:
        if comp != "package_link":
            assert half[comp] == full[comp], comp
    quad = dataclasses.replace(SPEC, package=dataclasses.replace(SPEC.package, swing_model="quadratic"))
    q = energy_of("l", counts, quad, nop_swing_v=0.1).by_component()
    assert q["package_link"] == pytest.approx(full["package_link"] * 0.25)
    # the package link energy is the link-bit traversals × 1.17 pJ at full swing
    link_bits = sum(lk for _, _, lk, _ in counts.package_traffic)
    assert full["package_link"] == pytest.approx(link_bits * 1.17)


def test_protected_msbs_mix_full_and_low_swing(counts) -> None:
    full = energy_of("l", counts, SPEC).by_component()["package_link"]
    for msbs in (0, 2, 8):
        v = nop_energy_swing_v(SPEC, 0.05, msbs)
        got = energy_of("l", counts, SPEC, nop_swing_v=v).by_component()["package_link"]
        f = msbs / 8  # protected bits at full swing, the rest at 0.05 / 0.2
        assert got == pytest.approx(full * (f + (1 - f) * 0.25))


def test_package_knob_errors(counts) -> None:
    with pytest.raises(PolicyError, match="package link swing out of range"):
        energy_of("l", counts, SPEC, nop_swing_v=0.3)  # above the links' 0.2 V full swing
    with pytest.raises(PolicyError, match="package link swing"):
        nop_energy_swing_v(AcceleratorSpec.load("simba_like"), 0.1, 0)  # no package
    with pytest.raises(PolicyError, match="nop_protected_msbs"):
        ApproxConfig(nop_protected_msbs=9)
    with pytest.raises(PolicyError, match="nop_swing_v"):
        ApproxConfig(nop_swing_v=-0.1)


def test_policy_knob_parses_units() -> None:
    pol = ApproxPolicy.from_dict({"default": {"nop_swing_v": "120 mV", "nop_protected_msbs": 2}})
    assert pol.default.nop_swing_v == pytest.approx(0.12)
    assert pol.default.nop_protected_msbs == 2
    assert ApproxConfig.from_dict(pol.default.to_dict()) == pol.default


def test_package_ber_is_the_noc_model_with_the_package_links_noise() -> None:
    pkg = SPEC.package
    assert nop_ber(SPEC, None) == 0.0 and nop_ber(SPEC, pkg.nominal_swing_v) == 0.0
    # Q(V / 2σ) by its series-free definition: 0.5·erfc(x/√2)
    for v in (0.02, 0.05, 0.1):
        x = v / (2 * pkg.sigma_v)
        assert nop_ber(SPEC, v) == pytest.approx(0.5 * math.erfc(x / math.sqrt(2)))
    # at full swing the model sits at the ~1e-25 Poulton et al. estimate (Q(10.4) ≈ 1.2e-25)
    x = pkg.nominal_swing_v / (2 * pkg.sigma_v)
    assert 1e-26 < 0.5 * math.erfc(x / math.sqrt(2)) < 1e-24
    assert nop_ber(SPEC, 0.05) > nop_ber(SPEC, 0.1) > 0
    # the same function family as the NoC's: equal when σ and the swing scale together
    k = SPEC.noc.sigma_v / pkg.sigma_v
    assert nop_ber(SPEC, 0.05) == pytest.approx(noc_ber(SPEC, 0.05 * k))
    with pytest.raises(PolicyError):
        nop_ber(AcceleratorSpec.load("simba_like"), 0.1)


def test_compressed_weights_cross_the_package_compressed(counts) -> None:
    full = energy_of("l", counts, SPEC)
    half = energy_of("l", counts, SPEC, weight_bytes_ratio=0.5)
    for comp in ("package_link", "package_router"):
        w_full = sum(pj for c, t, pj in full.entries if c == comp and t == "weight")
        w_half = sum(pj for c, t, pj in half.entries if c == comp and t == "weight")
        assert w_full > 0 and w_half == pytest.approx(0.5 * w_full)


def test_partition_of_one_has_no_package_energy() -> None:
    pm = map_package(LAYER, SPEC, "energy")
    one = PackageMapping(LAYER, Partition(), map_package(LAYER, AcceleratorSpec.load("simba_like")).chiplet)
    e = energy_of("l", package_counts(one, SPEC), SPEC).by_component()
    assert e["package_link"] == e["package_router"] == 0.0
    assert pm.partition.chiplets >= 1
