"""The vacc backend inside a TVM user's own pipeline: RunCodegen → relax.build → VirtualMachine.

The reference is ``compile_onnx(...).run`` on the same QDQ model and policy, which lowers through
its own in-process codegen session: outputs, energy and fault counters must be identical.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm
import tvm.relax.frontend.onnx
from tvm import relax

import approxtvm as at
from approxtvm.compiler import frontend
from approxtvm.compiler.frontend import QuantOptions
from approxtvm.errors import ModelError
from approxtvm.passes import AnnotateApproximation, NameLayers
from approxtvm.passes.name_layers import id_from_parameter
from tests.onnx_builders import calibration, small_cnn

REPO = Path(__file__).resolve().parents[2]
# non-commutative table (DESIGN §3) with faults on NoC and both PE buffers: every knob at once
POLICY = at.ApproxPolicy.uniform("trunc:k=3", noc_swing_v=0.35, sram_v={"input_buffer": 0.6, "weight_buffer": 0.6})


@pytest.fixture(scope="module")
def qdq() -> onnx.ModelProto:
    return frontend.quantize(small_cnn(), calibration(64), QuantOptions())


def _user_pipeline(qdq: onnx.ModelProto, policy: at.ApproxPolicy, passes_before: list | None = None):
    mod = tvm.relax.frontend.onnx.from_onnx(qdq, shape_dict={"input": [1, 3, 16, 16]}, keep_params_in_input=True)
    mod, params = relax.frontend.detach_params(mod)
    seq = [*(passes_before or []), AnnotateApproximation(policy)]
    mod = tvm.transform.Sequential(seq)(mod)
    partitioned = at.partition_for_vacc(mod, params["main"])
    return partitioned, relax.build(relax.transform.RunCodegen()(partitioned), "llvm")


def _run(ex, x: np.ndarray, seed: int):
    vm = relax.VirtualMachine(ex, tvm.cpu())
    with at.trace_vacc(seed=seed) as tr:
        y = vm["main"](tvm.runtime.tensor(x)).numpy()
    return y, tr


@pytest.mark.parametrize("policy", [at.ApproxPolicy.exact(), POLICY], ids=["exact", "trunc+faults"])
def test_vm_run_is_bit_identical_to_compile_onnx(qdq: onnx.ModelProto, policy: at.ApproxPolicy) -> None:
    x = calibration(1, seed=7)
    _, ex = _user_pipeline(qdq, policy)
    ref = at.compile_onnx(qdq, policy).run(x, seed=3)
    y, tr = _run(ex, x, seed=3)
    np.testing.assert_array_equal(y, ref.outputs["logits"])
    assert len(tr.calls) == len(ref.energy.layers) == 5
    assert tr.energy.total_pj == ref.energy.total_pj
    assert tr.energy.by_component() == ref.energy.by_component()
    if policy.default.noc_swing_v is None:
        assert tr.fault_counters() == {}
    else:  # same counters layer by layer (ids differ: weight names here, ONNX node names there)
        mine, theirs = tr.fault_counters(), ref.counters["faults"]
        assert list(mine.values()) == list(theirs.values())
        assert sum(v["input"]["bits_flipped"] for v in mine.values()) > 0  # faults did happen


def test_seed_changes_faults_and_outside_trace_warns(qdq: onnx.ModelProto) -> None:
    x = calibration(1, seed=7)
    _, ex = _user_pipeline(qdq, POLICY)
    y0, t0 = _run(ex, x, seed=0)
    y0b, _ = _run(ex, x, seed=0)
    _, t1 = _run(ex, x, seed=1)
    np.testing.assert_array_equal(y0, y0b)
    assert t0.fault_counters() != t1.fault_counters()
    vm = relax.VirtualMachine(ex, tvm.cpu())
    with pytest.warns(RuntimeWarning, match="no faults injected"):
        vm["main"](tvm.runtime.tensor(x))


def test_layer_ids_come_from_the_module(qdq: onnx.ModelProto) -> None:
    mod, _ = _user_pipeline(qdq, at.ApproxPolicy.per_layer({"w2": "trunc:k=2"}))
    layers = {
        str(f.attrs["vacc.layer"]): str(f.attrs["vacc.config"])
        for _, f in mod.functions.items()
        if isinstance(f, relax.Function) and f.attrs is not None and "vacc.layer" in f.attrs
    }
    assert sorted(layers) == ["w1", "w2", "w3", "w4", "wf"]  # onnxruntime's "<w>_quantized" names
    assert "trunc:k=2" in layers["w2"] and "trunc" not in layers["w1"]


def test_passes_compose_with_tvm_passes(qdq: onnx.ModelProto) -> None:
    before = [relax.transform.Normalize(), relax.transform.CanonicalizeBindings(), NameLayers()]
    x = calibration(1, seed=9)
    _, ex = _user_pipeline(qdq, at.ApproxPolicy.exact(), before)
    y, tr = _run(ex, x, seed=0)  # relax.build applied TVM's default pipeline after partitioning
    np.testing.assert_array_equal(y, at.compile_onnx(qdq).run(x).outputs["logits"])
    assert len(tr.calls) == 5


def test_partition_rejects_a_parameter_list_of_another_module(qdq: onnx.ModelProto) -> None:
    mod = tvm.relax.frontend.onnx.from_onnx(qdq, shape_dict={"input": [1, 3, 16, 16]}, keep_params_in_input=True)
    mod, params = relax.frontend.detach_params(mod)
    with pytest.raises(ModelError, match="parameter list does not match"):
        at.partition_for_vacc(mod, params["main"][:-1])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("conv1.weight", "conv1"),
        ("w1_quantized", "w1"),
        ("features.0.weight_quantized", "features.0"),
        ("model/conv/kernel:0", "model/conv"),
        ("onnx::Conv_193", None),
        ("fc", "fc"),
    ],
)
def test_id_from_parameter(name: str, expected: str | None) -> None:
    assert id_from_parameter(name) == expected


def _readme_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Inside your own TVM pipeline", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_and_exports(tmp_path: Path) -> None:
    from approxtvm.models import get_model

    calib = np.random.default_rng(1).random((64, 1, 8, 8), dtype=np.float32)
    qdq = frontend.quantize(get_model("digits_cnn"), calib, QuantOptions())
    onnx.save(qdq, str(tmp_path / "model.qdq.onnx"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict[str, object] = {}
        exec(compile(_readme_block(), "README.md", "exec"), scope)  # the block exactly as documented
    finally:
        os.chdir(cwd)
    trace, y = scope["trace"], scope["y"]
    assert trace.energy.total_pj > 0 and len(trace.calls) == len(trace.energy.by_layer()) > 0
    np.save(tmp_path / "x.npy", scope["x"])
    np.save(tmp_path / "y.npy", y)

    # a new process loads the exported library: with approxtvm imported it runs the same, without it
    # the error names what is missing
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, tvm
        from tvm import relax
        vm = relax.VirtualMachine(tvm.runtime.load_module({str(tmp_path / "model_vacc.so")!r}), tvm.cpu())
        x = tvm.runtime.tensor(np.load({str(tmp_path / "x.npy")!r}))
        try:
            if sys.argv[1] == "import":
                import approxtvm as at
                import approxtvm.targets.vacc
                with at.trace_vacc(seed=0):  # same seed, same faults as the exporting process
                    y = vm["main"](x).numpy()
            else:
                y = vm["main"](x).numpy()
        except Exception as exc:
            print("ERROR", exc)
            raise SystemExit(0)
        print("SAME" if np.array_equal(y, np.load({str(tmp_path / "y.npy")!r})) else "DIFFERENT")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-c", script]
    with_import = subprocess.run([*run, "import"], capture_output=True, text=True, env=env, timeout=300)
    assert with_import.stdout.strip().splitlines()[-1] == "SAME", with_import.stderr[-2000:]
    without = subprocess.run([*run, "none"], capture_output=True, text=True, env=env, timeout=300)
    assert "import approxtvm.targets.vacc" in without.stdout, without.stdout + without.stderr[-2000:]
