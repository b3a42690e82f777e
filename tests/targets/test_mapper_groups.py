"""Grouped layers on the mapper: a depthwise conv and an activation × activation MatMul computed by
hand (access counts and energy from simba_like's numbers), lane utilisation, search speed."""

from __future__ import annotations

import time

import pytest

from approxtvm.runtime.counting import simulate_counts
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import analytic_counts, clear_mapper_cache, energy_breakdown_pj, map_layer
from approxtvm.targets.vacc.mapping import LEVELS, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.timeloop_export import problem_yaml
from approxtvm.targets.vacc.workload import LayerShape


@pytest.fixture(scope="module")
def spec() -> AcceleratorSpec:
    return AcceleratorSpec.load("simba_like")


def _m(shape: LayerShape, dram=(), gb=(), pe=(), reg=()) -> Mapping:
    return Mapping(shape, tuple(LevelNest(n, tuple(lv)) for n, lv in zip(LEVELS, (dram, gb, pe, reg), strict=True)))


def _by_component(m: Mapping, spec: AcceleratorSpec) -> dict[str, float]:
    out: dict[str, float] = {}
    for (k, _), v in energy_breakdown_pj(analytic_counts(m, spec), spec).items():
        out[k] = out.get(k, 0.0) + v
    return out


def golden_depthwise() -> Mapping:
    """Depthwise 3×3, 16 channels, 4×4 → 2×2: GB P2, G2 across PEs | PE R3 S3, G8 across vector MACs
    (one channel each: 1 of 8 lanes busy) | Register Q2."""
    return _m(
        LayerShape.conv2d(1, 16, 16, 4, 4, 3, 3, groups=16),
        gb=[Loop("P", 2), Loop("G", 2, True)],
        pe=[Loop("R", 3), Loop("S", 3), Loop("G", 8, True)],
        reg=[Loop("Q", 2)],
    )


def golden_matmul() -> Mapping:
    """Attention-like ``[2 slices] (4×8) @ (8×4)``: G2 across PEs | K4 vector MACs, C8 lanes | Register N4."""
    return _m(
        LayerShape.matmul(2, 4, 4, 8),
        gb=[Loop("G", 2, True)],
        pe=[Loop("K", 4, True), Loop("C", 8, True)],
        reg=[Loop("N", 4)],
    )


def test_golden_depthwise_counts(spec: AcceleratorSpec) -> None:
    m = golden_depthwise()
    c = analytic_counts(m, spec)
    assert c.macs == 576 and c.compute_cycles == 36  # 16 ch x 2x2 x 9 taps; P2 R3 S3 Q2
    assert m.spatial_macs() == 16  # 2 PEs x 8 vector MACs x 1 lane: 1.6 % of 1024, not hidden
    # weights: no loop above the PE indexes them -> 1 fill of G8 x 3 x 3 = 72 per PE, 2 PEs
    assert (c.reads("dram", "weight"), c.writes("weight_buffer", "weight")) == (144, 144)
    # registers: P2 R3 S3 above, S innermost indexing -> 18 fills per MAC, 16 MACs; 1 read per MAC op
    assert (c.reads("weight_buffer", "weight"), c.writes("weight_register", "weight")) == (288, 288)
    assert c.reads("weight_register", "weight") == 576
    # inputs: GB tile 16 ch x 4 x 4 = 256; PE tile 8 ch x 3 x 4 = 96, refilled per P (2), no multicast
    # across PEs (G indexes inputs); each vector MAC reads its own channel every cycle: 36 x 16
    assert (c.reads("dram", "input"), c.writes("global_buffer", "input")) == (256, 256)
    assert (c.reads("global_buffer", "input"), c.writes("input_buffer", "input")) == (384, 384)
    assert c.reads("input_buffer", "input") == 576
    # outputs: 576 accumulator updates; 2 distinct PE tiles of 8 x 2 per PE, all first touches
    # (64 fresh): reads 576 - 64 updates + 64 write-back reads
    assert (c.writes("accum_buffer", "psum"), c.reads("accum_buffer", "psum")) == (576, 576)
    assert (c.writes("global_buffer", "output"), c.reads("global_buffer", "output")) == (64, 64)
    assert c.writes("dram", "output") == 64
    # NoC: 2 unicast groups (G indexes every tensor); PE0 at the GB router (0 links, 1 router),
    # PE1 one hop away (1 link, 2 routers): weights 72 x 8 b, inputs 2 x 96 x 8 b, outputs 2 x 16 x 8 b per PE
    assert c.noc("weight") == (1152, 576, 1728)
    assert c.noc("input") == (3072, 1536, 4608)
    assert c.noc("output") == (512, 256, 768)
    # DRAM (144 + 256 + 64) x 8 = 3712 b at 64 b/cycle = 58 cycles > 36
    assert c.latency_cycles == 58
    assert c == simulate_counts(m, spec)  # the walked nest agrees with the closed form


def test_golden_depthwise_energy(spec: AcceleratorSpec) -> None:
    e = _by_component(golden_depthwise(), spec)
    assert e["mac"] == pytest.approx(576 * (0.2 + 0.115))  # 181.44
    assert e["register"] == pytest.approx(288 * 0.01)  # 2.88: fills only (reads feed the multiplier, 0 pJ)
    assert e["weight_buffer"] == pytest.approx((144 + 288) * 8 * 12 / 64)  # 648
    assert e["input_buffer"] == pytest.approx((384 + 576) * 8 * 6.1 / 64)  # 732
    assert e["accum_buffer"] == pytest.approx((576 + 576) * 4.0)  # 4608
    assert e["global_buffer"] == pytest.approx((256 + 384 + 64 + 64) * 8 * 51.8 / 256)  # 1243.2
    assert e["noc_link"] == pytest.approx((576 + 1536 + 256) * 0.064)  # 151.552
    assert e["noc_router"] == pytest.approx((1728 + 4608 + 768) * 0.055)  # 390.72
    assert e["dram"] == pytest.approx(3712 * 8.0)  # 29696
    assert sum(e.values()) == pytest.approx(37653.792)


def test_golden_matmul_counts(spec: AcceleratorSpec) -> None:
    m = golden_matmul()
    c = analytic_counts(m, spec)
    assert c.macs == 256 and c.compute_cycles == 4
    # second operand ("weight" role: weight buffer, its own voltage): 32 per PE, 2 slices, no reuse
    # across slices; registers filled once per MAC unit (64), read by every MAC op (256)
    assert (c.reads("dram", "weight"), c.writes("weight_buffer", "weight")) == (64, 64)
    assert (c.reads("weight_buffer", "weight"), c.writes("weight_register", "weight")) == (64, 64)
    assert c.reads("weight_register", "weight") == 256
    # first operand: GB tile 2 x 4 x 8 = 64; each PE gets its own slice (32); lanes read C8 per cycle
    # and PE, shared by the 4 vector MACs: 4 x 2 x 8
    assert (c.reads("dram", "input"), c.writes("global_buffer", "input")) == (64, 64)
    assert (c.reads("global_buffer", "input"), c.writes("input_buffer", "input")) == (64, 64)
    assert c.reads("input_buffer", "input") == 64
    # outputs: 4 cycles x 2 PEs x 4 vector MACs = 32 fresh updates; 32 written back
    assert (c.writes("accum_buffer", "psum"), c.reads("accum_buffer", "psum")) == (32, 32)
    assert (c.writes("global_buffer", "output"), c.writes("dram", "output")) == (32, 32)
    # NoC: both operands stream through it (2 unicast groups): 32 x 8 b each per PE; outputs 16 x 8 b
    assert c.noc("weight") == (512, 256, 768)
    assert c.noc("input") == (512, 256, 768)
    assert c.noc("output") == (256, 128, 384)
    assert c.latency_cycles == 20  # (64 + 64 + 32) x 8 b / 64 b per cycle
    assert c == simulate_counts(m, spec)


def test_golden_matmul_energy(spec: AcceleratorSpec) -> None:
    e = _by_component(golden_matmul(), spec)
    assert e["mac"] == pytest.approx(256 * 0.315)  # 80.64
    assert e["register"] == pytest.approx(64 * 0.01)  # 0.64: fills only (reads feed the multiplier, 0 pJ)
    assert e["weight_buffer"] == pytest.approx(128 * 1.5)  # 192
    assert e["input_buffer"] == pytest.approx(128 * 0.7625)  # 97.6
    assert e["accum_buffer"] == pytest.approx(64 * 4.0)  # 256
    assert e["global_buffer"] == pytest.approx(192 * 8 * 51.8 / 256)  # 310.8
    assert e["noc_link"] == pytest.approx(640 * 0.064)  # 40.96
    assert e["noc_router"] == pytest.approx(1920 * 0.055)  # 105.6
    assert e["dram"] == pytest.approx(1280 * 8.0)  # 10240
    assert sum(e.values()) == pytest.approx(11324.24)


def test_matmul_operand_traffic_grows_with_images(spec: AcceleratorSpec) -> None:
    # images fold into the groups: twice the images, twice the second operand's DRAM traffic
    one = analytic_counts(map_layer(LayerShape.matmul(12, 197, 197, 64), spec), spec)
    two = analytic_counts(map_layer(LayerShape.matmul(24, 197, 197, 64), spec), spec)
    assert two.reads("dram", "weight") == 2 * one.reads("dram", "weight")


@pytest.mark.parametrize(
    "shape",
    [
        LayerShape.conv2d(1, 32, 32, 112, 112, 3, 3, pads=(1, 1, 1, 1), groups=32),
        LayerShape.conv2d(1, 144, 144, 56, 56, 3, 3, strides=(2, 2), pads=(0, 1, 0, 1), groups=144),
        LayerShape.conv2d(1, 960, 960, 7, 7, 3, 3, pads=(1, 1, 1, 1), groups=960),
        LayerShape.conv2d(1, 64, 64, 28, 28, 3, 3, pads=(1, 1, 1, 1), groups=4),
        LayerShape.matmul(12, 197, 197, 64),
        LayerShape.matmul(12, 197, 64, 197),
        LayerShape.dense(197, 3072, 768),
    ],
    ids=["dw32", "dw144s2", "dw960", "group4", "qk", "av", "vit_fc1"],
)
def test_new_shapes_map_validly_and_fast(spec: AcceleratorSpec, shape: LayerShape) -> None:
    clear_mapper_cache()
    t0 = time.perf_counter()
    m = map_layer(shape, spec)
    dt = time.perf_counter() - t0
    m.validate(spec)
    c = analytic_counts(m, spec)
    assert c.macs == shape.macs
    if shape.groups > 1 and shape.c_per_group == 1:
        # one channel per vector MAC: at most one lane in 8 busy (the real utilisation)
        assert m.spatial_macs() <= spec.pe_array.num_macs // spec.pe_array.lanes_per_vector_mac
    # the goal (50 ms per unique shape) is measured by benchmarks/bench_mapper.py; this bound only
    # catches a search that explodes (e.g. over every factorisation of G), on a loaded machine
    assert dt < 2.0, f"{dt * 1e3:.0f} ms"
    assert "G: " in problem_yaml(shape) or f"G: {shape.groups}" in problem_yaml(shape)
