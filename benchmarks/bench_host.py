"""Host-path benchmark: per-image time of the exact path vs onnxruntime on the same QDQ model.

For each model and batch (1 and 32) it times, interleaved round by round in one process (absolute
times are noisy on a shared machine, ratios much less): onnxruntime on the whole QDQ model, our
onnxruntime host with exact layers inside the segments (the default), the same host with every
layer through the project's kernels (``exact_layers="kernels"``, the path approximate and faulty
layers take), and with ``--tvm`` the Relax-VM host. It also reports compile time, the per-call
overhead over onnxruntime at batch 1 (µs), the offloaded MAC share and agreement with onnxruntime
on 100 inputs (top-1, share of outputs within one quantization step, largest step difference).

Models: the shipped digits models, the ResNet-8/20 builders and every ``tests/data/zoo/*.onnx``
(``--quick``: digits only). Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from approxtvm.compiler import frontend
from approxtvm.compiler.driver import compile_onnx
from approxtvm.models import calibration_data, get_model, load_dataset
from approxtvm.runtime.kernels import detect_cpu

ZOO = Path(__file__).resolve().parent.parent / "tests" / "data" / "zoo"


def _step(q: onnx.ModelProto) -> float:
    """Scale of the DequantizeLinear producing the first output (one quantization step)."""
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    out = q.graph.output[0].name
    for n in q.graph.node:
        if n.op_type == "DequantizeLinear" and out in n.output:
            return float(inits[n.input[1]].reshape(-1)[0])
    return float("nan")


def _interleaved(fns: dict[str, object], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin (one call of each per round)."""
    for f in fns.values():
        f()  # type: ignore[operator]
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()  # type: ignore[operator]
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(name: str, q: onnx.ModelProto, x: np.ndarray, with_tvm: bool) -> dict[str, object]:
    """Timing and agreement of one QDQ model."""
    sess = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    inp, dims = next(iter(frontend.input_specs(q).items()))
    fixed = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None  # an exported, fixed batch
    chunk = fixed or 32
    ref = np.concatenate([sess.run(None, {inp: x[i : i + chunk]})[0] for i in range(0, len(x) - chunk + 1, chunk)])
    x = x[: len(ref)]
    step = _step(q)
    row: dict[str, object] = {} if fixed is None else {"fixed_batch": fixed}
    for batch in (1, 32) if fixed is None else (fixed,):
        t0 = time.perf_counter()
        model = compile_onnx(q, batch_size=batch)
        compile_s = time.perf_counter() - t0
        xb = np.ascontiguousarray(x[:batch])
        fns: dict[str, object] = {
            "ort": lambda xb=xb: sess.run(None, {inp: xb}),
            "fused": lambda m=model, xb=xb: m.run(xb),
        }
        kern = compile_onnx(q, batch_size=batch)
        kern.exact_layers = "kernels"
        fns["kernels"] = lambda m=kern, xb=xb: m.run(xb)
        tvm_compile_s = None
        if with_tvm:
            t0 = time.perf_counter()
            vm = compile_onnx(q, batch_size=batch, host="tvm")
            tvm_compile_s = time.perf_counter() - t0
            fns["tvm"] = lambda m=vm, xb=xb: m.run(xb)
        med = _interleaved(fns, rounds=30 if batch == 1 else 8)
        tag = f"b{batch}"
        row[f"{tag}_compile_s"] = round(compile_s, 2)
        row[f"{tag}_ort_ms_per_image"] = round(1e3 * med["ort"] / batch, 4)
        for k in fns:
            if k != "ort":
                row[f"{tag}_{k}_ratio"] = round(med[k] / med["ort"], 2)
        if with_tvm:
            row[f"{tag}_tvm_compile_s"] = round(tvm_compile_s or 0.0, 2)
        if batch == 1:
            row["overhead_us_per_call"] = round(1e6 * (med["fused"] - med["ort"]), 1)
            rep = model.energy_per_batch()
            row["offloaded_mac_share"] = round(1 - rep.host_mac_share, 4)
        if batch == max((1, 32) if fixed is None else (fixed,)):
            for mode, m in (("fused", model), ("kernels", kern)):
                out = m.run(x).outputs[m.output_names[0]]
                d = np.abs(out - ref) / step
                row[f"{mode}_top1_agree"] = float(np.mean(out.argmax(1) == ref.argmax(1)))
                row[f"{mode}_within_1_step"] = round(float(np.mean(d <= 1 + 1e-4)), 4)
                row[f"{mode}_max_steps"] = round(float(d.max()), 2)
    return row


def main() -> None:
    quick = "--quick" in sys.argv
    with_tvm = "--tvm" in sys.argv
    out: dict[str, object] = {"bench": "host", "cpu": detect_cpu().to_dict()}
    models: dict[str, object] = {}
    digits = load_dataset("digits:train")
    test = load_dataset("digits:test").x[:100]
    for name in ("digits_cnn", "digits_resnet"):
        models[name] = bench(name, frontend.quantize(get_model(name), digits.x[:128]), test, with_tvm)
    if not quick:
        for name in ("resnet8", "resnet20"):
            m = get_model(name)
            q = frontend.quantize(m, calibration_data(m, n=16))
            models[name] = bench(name, q, calibration_data(m, n=100, seed=1), with_tvm)
        for path in sorted(ZOO.glob("*.onnx")) if ZOO.is_dir() else []:
            m = onnx.load(str(path))
            q = m if frontend.is_quantized(m) else frontend.quantize(m, calibration_data(m, n=16))
            models[path.stem] = bench(path.stem, q, calibration_data(m, n=100, seed=1), with_tvm)
    out["models"] = models
    rows = [r for r in models.values() if isinstance(r, dict)]
    for key in ("b1_fused_ratio", "b32_fused_ratio", "b1_kernels_ratio", "b32_kernels_ratio"):
        vals = [r[key] for r in rows if key in r]
        out[f"max_{key}"] = max(vals) if vals else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
