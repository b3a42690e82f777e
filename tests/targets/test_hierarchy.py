"""The hierarchy derived from the spec; a spec without a global buffer maps, counts and prices unchanged code."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.errors import ConfigError, ScheduleError
from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.energy import energy_of
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapper import analytic_counts, map_layer, naive_mapping
from approxtvm.targets.vacc.mapping import LEVELS
from approxtvm.targets.vacc.workload import LayerShape

SPEC = AcceleratorSpec.load("simba_like")


def no_global_buffer(spec: AcceleratorSpec = SPEC) -> AcceleratorSpec:
    """``spec`` without its global buffer: inputs and outputs move between DRAM and the PEs."""
    d = spec.to_dict()
    del d["memories"]["global_buffer"]
    d["name"] = f"{spec.name}_no_gb"
    return AcceleratorSpec.from_dict(d)


def test_shipped_spec_hierarchy() -> None:
    h = Hierarchy.of(SPEC)
    assert h.names == LEVELS
    assert h.pe == 2 and h.network_source == 1 and h.compute == 4
    for t in ("weight", "input", "output"):
        assert h.storage_chain(t) == SPEC.storage_chain(t)
    assert h.storage_chain("weight") == ("dram", "weight_buffer", "weight_register")  # weights bypass the GB
    assert [f.unit for f in h.levels[1].fanout] == ["PE"] and h.levels[1].fanout[0].count == 16
    assert [(f.unit, f.count) for f in h.levels[2].fanout] == [("vector MAC", 8), ("lane", 8)]
    assert h.crosses_network(0, 2) and h.crosses_network(1, 3) and not h.crosses_network(2, 3)


def test_a_spec_must_keep_its_pe_buffers() -> None:
    d = SPEC.to_dict()
    del d["memories"]["input_buffer"]
    with pytest.raises(ConfigError, match="wrong set of buffers"):
        AcceleratorSpec.from_dict(d)


LAYERS = [sh for _, sh in resnet_layer_shapes("resnet18")[::4]] + [
    LayerShape.conv2d(2, 24, 8, 9, 9, 3, 3, strides=(2, 2), pads=(1, 0, 1, 2)),
    LayerShape.dense(4, 100, 64),
]


@pytest.mark.parametrize("shape", LAYERS, ids=[f"{s.op}_k{s.k}_c{s.c}_p{s.p}" for s in LAYERS])
def test_without_a_global_buffer_the_layer_maps_counts_and_prices(shape: LayerShape) -> None:
    spec = no_global_buffer()
    h = Hierarchy.of(spec)
    assert h.names == ("DRAM", "PE", "Register") and h.network_source == 0
    for m in (map_layer(shape, spec), naive_mapping(shape, spec)):
        assert tuple(n.level for n in m.levels) == h.names
        counts = analytic_counts(m, spec)
        assert counts == simulate_counts(m, spec)  # the walk and the closed form agree on 3 levels
        assert counts.macs == shape.macs
        assert all(b != "global_buffer" for b, *_ in counts.buffer_accesses)
        # every input-buffer fill now reads DRAM (no global buffer in between)
        assert counts.reads("dram", "input") > 0 and counts.writes("input_buffer", "input") > 0
        e = energy_of("L", counts, spec).by_component()
        assert e["global_buffer"] == 0 and e["dram"] > 0 and e["noc_link"] > 0


def test_no_global_buffer_spec_validates_mappings_against_its_own_levels() -> None:
    shape = LayerShape.conv2d(1, 16, 8, 6, 6, 3, 3)
    with pytest.raises(ScheduleError, match="mapping levels are wrong"):
        map_layer(shape, SPEC).validate(no_global_buffer())
    assert np.isfinite(analytic_counts(map_layer(shape, no_global_buffer()), no_global_buffer()).latency_cycles)
