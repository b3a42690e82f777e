"""A spec with an extra level (above or below the global buffer): the same code maps, counts, prices, exports.

The extra levels are data only (a buffer with a ``level`` name). Golden numbers are computed by hand
from the mapping of ``test_mapper.golden_conv`` with an empty extra level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from approxtvm.errors import ConfigError
from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.energy import energy_of
from approxtvm.targets.vacc.closed_form import analytic_counts
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapper import map_layer, naive_mapping
from approxtvm.targets.vacc.mapping import LevelNest, Loop, Mapping
from approxtvm.targets.vacc.timeloop_export import TL_DIM, export_timeloop
from approxtvm.targets.vacc.workload import LayerShape

SPEC = AcceleratorSpec.load("simba_like")
#: an L2 above the global buffer that also keeps the weights (256-bit port, 80 pJ per access)
L2 = {
    "capacity_bytes": 524288,
    "width_bits": 256,
    "read_energy_pj": 80.0,
    "write_energy_pj": 80.0,
    "tensors": ["input", "output", "weight"],
    "level": "L2",
}
#: a cluster buffer between the global buffer and the PEs (128-bit port, 20 pJ per access)
CLUSTER = {
    "capacity_bytes": 16384,
    "width_bits": 128,
    "read_energy_pj": 20.0,
    "write_energy_pj": 20.0,
    "tensors": ["input", "output"],
    "level": "Cluster",
}


def with_level(where: str, spec: AcceleratorSpec = SPEC) -> AcceleratorSpec:
    """``spec`` plus an L2 above its global buffer (``above``) or a cluster buffer below it (``between``).

    Memories are listed innermost first: the new buffer goes after (above) or before (between) the
    global buffer.
    """
    d = spec.to_dict()
    mems: dict[str, Any] = {}
    for name, fields in d["memories"].items():
        if name == "global_buffer" and where == "between":
            mems["cluster_buffer"] = CLUSTER
        mems[name] = fields
    if where == "above":
        mems["l2_buffer"] = L2
    return AcceleratorSpec.from_dict({**d, "memories": mems, "name": f"{spec.name}_{where}"})


def _golden(names: tuple[str, ...]) -> Mapping:
    """test_mapper.golden_conv (DRAM C2 | GB P2 | PE R3 S3 K8v C8v | Register Q2), extra level empty."""
    loops = {
        "DRAM": (Loop("C", 2),),
        "GlobalBuffer": (Loop("P", 2),),
        "PE": (Loop("R", 3), Loop("S", 3), Loop("K", 8, True), Loop("C", 8, True)),
        "Register": (Loop("Q", 2),),
    }
    return Mapping(LayerShape.conv2d(1, 8, 16, 4, 4, 3, 3), tuple(LevelNest(n, loops.get(n, ())) for n in names))


def _components(counts: Any, spec: AcceleratorSpec) -> dict[str, float]:
    return energy_of("L", counts, spec).by_component()


def test_the_extra_level_is_data() -> None:
    above, between = with_level("above"), with_level("between")
    assert Hierarchy.of(above).names == ("DRAM", "L2", "GlobalBuffer", "PE", "Register")
    assert Hierarchy.of(between).names == ("DRAM", "GlobalBuffer", "Cluster", "PE", "Register")
    assert Hierarchy.of(above).network_source == 2 and Hierarchy.of(between).network_source == 2
    assert above.storage_chain("weight") == ("dram", "l2_buffer", "weight_buffer", "weight_register")
    assert between.storage_chain("input") == ("dram", "global_buffer", "cluster_buffer", "input_buffer")
    assert between.storage_chain("weight") == SPEC.storage_chain("weight")  # the cluster bypasses weights
    for spec in (above, between):  # the spec file round trip keeps the level
        again = AcceleratorSpec.from_dict(spec.to_dict())
        assert again == spec and Hierarchy.of(again) == Hierarchy.of(spec)
    assert "level" not in SPEC.to_dict()["memories"]["global_buffer"]  # shipped spec files unchanged


def test_golden_counts_and_energy_with_an_l2_above_the_global_buffer() -> None:
    spec = with_level("above")
    m = _golden(Hierarchy.of(spec).names)
    c = analytic_counts(m, spec)
    assert c == simulate_counts(m, spec)
    # weights: L2 tile K8 C8 R3 S3 = 576, changed by C2 (DRAM): 2 x 576 from DRAM into L2; the PE
    # tile (576) changes with C2 and not with P2 (GB): 2 visits, read from L2
    assert (c.reads("dram", "weight"), c.writes("l2_buffer", "weight")) == (1152, 1152)
    assert (c.reads("l2_buffer", "weight"), c.writes("weight_buffer", "weight")) == (1152, 1152)
    # inputs: L2 and GB tiles are both 8 ch x 4 x 4 = 128, refilled per C2: 256 each way
    assert (c.reads("dram", "input"), c.writes("l2_buffer", "input")) == (256, 256)
    assert (c.reads("l2_buffer", "input"), c.writes("global_buffer", "input")) == (256, 256)
    # outputs: the GB keeps the whole output (32) over C2: one finished write-back through L2
    assert (c.reads("global_buffer", "output"), c.writes("l2_buffer", "output")) == (32, 32)
    assert (c.reads("l2_buffer", "output"), c.writes("dram", "output")) == (32, 32)
    assert c.reads("l2_buffer", "psum") == c.writes("l2_buffer", "psum") == 0
    # L2 bits: weights 2 x 1152 x 8 + inputs 2 x 256 x 8 + outputs 2 x 32 x 8 = 23040 at 80 pJ / 256 b
    e = _components(c, spec)
    assert e["l2_buffer"] == pytest.approx(23040 * 80 / 256)  # 7200
    # everything else as in test_mapper.test_golden_energies (106639.36 pJ): weights still cross
    # the NoC from the level above the PEs, DRAM traffic is unchanged
    assert sum(e.values()) == pytest.approx(106639.36 + 7200)
    # latency: DRAM 11520 b / 64 = 180 cycles > L2 11520 b / 256 = 45 > 72 compute cycles
    assert c.latency_cycles == 180


def test_golden_counts_and_energy_with_a_cluster_buffer_below_the_global_buffer() -> None:
    spec = with_level("between")
    m = _golden(Hierarchy.of(spec).names)
    c = analytic_counts(m, spec)
    assert c == simulate_counts(m, spec)
    # inputs: the cluster tile is the PE tile (8 x 3 x 4 = 96), refilled per C2 P2: 4 visits
    assert (c.reads("global_buffer", "input"), c.writes("cluster_buffer", "input")) == (384, 384)
    assert (c.reads("cluster_buffer", "input"), c.writes("input_buffer", "input")) == (384, 384)
    # outputs: the cluster tile is the PE's (K8 Q2 = 16) and sees the same C2 P2 above: 4 visits of
    # 2 tiles -> 32 finished outputs up to the GB; 32 partial sums spill from the accumulation
    # buffer into the cluster and on into the GB, and come back the same way (a cluster that holds
    # no more than the PE cannot keep them)
    assert (c.writes("cluster_buffer", "output"), c.reads("cluster_buffer", "output")) == (32, 32)
    assert (c.writes("cluster_buffer", "psum"), c.reads("cluster_buffer", "psum")) == (64, 64)
    assert (c.writes("global_buffer", "psum"), c.reads("global_buffer", "psum")) == (32, 32)
    assert (c.writes("global_buffer", "output"), c.reads("global_buffer", "output")) == (32, 32)
    e = _components(c, spec)
    # cluster: inputs 768 x 8 + outputs 64 x 8 + psums 128 x 24 = 9728 b at 20 pJ / 128 b
    assert e["cluster_buffer"] == pytest.approx(9728 * 20 / 128)  # 1520
    assert e["global_buffer"] == pytest.approx(1450.4)  # as without the cluster
    assert sum(e.values()) == pytest.approx(106639.36 + 1520)
    assert c.noc("psum") == (1536, 0, 1536)  # the spills still cross the NoC (cluster <-> PE)


SHAPES = [
    LayerShape.conv2d(1, 32, 16, 8, 8, 3, 3, pads=(1, 1, 1, 1)),
    LayerShape.conv2d(2, 24, 8, 9, 9, 3, 3, strides=(2, 2), pads=(1, 0, 1, 2)),
    LayerShape.dense(4, 100, 64),
]


@pytest.mark.parametrize("where", ["above", "between"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{s.op}_k{s.k}_c{s.c}_p{s.p}" for s in SHAPES])
def test_an_extra_level_maps_counts_and_prices(where: str, shape: LayerShape) -> None:
    spec = with_level(where)
    extra = "l2_buffer" if where == "above" else "cluster_buffer"
    mem = spec.memory(extra)
    for m in (map_layer(shape, spec), naive_mapping(shape, spec)):
        assert tuple(n.level for n in m.levels) == Hierarchy.of(spec).names
        m.validate(spec)
        counts = analytic_counts(m, spec)
        assert counts == simulate_counts(m, spec)  # the walk and the closed form agree on 5 levels
        assert counts.macs == shape.macs
        assert counts.writes(extra, "input") > 0  # every input passes through the extra level
        e = _components(counts, spec)
        bits = sum(
            (r + w) * spec.precision.bits(t) for b, t, r, w in counts.buffer_accesses if b == extra
        )  # read and write energies are equal in this spec
        assert e[extra] == pytest.approx(bits * mem.read_energy_pj / mem.width_bits)
        assert e["global_buffer"] > 0 and e["dram"] > 0 and e["noc_link"] > 0
    # the energy-optimal mapping is never worse than the naive one
    best, naive = map_layer(shape, spec), naive_mapping(shape, spec)
    assert (
        energy_of("a", analytic_counts(best, spec), spec).total_pj
        <= energy_of("b", analytic_counts(naive, spec), spec).total_pj
    )


def test_extra_level_errors_say_what_to_fix() -> None:
    d = SPEC.to_dict()
    bad = {**d, "memories": {**d["memories"], "l2_buffer": {k: v for k, v in L2.items() if k != "level"}}}
    with pytest.raises(ConfigError, match="unknown buffer") as exc:
        AcceleratorSpec.from_dict(bad)
    assert "level" in exc.value.fix
    for level, what in (("PE", "needs the name of its level"), ("DRAM", "needs the name of its level")):
        bad = {**d, "memories": {**d["memories"], "l2_buffer": {**L2, "level": level}}}
        with pytest.raises(ConfigError, match=what):
            AcceleratorSpec.from_dict(bad)
    gb = {**d["memories"]["global_buffer"], "level": "L2"}
    with pytest.raises(ConfigError, match="level of this buffer is fixed"):
        AcceleratorSpec.from_dict({**d, "memories": {**d["memories"], "global_buffer": gb}})
    two = {**d["memories"], "l2_buffer": {**L2, "level": "GlobalBuffer"}}  # inputs held twice at one level
    with pytest.raises(ConfigError, match="two buffers of level GlobalBuffer"):
        AcceleratorSpec.from_dict({**d, "memories": two})


class _TagLoader(yaml.SafeLoader):
    """Reads ``!Component``/``!Container`` nodes as plain dicts with a ``_tag`` key."""


_TagLoader.add_multi_constructor("!", lambda ld, tag, node: {"_tag": tag, **ld.construct_mapping(node, deep=True)})


def _no_gb() -> AcceleratorSpec:
    d = SPEC.to_dict()
    del d["memories"]["global_buffer"]
    return AcceleratorSpec.from_dict({**d, "name": "no_gb"})


@pytest.mark.parametrize(
    ("spec", "storage"),
    [
        (_no_gb(), ["DRAM", "PEInputBuffer"]),
        (with_level("above"), ["DRAM", "L2", "GlobalBuffer", "PEInputBuffer"]),
        (with_level("between"), ["DRAM", "GlobalBuffer", "Cluster", "PEInputBuffer"]),
    ],
    ids=["no_gb", "l2_above", "cluster_between"],
)
def test_timeloop_export_follows_the_hierarchy(tmp_path: Path, spec: AcceleratorSpec, storage: list[str]) -> None:
    shape = SHAPES[0]
    m = map_layer(shape, spec)
    paths = export_timeloop(m, spec, tmp_path)
    nodes = yaml.load(paths["arch"].read_text(), Loader=_TagLoader)["architecture"]["nodes"]
    names = [n["name"] for n in nodes]
    assert [n for n in names if n in storage] == storage  # the levels, outermost first
    entries = yaml.load(paths["mapping"].read_text(), Loader=_TagLoader)["mapping"]
    assert {e["target"] for e in entries} <= set(names)
    product = dict.fromkeys(TL_DIM.values(), 1)
    for e in entries:
        for kv in e["factors"].split():
            dim, v = kv.split("=")
            product[dim] *= int(v)
    assert product == {TL_DIM[d]: b for d, b in shape.bounds.items()}
    # the spatial loops across the PEs hang off the storage just above the PE container
    feeder = [n["name"] for n in nodes[: names.index("PE")] if n["_tag"] == "Component"][-1]
    across = [e for e in entries if e["type"] == "spatial" and e["target"] == feeder]
    assert len(across) == 1
    pe_spatial = m.levels[Hierarchy.of(spec).network_source].spatial
    assert across[0]["factors"].count("=1") == len(TL_DIM) - len({lp.dim for lp in pe_spatial})
