"""The onnxruntime host: same results as onnxruntime on the same QDQ model, approximate and faulty
layers still on the project's kernels (accumulators equal the reference table convolution), and
the energy report names the MACs it does not cover."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from approxtvm.cli import main
from approxtvm.compiler import frontend
from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel
from approxtvm.errors import ApproxTvmError
from approxtvm.runtime.executor import LayerProgram, accumulate
from approxtvm.runtime.kernels.reference import conv2d_products_reference, dense_products_reference
from approxtvm.targets.vacc.config import ApproxPolicy
from tests.compiler.test_host_graph import mixed_model
from tests.e2e.test_exact_vs_references import _output_step
from tests.onnx_builders import calibration, small_cnn

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def qdq_cnn() -> object:
    return frontend.quantize(small_cnn(), calibration(32))


def _ort(q: object, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    return sess.run(None, {"input": x})[0]


def test_exact_layers_inside_onnxruntime_equal_it(qdq_cnn: object) -> None:
    model = compile_onnx(qdq_cnn, batch_size=4)
    assert model.host == "onnxruntime" and model.executable is None  # no relax.build
    x = calibration(10, seed=3)
    res = model.run(x)
    np.testing.assert_array_equal(res.outputs["logits"], _ort(qdq_cnn, x))
    assert res.counters["kernel_layers"] == []
    assert res.counters["calls"] == dict.fromkeys(model.layer_ids, 3)  # energy still counted per batch
    assert res.energy.macs == 3 * sum(s.shape.macs for s in model.schedules.values())


def test_kernel_path_agrees_with_onnxruntime_and_tvm_host(qdq_cnn: object) -> None:
    model = compile_onnx(qdq_cnn, batch_size=4)
    model.exact_layers = "kernels"
    x = calibration(40, seed=8)
    res = model.run(x)
    assert res.counters["kernel_layers"] == model.layer_ids
    ref = _ort(qdq_cnn, x)
    d = np.abs(res.outputs["logits"] - ref) / _output_step(qdq_cnn)
    # every layer that feeds a QuantizeLinear requantizes like onnxruntime's integer kernels: the
    # kernel path reproduces onnxruntime (rare rounding ties of onnxruntime's vector code aside)
    assert np.mean(d == 0) >= 0.99 and d.max() <= 1 + 1e-4
    assert np.array_equal(res.outputs["logits"].argmax(1), ref.argmax(1))
    tvm_model = compile_onnx(qdq_cnn, batch_size=4, host="tvm")
    assert tvm_model.host == "tvm"
    d_tvm = np.abs(tvm_model.run(x).outputs["logits"] - res.outputs["logits"]) / _output_step(qdq_cnn)
    assert d_tvm.max() <= 2 + 1e-4


def test_fixed_batch_export_runs_its_batches_one_by_one() -> None:
    """A graph whose input fixes the batch (the zoo's legacy exports: 1) cannot stack batches into
    one call: several images on the kernel path give each image's own outputs."""
    from tests import zoo_models

    e = zoo_models.entry("mobilenet_v2_trained")
    model = compile_onnx(zoo_models.load(e.name), calibration=zoo_models.calibration_inputs(e, 16), batch_size=1)
    model.exact_layers = "kernels"
    x = zoo_models.eval_inputs(e, 3)
    out = model.run(x).outputs[model.output_names[0]]
    one = np.concatenate([model.run(x[i : i + 1]).outputs[model.output_names[0]] for i in range(3)])
    assert np.array_equal(out, one)


def test_approximate_layers_run_on_the_project_kernels(qdq_cnn: object) -> None:
    """An approximate multiplier is never short-circuited to onnxruntime: every layer call's
    accumulators equal the reference table convolution (activation = row, weight = column)."""
    model = compile_onnx(qdq_cnn, ApproxPolicy.uniform("mul8u_2HH"), batch_size=2)
    res = model.run(calibration(2, seed=4), trace=True)
    traces = res.traces
    assert res.counters["kernel_layers"] == model.layer_ids
    assert len(traces) == len(model.layer_ids)
    for lid, xq, acc in traces:
        prog = model.programs[lid]
        s = prog.schedule.shape
        if s.op == "dense":
            prod = dense_products_reference(xq, prog.weight, prog.multiplier)
        else:
            prod = conv2d_products_reference(
                xq,
                prog.weight,
                prog.multiplier,
                strides=(s.stride_h, s.stride_w),
                dilations=(s.dilation_h, s.dilation_w),
                pads=(s.pad_top, s.pad_left, s.pad_bottom, s.pad_right),
                pad_value=prog.schedule.quant.input_zero_point,
            )
        np.testing.assert_array_equal(acc, accumulate(xq, prog, products=prod), err_msg=lid)
    # without tracing the same layers still go through the kernels, with the same outputs
    again = model.run(calibration(2, seed=4))
    np.testing.assert_array_equal(again.outputs["logits"], res.outputs["logits"])


def test_faulty_layers_run_on_the_kernels_even_when_exact(qdq_cnn: object) -> None:
    policy = ApproxPolicy.per_layer({"conv2": {"multiplier": "exact", "noc_swing_v": 0.3}})
    model = compile_onnx(qdq_cnn, policy, batch_size=2)
    res = model.run(calibration(4, seed=1), seed=3)
    assert res.counters["kernel_layers"] == ["conv2"]
    assert "conv2" in res.counters["faults"]
    tvm_model = compile_onnx(qdq_cnn, policy, batch_size=2, host="tvm")
    ref = tvm_model.run(calibration(4, seed=1), seed=3)
    assert ref.counters["faults"] == res.counters["faults"]  # same fault draws on either host


def _mixed_with_float_dw() -> object:
    """The mixed model quantized, with the depthwise conv's weight turned back into a float
    initializer: a float layer no accelerator pattern takes, so it stays on the host."""
    from onnx import numpy_helper

    q = frontend.quantize(mixed_model(), calibration(16, size=12))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    dw = next(n for n in q.graph.node if n.name == "dw")
    deq = next(n for n in q.graph.node if dw.input[1] in n.output)
    zp = inits[deq.input[2]].astype(np.float32) if len(deq.input) > 2 else 0.0
    w = (inits[deq.input[0]].astype(np.float32) - zp) * inits[deq.input[1]].astype(np.float32)
    q.graph.initializer.append(numpy_helper.from_array(w.astype(np.float32), "wd_float"))
    dw.input[1] = "wd_float"
    return q


def test_energy_report_names_the_host_macs() -> None:
    q = _mixed_with_float_dw()
    model = compile_onnx(q, batch_size=2)
    rep = model.energy_per_batch()
    dw = 2 * 8 * 10 * 10 * 9
    offloaded = 2 * 8 * 10 * 10 * 27 + 2 * 8 * 5
    assert rep.macs == offloaded
    assert [(u.node, u.macs) for u in rep.uncovered] == [("dw", dw)]
    assert rep.host_mac_share == pytest.approx(dw / (dw + offloaded))
    assert "1 host layer(s)" in rep.coverage_note()
    res = model.run(calibration(3, size=12, seed=2))  # 2 batches
    assert res.energy.host_macs == 2 * dw and res.energy.host_mac_share == pytest.approx(rep.host_mac_share)
    np.testing.assert_array_equal(res.outputs["logits"], _ort(q, calibration(3, size=12, seed=2)))
    again = type(rep).from_dict(json.loads(json.dumps(rep.to_dict())))
    assert again == rep


def test_cli_json_documents(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    import onnx

    q = _mixed_with_float_dw()
    path = Path(str(tmp_path)) / "mixed.onnx"
    onnx.save(q, str(path))
    np.savez(Path(str(tmp_path)) / "d.npz", x=calibration(5, size=12, seed=3), y=np.arange(5) % 5)
    docs = {}
    for cmd in (
        ["energy", str(path)],
        ["inspect", str(path)],
        ["run", str(path), "--data", str(path.parent / "d.npz")],
    ):
        capsys.readouterr()
        assert main([*cmd, "--json"]) == 0
        docs[cmd[0]] = json.loads(capsys.readouterr().out)
    for kind, doc in docs.items():
        assert doc["kind"] == kind and doc["version"] == 1 and doc["host"] == "onnxruntime"
        cov = doc["coverage"]
        assert [h["node"] for h in cov["host_layers"]] == ["dw"]
        assert cov["host_mac_share"] == pytest.approx(cov["host_macs"] / (cov["host_macs"] + cov["offloaded_macs"]))
        assert "not counted" in cov["note"]
    assert set(docs["inspect"]["schedules"]) == {"conv1", "fc"}
    assert docs["energy"]["total_pj"] == pytest.approx(sum(x["total_pj"] for x in docs["energy"]["layers"]))
    assert docs["run"]["samples"] == 5 and 0 <= docs["run"]["top1"] <= 1
    # latency beside energy in every document: the same per-layer cycles as the energy report
    layers = {x["layer_id"]: x for x in docs["energy"]["layers"]}
    assert set(docs["inspect"]["estimates"]) == {"conv1", "fc"}
    for lid, est in docs["inspect"]["estimates"].items():
        assert est["latency_cycles"] == layers[lid]["latency_cycles"] > 0
        assert est["total_pj"] == pytest.approx(layers[lid]["total_pj"])
        assert est["latency_cycles"] == docs["inspect"]["schedules"][lid]["predicted"]["counts"]["latency_cycles"]
    assert docs["run"]["latency_cycles_per_batch"] == docs["energy"]["latency_cycles"] > 0
    assert docs["run"]["utilisation"] == pytest.approx(docs["energy"]["utilisation"])
    capsys.readouterr()
    assert main(["energy", str(path)]) == 0
    out = capsys.readouterr().out
    assert "not counted" in out and "cycles" in out and f"{docs['energy']['latency_cycles']:,}" in out


def test_bad_host_and_mode_are_clear_errors(qdq_cnn: object) -> None:
    with pytest.raises(ApproxTvmError, match="unknown host"):
        compile_onnx(qdq_cnn, host="gpu")
    model: CompiledModel = compile_onnx(qdq_cnn, batch_size=2)
    model.exact_layers = "fast"
    with pytest.raises(ApproxTvmError, match="exact_layers"):
        model.run(calibration(1))


def test_grouped_batches_equal_one_batch_at_a_time(qdq_cnn: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several batches through one call per layer (faulty exact layers) give the outputs, fault
    counters, calls and energy of one batch at a time, the padded last batch and a shorter last
    group included; the fault draws equal the TVM host's."""
    from approxtvm.compiler import host_ort

    policy = ApproxPolicy.uniform(noc_swing_v=0.33, sram_v={"input_buffer": 0.6, "weight_buffer": 0.6})
    model = compile_onnx(qdq_cnn, policy, batch_size=2)
    x = calibration(9, seed=5)  # 5 batches, the last one padded
    monkeypatch.setattr(host_ort, "GROUP_ROWS", 6)  # groups of 3 batches, then 2
    assert model._ort is not None and model._ort.group_size(frozenset(model.layer_ids), 5) == 3
    assert model._ort.group_size(frozenset(model.layer_ids), 1) == 1
    grouped = model.run(x, seed=4)
    single = model.run(x, seed=4, trace=True)  # a traced run goes one batch at a time
    assert len(single.traces) == 5 * len(model.layer_ids)
    np.testing.assert_array_equal(grouped.outputs["logits"], single.outputs["logits"])
    assert grouped.counters["faults"] == single.counters["faults"]
    assert sum(c["weight"]["bits_flipped"] + c["input"]["bits_flipped"] for c in grouped.counters["faults"].values())
    assert grouped.counters["calls"] == single.counters["calls"] == dict.fromkeys(model.layer_ids, 5)
    assert grouped.counters["batches"] == 5 and grouped.energy.total_pj == single.energy.total_pj
    tvm_model = compile_onnx(qdq_cnn, policy, batch_size=2, host="tvm")
    assert tvm_model.run(x, seed=4).counters["faults"] == grouped.counters["faults"]


def _one_node_graph(op: str, batch: int | str = "N", inputs: tuple[str, ...] = (), **attrs: object) -> object:
    """``x (batch, 4, 6) → op → y`` with constant extra inputs (``shape:``-prefixed: a Reshape target)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = []
    names = ["x"]
    for i, spec in enumerate(inputs):
        name = f"c{i}"
        values = [int(v) for v in spec.split(":")[1].split(",")] if spec.startswith("shape:") else [1.0]
        inits.append(
            numpy_helper.from_array(np.array(values, np.int64 if spec.startswith("shape:") else np.float32), name)
        )
        names.append(name)
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None, None])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_rows_independent_accepts_row_wise_graphs_only(qdq_cnn: object) -> None:
    from approxtvm.compiler.host_ort import rows_independent

    assert rows_independent(qdq_cnn)  # type: ignore[arg-type]
    keeps = [
        _one_node_graph("Relu"),
        _one_node_graph("Add", inputs=("c",)),
        _one_node_graph("Softmax", axis=-1),
        _one_node_graph("Flatten", axis=1),
        _one_node_graph("Transpose", perm=[0, 2, 1]),
        _one_node_graph("Reshape", inputs=("shape:0,24",)),
        _one_node_graph("Reshape", inputs=("shape:-1,12",)),
    ]
    mixes = [
        _one_node_graph("Relu", batch=1),  # a fixed batch: the graph has one size only
        _one_node_graph("Softmax", axis=0),
        _one_node_graph("Softmax", axis=-3),  # may be axis 0
        _one_node_graph("Flatten", axis=0),
        _one_node_graph("Transpose", perm=[1, 0, 2]),  # batch no longer the leading axis
        _one_node_graph("Reshape", inputs=("shape:-1",)),  # rows merged into one vector
        _one_node_graph("Reshape", inputs=("shape:2,-1",)),
        _one_node_graph("ReduceMean", keepdims=1),  # not known to keep rows apart
    ]
    assert all(rows_independent(m) for m in keeps)  # type: ignore[arg-type]
    assert not any(rows_independent(m) for m in mixes)  # type: ignore[arg-type]


def test_lowrank_layers_in_one_session_equal_the_kernels(qdq_cnn: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Low-rank conv layers may run as one onnxruntime session each (chosen per layer by timing);
    the outputs equal those of the kernel-by-kernel path (traced runs always take it), whichever
    form each layer was given. The fused column kernel, which takes this model's small layers,
    is turned off so that the one-session form meets strides, asymmetric pads and dilation, and so
    are the layers inside the host graph (BAM has that form too)."""
    import approxtvm.compiler.host_ort as host_ort

    monkeypatch.setattr(LayerProgram, "column_fused", property(lambda self: False))
    monkeypatch.setattr(host_ort, "FUSE_LAYERS", False)
    model = compile_onnx(qdq_cnn, ApproxPolicy.uniform("bam:h=4,v=0"), batch_size=2)
    x = calibration(2, seed=5)
    want = model.run(x, trace=True).outputs["logits"]  # kernels, layer by layer
    host = model._ort
    assert host is not None
    convs = [lid for lid, p in model.programs.items() if p.schedule.shape.op == "conv2d"]
    assert all(model.programs[lid].kernel_path == "lowrank" for lid in convs)
    for forced in (True, False, None):  # every layer in one session, none, the timed choice
        host._lowrank_choice.clear()
        if forced is not None:
            host._lowrank_choice = _Forced(forced)
        got = model.run(x).outputs["logits"]
        np.testing.assert_array_equal(got, want)
        host._lowrank_choice = {}
    built = [lid for lid in convs if any(k[0] == "lowrank_layer" and v is not None
                                          for k, v in model.programs[lid].store.entries.items())]  # fmt: skip
    assert built == convs  # every conv of this model has the one-session form


def test_lowrank_sessions_and_choices_are_shared_by_the_models_of_a_process(
    qdq_cnn: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two models compiled with the same shared caches reuse each layer's one-session form and its
    measured choice (an exploration worker times a (layer, multiplier) once), with equal outputs."""
    import approxtvm.compiler.host_ort as host_ort
    from approxtvm.runtime.shared_caches import SharedCaches

    monkeypatch.setattr(LayerProgram, "column_fused", property(lambda self: False))
    monkeypatch.setattr(host_ort, "FUSE_LAYERS", False)  # BAM would run inside the host graph
    caches = SharedCaches()
    x = calibration(2, seed=6)
    first = compile_onnx(qdq_cnn, ApproxPolicy.uniform("bam:h=2,v=0"), batch_size=2, caches=caches)
    out = first.run(x).outputs["logits"]
    convs = {lid for lid, p in first.programs.items() if p.schedule.shape.op == "conv2d"}
    layers = [k for k in caches.kernels.sessions._weighted if k[0] == "lowrank_layer"]
    assert len(layers) == len(convs)
    kernel_calls: list[str] = []
    real = host_ort.layer_accumulators

    def counted(prog: LayerProgram, *args: object) -> np.ndarray:
        kernel_calls.append(prog.schedule.layer_id)
        return real(prog, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(host_ort, "layer_accumulators", counted)
    second = compile_onnx(qdq_cnn, ApproxPolicy.uniform("bam:h=2,v=0"), batch_size=2, caches=caches)
    np.testing.assert_array_equal(second.run(x).outputs["logits"], out)
    assert [k for k in caches.kernels.sessions._weighted if k[0] == "lowrank_layer"] == layers  # no new ones
    assert second._ort is not None and first._ort is not None
    assert second._ort._lowrank_choice == first._ort._lowrank_choice
    # a conv layer reaches the kernel-by-kernel path only if it was chosen there, never to re-time
    assert {lid for lid in kernel_calls if lid in convs} == {
        k[0] for k, v in first._ort._lowrank_choice.items() if not v
    } & convs


class _Forced(dict):
    """A choice table that answers ``forced`` for every layer."""

    def __init__(self, forced: bool) -> None:
        super().__init__()
        self.forced = forced

    def get(self, key: object, default: object = None) -> object:
        return self.forced
