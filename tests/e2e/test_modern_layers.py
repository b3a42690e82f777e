"""Depthwise / grouped convolutions, rank-3 Linear layers (MatMul, transposed constant, Gemm) and
attention MatMuls run on the accelerator and agree with onnxruntime on the same uint8 QDQ model;
their accumulators equal plain integer references written here."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel
from approxtvm.runtime.emulator import emulate
from approxtvm.targets.vacc.config import ApproxPolicy
from tests.onnx_builders import calibration

pytestmark = pytest.mark.tvm

D, HEADS, T = 16, 2, 4  # embedding, heads, tokens (a 2×2 patch grid)


def mini_vit(seed: int = 0) -> onnx.ModelProto:
    """Depthwise 3×3 → grouped 1×1 → patch conv → tokens → qkv Linear (rank-3 MatMul + Add) →
    attention (QKᵀ, softmax, AV over heads) → proj (MatMul with a transposed constant) → residual
    → mean over tokens → Gemm head."""
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    def const(name: str, values: list[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(values, np.int64), name)

    dh = D // HEADS
    inits = [
        init("dw.weight", (8, 1, 3, 3), 0.4),
        init("dw.bias", (8,), 0.1),
        init("gw.weight", (8, 2, 1, 1), 0.4),
        init("pe.weight", (D, 8, 4, 4), 0.1),
        init("pe.bias", (D,), 0.1),
        init("qkv.weight", (D, 3 * D), 0.25),
        init("qkv.bias", (3 * D,), 0.1),
        init("proj.weight_t", (D, D), 0.25),  # stored (K, C): the graph transposes it
        init("head.weight", (5, D), 0.3),
        init("head.bias", (5,), 0.1),
        numpy_helper.from_array(np.array(dh**-0.5, np.float32), "attn_scale"),
        const("s_tok", [0, D, T]),
        const("s_qkv", [0, T, 3, HEADS, dh]),
        const("s_out", [0, T, D]),
    ]
    N = helper.make_node
    nodes = [
        N("Conv", ["input", "dw.weight", "dw.bias"], ["a"], name="dw", group=8, pads=[1, 1, 1, 1]),
        N("Relu", ["a"], ["a1"], name="relu"),
        N("Conv", ["a1", "gw.weight"], ["g"], name="gw", group=4),
        N("Conv", ["g", "pe.weight", "pe.bias"], ["p"], name="pe", strides=[4, 4]),
        N("Reshape", ["p", "s_tok"], ["t0"], name="tok_reshape"),
        N("Transpose", ["t0"], ["tok"], name="tok_t", perm=[0, 2, 1]),
        N("MatMul", ["tok", "qkv.weight"], ["qkv_mm"], name="qkv"),
        N("Add", ["qkv_mm", "qkv.bias"], ["qkv_b"], name="qkv_add"),
        N("Reshape", ["qkv_b", "s_qkv"], ["qkv5"], name="qkv_reshape"),
        N("Transpose", ["qkv5"], ["qkv_p"], name="qkv_perm", perm=[2, 0, 3, 1, 4]),
        N("Split", ["qkv_p"], ["q1", "k1", "v1"], name="split", axis=0, num_outputs=3),
        N("Squeeze", ["q1", "ax0"], ["q"], name="sq_q"),
        N("Squeeze", ["k1", "ax0"], ["k"], name="sq_k"),
        N("Squeeze", ["v1", "ax0"], ["v"], name="sq_v"),
        N("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 1, 3, 2]),
        N("MatMul", ["q", "kt"], ["s"], name="attn_qk"),
        N("Mul", ["s", "attn_scale"], ["s1"], name="attn_mul"),
        N("Softmax", ["s1"], ["pr"], name="softmax", axis=-1),
        N("MatMul", ["pr", "v"], ["o"], name="attn_av"),
        N("Transpose", ["o"], ["o1"], name="o_t", perm=[0, 2, 1, 3]),
        N("Reshape", ["o1", "s_out"], ["o2"], name="o_reshape"),
        N("Transpose", ["proj.weight_t"], ["proj_w"], name="proj_wt", perm=[1, 0]),
        N("MatMul", ["o2", "proj_w"], ["pj"], name="proj"),
        N("Add", ["pj", "tok"], ["res"], name="residual"),
        N("ReduceMean", ["res", "ax1"], ["m"], name="mean", keepdims=0),
        N("Gemm", ["m", "head.weight", "head.bias"], ["logits"], name="head", transB=1),
    ]
    inits += [const("ax0", [0]), const("ax1", [1])]
    graph = helper.make_graph(
        nodes,
        "mini_vit",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


LAYERS = {"dw", "gw", "pe", "qkv", "attn_qk", "attn_av", "proj", "head"}


@pytest.fixture(scope="module")
def vit() -> CompiledModel:
    return compile_onnx(mini_vit(), calibration=calibration(32, size=8, channels=8))


def _output_step(proto: onnx.ModelProto) -> float:
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear" and "logits" in n.output)
    return float(inits[node.input[1]])


def test_every_mac_layer_is_offloaded_and_named_by_its_onnx_node(vit: CompiledModel) -> None:
    assert set(vit.layer_ids) == LAYERS
    s = vit.schedules
    assert s["dw"].shape.groups == 8 and s["dw"].shape.c_per_group == 1
    assert s["gw"].shape.groups == 4
    assert s["qkv"].shape.op == "dense" and s["qkv"].shape.n == T  # (1, T, D) rows flattened
    assert s["attn_qk"].shape.op == "matmul" and s["attn_qk"].shape.groups == HEADS
    assert s["attn_qk"].shape.macs == HEADS * T * T * (D // HEADS)


def test_matches_onnxruntime(vit: CompiledModel) -> None:
    x = calibration(6, size=8, channels=8, seed=5)
    ours = vit.run(x).outputs["logits"]
    sess = ort.InferenceSession(vit.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])
    d = np.abs(ours - ref) / _output_step(vit.proto)
    assert d.max() <= 2 + 1e-4 and np.mean(d <= 1 + 1e-4) >= 0.9


def test_accumulators_equal_integer_references(vit: CompiledModel) -> None:
    res = vit.run(calibration(1, size=8, channels=8, seed=9), trace=True)
    traces = res.traces
    seen = set()
    for lid, xq, acc in traces:
        sch, prog = vit.schedules[lid], vit.programs[lid]
        q, s = sch.quant, sch.shape
        zx, zw = q.input_zero_point, np.asarray(q.weight_zero_points, np.int64)
        if s.op == "matmul":
            continue  # checked in test_attention_accumulators (needs both operands)
        seen.add(lid)
        w = prog.weight.astype(np.int64) - (zw.reshape(-1, *([1] * (prog.weight.ndim - 1))) if zw.size > 1 else zw)
        if s.op == "dense":
            ref = (xq.reshape(-1, s.c).astype(np.int64) - zx) @ w.T
        else:
            xp = np.pad(
                xq.astype(np.int64) - zx,
                ((0, 0), (0, 0), (s.pad_top, s.pad_bottom), (s.pad_left, s.pad_right)),
            )
            ref = np.zeros((s.n, s.k, s.p, s.q), np.int64)
            cg, kg = s.c_per_group, s.k_per_group
            for k in range(s.k):
                g = k // kg
                for c in range(cg):
                    for r in range(s.r):
                        for t in range(s.s):
                            rows = slice(r, r + s.stride_h * s.p, s.stride_h)
                            cols = slice(t, t + s.stride_w * s.q, s.stride_w)
                            ref[:, k] += xp[:, g * cg + c, rows, cols] * w[k, c, r, t]
        if s.groups == 1:  # the tile-by-tile emulator of the schedule agrees (it walks ungrouped nests)
            xe = xq.reshape(-1, s.c) if s.op == "dense" else xq
            np.testing.assert_array_equal(emulate(xe, prog).acc, ref, err_msg=f"layer {lid} (emulated)")
        np.testing.assert_array_equal(acc, ref, err_msg=f"layer {lid}")
    assert seen == LAYERS - {"attn_qk", "attn_av"}


def test_attention_accumulators() -> None:
    model = compile_onnx(mini_vit(), calibration=calibration(32, size=8, channels=8))
    from approxtvm.runtime.executor import accumulate_matmul

    prog = model.programs["attn_qk"]
    q = prog.schedule.quant
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (1, HEADS, T, D // HEADS), dtype=np.uint8)
    b = rng.integers(0, 256, (1, HEADS, D // HEADS, T), dtype=np.uint8)
    ref = (a.astype(np.int64) - q.input_zero_point) @ (b.astype(np.int64) - q.weight_zero_points[0])
    np.testing.assert_array_equal(accumulate_matmul(a, b, prog), ref)


def test_approximate_multiplier_reaches_every_layer() -> None:
    policy = ApproxPolicy.uniform("bam:h=4,v=0")
    model = compile_onnx(mini_vit(), policy, calibration=calibration(32, size=8, channels=8))
    assert {p.schedule.intrinsic.multiplier_name for p in model.programs.values()} != {"exact"}
    assert {lid for lid, p in model.programs.items() if p.path == "lowrank"} == LAYERS
    out = model.run(calibration(2, size=8, channels=8, seed=5)).outputs["logits"]
    assert np.isfinite(out).all()


def test_policy_addresses_attention_by_node_name() -> None:
    policy = ApproxPolicy.per_layer({"attn_*": "bam:h=4,v=0"})
    model = compile_onnx(mini_vit(), policy, calibration=calibration(32, size=8, channels=8))
    approx = {lid for lid, p in model.programs.items() if p.path != "exact"}
    assert approx == {"attn_qk", "attn_av"}
