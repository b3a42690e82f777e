"""Mapper: invariants on every ResNet-18/50 layer, golden counts computed by hand, caching."""

from __future__ import annotations

import dataclasses
import json

import pytest

from approxtvm.errors import ScheduleError
from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.targets.vacc.closed_form import analytic_counts
from approxtvm.targets.vacc.counts import AccessCounts
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer, naive_mapping
from approxtvm.targets.vacc.mapping import LEVELS, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.pricing import energy_breakdown_pj
from approxtvm.targets.vacc.workload import LayerShape


@pytest.fixture(scope="module")
def spec() -> AcceleratorSpec:
    return AcceleratorSpec.load("simba_like")


def _m(shape: LayerShape, dram=(), gb=(), pe=(), reg=()) -> Mapping:
    return Mapping(shape, tuple(LevelNest(n, tuple(lv)) for n, lv in zip(LEVELS, (dram, gb, pe, reg), strict=True)))


def _total(counts: AccessCounts, spec: AcceleratorSpec) -> float:
    return sum(energy_breakdown_pj(counts, spec).values())


# ------------------------------------------------------------------------------------------------
# Networks
# ------------------------------------------------------------------------------------------------

NETS = {"resnet18": (21, 1_814_073_344, 11_678_912), "resnet50": (54, 4_089_184_256, 25_502_912)}
LAYERS = [(net, name, shape) for net in NETS for name, shape in resnet_layer_shapes(net)]


@pytest.mark.parametrize("net", NETS)
def test_resnet_shapes_match_the_zigzag_yardstick(net: str) -> None:
    layers = resnet_layer_shapes(net)
    n, macs, weights = NETS[net]
    assert len(layers) == n
    assert sum(s.macs for _, s in layers) == macs
    assert sum(s.k * s.c * s.r * s.s for _, s in layers) == weights


@pytest.mark.parametrize(("net", "name", "shape"), LAYERS, ids=[f"{n}:{m}" for n, m, _ in LAYERS])
def test_layer_invariants(spec: AcceleratorSpec, net: str, name: str, shape: LayerShape) -> None:
    m = map_layer(shape, spec)
    m.validate(spec)  # every tile fits, bounds cover the layer
    c = analytic_counts(m, spec)
    assert c.macs == shape.macs
    # every weight leaves DRAM at least once, every finished output reaches DRAM exactly once
    assert c.reads("dram", "weight") >= shape.k * shape.c * shape.r * shape.s
    assert c.writes("dram", "output") == shape.n * shape.k * shape.p * shape.q
    # no tile exceeds a capacity (explicitly, not only via validate)
    for buf, level in (("weight_buffer", "PE"), ("input_buffer", "PE"), ("weight_register", "Register")):
        t = spec.memory(buf).tensors[0]
        assert m.tile_size(level, t) * spec.precision.bits(t) <= spec.memory(buf).capacity_bits
    assert m.tile_size("PE", "output") * spec.precision.psum_bits <= spec.memory("accum_buffer").capacity_bits
    # accumulation-buffer read-modify-writes: one write per busy vector MAC per cycle
    assert c.writes("accum_buffer", "psum") >= shape.macs // spec.pe_array.lanes_per_vector_mac
    assert 0 < c.utilisation <= 1
    # the mapper beats the naive mapping
    naive = analytic_counts(naive_mapping(shape, spec), spec)
    assert naive.macs == c.macs
    assert _total(c, spec) < _total(naive, spec)


def test_mapper_is_deterministic_and_cached(spec: AcceleratorSpec) -> None:
    shape = resnet_layer_shapes("resnet18")[7][1]
    a = map_layer(shape, spec)
    assert map_layer(shape, spec) is a  # cache hit
    fresh = AcceleratorSpec.load("simba_like")
    assert map_layer(LayerShape.from_dict(shape.to_dict()), fresh) == a  # equal keys, equal answer


def test_objectives(spec: AcceleratorSpec) -> None:
    shape = resnet_layer_shapes("resnet50")[3][1]
    by = {o: analytic_counts(map_layer(shape, spec, o), spec) for o in ("energy", "edp", "latency")}
    assert by["latency"].latency_cycles <= by["edp"].latency_cycles <= by["energy"].latency_cycles
    assert _total(by["energy"], spec) <= _total(by["edp"], spec) <= _total(by["latency"], spec)
    with pytest.raises(ScheduleError, match="unknown mapper objective"):
        map_layer(shape, spec, "area")


def test_dense_is_a_1x1_conv(spec: AcceleratorSpec) -> None:
    m = map_layer(LayerShape.dense(1, 1000, 512), spec)
    c = analytic_counts(m, spec)
    assert c.macs == 512_000
    assert c.reads("dram", "weight") == 512_000  # batch 1: every weight fetched exactly once


def test_access_counts_json_and_add(spec: AcceleratorSpec) -> None:
    layers = resnet_layer_shapes("resnet18")
    a = analytic_counts(map_layer(layers[0][1], spec), spec)
    b = analytic_counts(map_layer(layers[1][1], spec), spec)
    assert AccessCounts.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    s = a + b
    assert s.macs == a.macs + b.macs and s.latency_cycles == a.latency_cycles + b.latency_cycles
    assert s.reads("dram", "weight") == a.reads("dram", "weight") + b.reads("dram", "weight")
    assert s.noc("input")[1] == a.noc("input")[1] + b.noc("input")[1]
    assert AccessCounts() + a == a
    assert _total(s, spec) == pytest.approx(_total(a, spec) + _total(b, spec))


# ------------------------------------------------------------------------------------------------
# Golden numbers, computed by hand
# ------------------------------------------------------------------------------------------------


def golden_dense() -> Mapping:
    """Dense 16x8 on 2 PEs: K 2 across PEs, K 8 across vector MACs, C 8 across lanes; 1 cycle."""
    return _m(LayerShape.dense(1, 16, 8), gb=[Loop("K", 2, True)], pe=[Loop("K", 8, True), Loop("C", 8, True)])


def golden_conv() -> Mapping:
    """Conv K8 C16 4x4 -> 2x2, 3x3: DRAM C2 | GB P2 | PE R3 S3, K8 vmacs, C8 lanes | Register Q2."""
    return _m(
        LayerShape.conv2d(1, 8, 16, 4, 4, 3, 3),
        dram=[Loop("C", 2)],
        gb=[Loop("P", 2)],
        pe=[Loop("R", 3), Loop("S", 3), Loop("K", 8, True), Loop("C", 8, True)],
        reg=[Loop("Q", 2)],
    )


def test_golden_dense(spec: AcceleratorSpec) -> None:
    c = analytic_counts(golden_dense(), spec)
    assert c.macs == 128 and c.compute_cycles == 1
    # weights: no temporal loop above the PE -> 1 visit; PE tile 8x8 = 64; 2 PEs -> 128 fills,
    # 128 DRAM reads (K differs per PE: no sharing)
    assert (c.reads("dram", "weight"), c.writes("weight_buffer", "weight")) == (128, 128)
    # registers: 1 fill each (128 MACs), weight buffer reads 2 PEs x 64; every MAC reads its register once
    assert (c.reads("weight_buffer", "weight"), c.writes("weight_register", "weight")) == (128, 128)
    assert c.reads("weight_register", "weight") == 128
    # inputs: GB tile C8 = 8 (1 DRAM read each); multicast to both PEs: GB reads 8, 2 x 8 = 16 fills
    assert (c.reads("dram", "input"), c.writes("global_buffer", "input")) == (8, 8)
    assert (c.reads("global_buffer", "input"), c.writes("input_buffer", "input")) == (8, 16)
    # MACs: 1 cycle x 2 PEs x 8 lanes (shared by the 8 vector MACs)
    assert c.reads("input_buffer", "input") == 16
    # outputs: accum 2 PEs x 8 vector MACs = 16 updates, all first touches (no reads);
    # write-back of finished outputs: accum reads 16 psums, GB writes 16 outputs, DRAM writes 16
    assert (c.writes("accum_buffer", "psum"), c.reads("accum_buffer", "psum")) == (16, 16)
    assert (c.writes("global_buffer", "output"), c.reads("global_buffer", "output")) == (16, 16)
    assert c.writes("dram", "output") == 16 and c.writes("dram", "psum") == 0
    # NoC (GB at router (0,0); PE0 at (0,0): 0 links/1 router, PE1 at (1,0): 1 link/2 routers):
    # weights 2 unicasts of 64 x 8 b = 512 b: bits 1024, link-bits 512, router-bits 512 x 3
    assert c.noc("weight") == (1024, 512, 1536)
    # inputs one multicast of 64 b over the tree {(0,0)->(1,0)}: 1 link, 2 routers
    assert c.noc("input") == (64, 64, 128)
    # outputs: 2 unicasts of 8 x 8 b
    assert c.noc("output") == (128, 64, 192)
    # DRAM bits (128 + 8 + 16) x 8 = 1216 -> 19 cycles at 64 b/cycle > 1 compute cycle
    assert c.latency_cycles == 19 and c.mac_slots == 19 * 1024


def test_golden_conv_with_partial_sums(spec: AcceleratorSpec) -> None:
    c = analytic_counts(golden_conv(), spec)
    assert c.macs == 4608 and c.compute_cycles == 72  # 2 (C) x 2 (P) x 9 (R,S) x 2 (Q)
    # weights: loops above the PE are C2 (indexes W) then P2 (does not) -> 2 visits x tile 576
    assert (c.reads("dram", "weight"), c.writes("weight_buffer", "weight")) == (1152, 1152)
    # registers: C2 P2 R3 S3 above, innermost indexing loop is S -> 36 visits x 64 MACs
    assert (c.reads("weight_buffer", "weight"), c.writes("weight_register", "weight")) == (2304, 2304)
    assert c.reads("weight_register", "weight") == 4608
    # inputs at GB: C2 -> 2 visits x (8 ch x 4 x 4) = 256; at PE: C2 P2 -> 4 visits x (8 x 3 x 4) = 384
    assert (c.reads("dram", "input"), c.writes("global_buffer", "input")) == (256, 256)
    assert (c.reads("global_buffer", "input"), c.writes("input_buffer", "input")) == (384, 384)
    assert c.reads("input_buffer", "input") == 72 * 8
    # outputs at PE: C2 P2 above, P indexes O -> 4 visits, 2 distinct tiles of 8 x 1 x 2 = 16:
    # 2 final write-backs (32 outputs), 2 partial write-backs (32 psums) and 2 refills (32 psums)
    assert c.writes("global_buffer", "output") == 32
    assert (c.writes("global_buffer", "psum"), c.reads("global_buffer", "psum")) == (32, 32)
    # accumulation buffer: 72 cycles x 8 vector MACs = 576 updates; reads skip the 32 first touches;
    # plus 32 refills (writes) and 64 write-back reads
    assert c.writes("accum_buffer", "psum") == 576 + 32
    assert c.reads("accum_buffer", "psum") == (576 - 32) + 64
    # GB keeps the whole output (C2 at DRAM leaves it resident): 1 final write-back to DRAM
    assert (c.reads("global_buffer", "output"), c.writes("dram", "output")) == (32, 32)
    # NoC: one PE at the GB router -> 0 links, 1 router per bit
    assert c.noc("weight") == (9216, 0, 9216)  # 2 x 576 x 8
    assert c.noc("input") == (3072, 0, 3072)  # 4 x 96 x 8
    assert c.noc("output") == (256, 0, 256)  # 2 x 16 x 8
    assert c.noc("psum") == (1536, 0, 1536)  # (2 up + 2 down) x 16 x 24
    # DRAM bits (1152 + 256 + 32) x 8 = 11520 -> 180 cycles
    assert c.latency_cycles == 180


def test_golden_energies(spec: AcceleratorSpec) -> None:
    def comp(m: Mapping) -> dict[str, float]:
        out: dict[str, float] = {}
        for (k, _), v in energy_breakdown_pj(analytic_counts(m, spec), spec).items():
            out[k] = out.get(k, 0.0) + v
        return out

    d = comp(golden_dense())
    assert d["mac"] == pytest.approx(128 * 0.315)  # 40.32
    # 128 fills of one 8-bit word at 0.01 pJ; the 128 reads feed the multiplier directly (0 pJ)
    assert d["register"] == pytest.approx(128 * 0.01)
    assert d["weight_buffer"] == pytest.approx(256 * 8 * 12 / 64)  # 384
    assert d["input_buffer"] == pytest.approx(32 * 8 * 6.1 / 64)  # 24.4
    assert d["accum_buffer"] == pytest.approx(32 * 4.0)  # 128
    assert d["global_buffer"] == pytest.approx((16 + 32) * 8 * 51.8 / 256)  # 77.7
    assert d["noc_link"] == pytest.approx(640 * 0.064)  # 40.96
    assert d["noc_router"] == pytest.approx(1856 * 0.055)  # 102.08
    assert d["dram"] == pytest.approx(1216 * 8.0)  # 9728
    assert sum(d.values()) == pytest.approx(10526.74)

    c = comp(golden_conv())
    assert c["register"] == pytest.approx(2304 * 0.01)  # 23.04: fills only
    assert c["weight_buffer"] == pytest.approx((1152 + 2304) * 1.5)  # 5184
    assert c["input_buffer"] == pytest.approx((384 + 576) * 0.7625)  # 732
    assert c["accum_buffer"] == pytest.approx(1216 * 4.0)  # 4864
    assert c["global_buffer"] == pytest.approx(7168 * 51.8 / 256)  # 1450.4: 4096 b read + 3072 b written
    assert c["noc_link"] == 0.0
    assert c["noc_router"] == pytest.approx(14080 * 0.055)  # 774.4
    assert c["dram"] == pytest.approx(11520 * 8.0)
    assert sum(c.values()) == pytest.approx(106639.36)


def test_mul_energy_override_scales_only_the_multiply(spec: AcceleratorSpec) -> None:
    c = analytic_counts(golden_conv(), spec)
    exact = energy_breakdown_pj(c, spec)
    half = energy_breakdown_pj(c, spec, mul_energy_pj=0.1)
    assert half[("mac", "compute")] == pytest.approx(4608 * (0.1 + 0.115))
    assert {k: v for k, v in half.items() if k[0] != "mac"} == {k: v for k, v in exact.items() if k[0] != "mac"}


def test_multicast_saves_noc_energy(spec: AcceleratorSpec) -> None:
    shape = resnet_layer_shapes("resnet18")[7][1]
    m = map_layer(shape, spec)
    uni = dataclasses.replace(spec, noc=dataclasses.replace(spec.noc, multicast=False))
    multi_c, uni_c = analytic_counts(m, spec), analytic_counts(m, uni)
    assert uni_c.noc("input")[1] > multi_c.noc("input")[1]  # the input tile goes to every PE
    assert uni_c.noc("weight") == multi_c.noc("weight")  # weights differ per PE: unicast anyway


def test_batch_and_package_spec() -> None:
    pkg = AcceleratorSpec.load("simba_package_2x2")
    shape = LayerShape.conv2d(4, 64, 64, 28, 28, 3, 3, pads=(1, 1, 1, 1))
    c = analytic_counts(map_layer(shape, pkg), pkg)
    assert c.macs == shape.macs
    assert c.reads("dram", "weight") >= 64 * 64 * 9


def test_no_fitting_mapping_is_a_schedule_error(spec: AcceleratorSpec) -> None:
    tiny = tuple(dataclasses.replace(m, capacity_bytes=16) if m.name == "input_buffer" else m for m in spec.memories)
    small = dataclasses.replace(spec, memories=tiny)
    with pytest.raises(ScheduleError, match="no mapping"):
        map_layer(LayerShape.conv2d(1, 8, 8, 16, 16, 5, 5), small)


def test_noc_flits(spec: AcceleratorSpec) -> None:
    c = analytic_counts(golden_dense(), spec)
    assert c.noc_flits("weight", spec.noc.flit_bits) == 1024 // 64
    assert c.noc_flits("input", spec.noc.flit_bits) == 1
    assert c.noc_flits("psum", spec.noc.flit_bits) == 0
