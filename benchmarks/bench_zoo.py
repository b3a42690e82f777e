"""Benchmark of the test-zoo models against onnxruntime; prints ONE JSON line.

Per model (``tests/data/zoo``; default: the trained-weights legacy export of every family):

* ``compile_s``: ``compile_onnx`` wall time at batch 1 (float models include our quantization);
* ``offloaded_mac_share``: MACs of the offloaded layers over the model's analytic MACs;
* ``ms_per_image_b1`` / ``ms_per_image_b32``: exact-path time per image at batch 1 and 32, with
  onnxruntime's on the same QDQ model and the ratio (measured in this process, best of
  ``--repeat``). For the batch-32 figures a model exported with a fixed batch of 1 is replaced
  by its ``*_symbatch`` sibling (same weights, symbolic batch) or, without one, given a symbolic
  batch dimension (checked against onnxruntime's batch-1 outputs; where the export baked the
  batch into its shape arithmetic the figures are ``null`` with the reason);
* ``approx``: per multiplier of ``--approx`` (on every offloaded layer), ms/image of the exact and
  the approximate model and their ratio, at batch 1 (``b1``, the model's own batch) and at the
  evaluation batch ``--approx-batch`` (default 64, on the symbolic-batch copy), with the kernel
  paths the layers ran on; with ``--avx2`` on an AVX-512 host also ``b1_avx2`` / ``b64_avx2``, the
  approximate kernels compiled for an AVX2-only CPU; a multiplier that does not fit the model
  (e.g. unsigned on a signed model) gives its ``error``;
* ``agreement``: top-1 agreement, share within one output step and the largest difference in
  steps, on ``--images`` evaluation images, for the default path (exact layers inside the
  onnxruntime host segments) and the kernel path (``exact_layers="kernels"``: every offloaded
  layer on the project's integer kernels). Times are for the default path.

A model that fails to compile is reported with its error instead. Ratios are what matter;
absolute times depend on the machine and its load (DESIGN §2).

Usage::

    PYTHONPATH=$PWD python benchmarks/bench_zoo.py [--models resnet_trained,vit_trained | --all]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best_of(fn: Any, repeat: int, warm: bool = True) -> float:
    """Best wall time of ``repeat`` calls (after one warm-up call if ``warm``), in seconds."""
    if warm:
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def symbolic_batch(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph input and outputs have a symbolic first dimension ``N``."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for vi in [*out.graph.input, *out.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "N"
    del out.graph.value_info[:]  # batch-1 shapes recorded by the exporter would contradict it
    return out


def timing(model: Any, sess: Any, x: np.ndarray, repeat: int) -> dict[str, float]:
    """Per-image times (ms) of our run and onnxruntime's on the batch ``x``, and their ratio.

    The two are timed alternately (best of ``repeat`` each) so load from other processes on the
    machine hits both alike.
    """
    name = sess.get_inputs()[0].name
    ours_fn, ref_fn = (lambda: model.run(x)), (lambda: sess.run(None, {name: x}))
    ours_fn(), ref_fn()  # warm-up
    ours, ref = float("inf"), float("inf")
    for _ in range(repeat):
        ours = min(ours, best_of(ours_fn, 1, warm=False))
        ref = min(ref, best_of(ref_fn, 1, warm=False))
    ours, ref = ours / len(x) * 1e3, ref / len(x) * 1e3
    return {"ours_ms": round(ours, 3), "onnxruntime_ms": round(ref, 3), "ratio": round(ours / ref, 2)}


def offloaded_share(model: Any, macs_per_image: int) -> float:
    """MACs of the offloaded layers (per image) over the model's analytic MACs."""
    offloaded = sum(s.shape.macs for s in model.schedules.values()) / model.batch_size
    return round(offloaded / macs_per_image, 4)


def approx_figures(exact: Any, approx: Any, x: np.ndarray, repeat: int) -> dict[str, Any]:
    """Per-image ms of the exact and the approximate model on the batch ``x`` (timed alternately in
    this process, best of ``repeat``), their ratio and the approximate layers' kernel paths."""
    exact.run(x), approx.run(x)  # warm-up: kernel compilation, per-layer plans and tables
    te, ta = float("inf"), float("inf")
    for _ in range(repeat):
        te = min(te, best_of(lambda: exact.run(x), 1, warm=False))
        ta = min(ta, best_of(lambda: approx.run(x), 1, warm=False))
    n = len(x)
    return {
        "batch": n,
        "exact_ms_per_image": round(te / n * 1e3, 3),
        "approx_ms_per_image": round(ta / n * 1e3, 3),
        "ratio": round(ta / te, 2),
        "paths": sorted({p.kernel_path for p in approx.programs.values()}),
    }


def bench_approx(
    proto: onnx.ModelProto,
    big: onnx.ModelProto | None,
    calib: np.ndarray | None,
    x: np.ndarray,
    batch1: int,
    big_batch: int,
    multipliers: list[str],
    repeat: int,
    avx2: Any = None,
) -> dict[str, Any]:
    """An approximate multiplier on every layer vs the exact path, per image, at the model's own batch
    (``b1``) and at ``big_batch`` (the symbolic-batch copy ``big``; ``None`` when there is none); with
    ``avx2`` (a CPU description) also with the approximate kernels compiled for it (``*_avx2``)."""
    from approxtvm.compiler.driver import compile_onnx
    from approxtvm.errors import ApproxTvmError
    from approxtvm.targets.vacc.config import ApproxPolicy

    out: dict[str, Any] = {}
    exact1 = compile_onnx(proto, calibration=calib, batch_size=batch1)
    exact_big = None if big is None else compile_onnx(big, calibration=calib, batch_size=big_batch)
    for spec in multipliers:
        entry: dict[str, Any] = {}
        for tag, force in [("", None)] + ([("_avx2", avx2)] if avx2 is not None else []):
            try:
                a1 = compile_onnx(proto, ApproxPolicy.uniform(spec), calibration=calib, batch_size=batch1)
            except ApproxTvmError as exc:  # e.g. an unsigned multiplier on a signed model
                entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                break
            entry[f"b1{tag}"] = approx_figures(exact1, _forced(a1, force), x[:batch1], repeat)
            if exact_big is not None and len(x) >= big_batch:
                ab = compile_onnx(big, ApproxPolicy.uniform(spec), calibration=calib, batch_size=big_batch)
                fig = approx_figures(exact_big, _forced(ab, force), x[:big_batch], max(2, repeat // 2))
                entry[f"b{big_batch}{tag}"] = fig
        out[spec] = entry
    return out


def _forced(model: Any, cpu: Any) -> Any:
    """``model`` with its kernels compiled for ``cpu`` (``None``: the host), set before any is built."""
    if cpu is not None:
        next(iter(model.programs.values())).cache.host_cpu = cpu  # one cache per model
    return model


def bench_model(
    name: str,
    images: int,
    repeat: int,
    threads: int,
    multipliers: list[str] | None = None,
    approx_batch: int = 64,
    avx2: Any = None,
) -> dict[str, Any]:
    """Every figure of one zoo model (or its error)."""
    from approxtvm.compiler.driver import compile_onnx
    from tests import zoo_models

    e = zoo_models.entry(name)
    proto = zoo_models.load(name)
    calib = None if e.quantization else zoo_models.calibration_inputs(e)
    res: dict[str, Any] = {"arch": e.arch, "exporter": e.exporter, "weights": e.weights, "macs": e.macs_per_image}
    batch1 = e.fixed_batch or 1
    t0 = time.perf_counter()
    try:
        model = compile_onnx(proto, calibration=calib, batch_size=batch1)
    except Exception as exc:  # reported, the other models still run
        res["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return res
    res["compile_s"] = round(time.perf_counter() - t0, 2)
    res["offloaded_mac_share"] = offloaded_share(model, e.macs_per_image)
    x = zoo_models.eval_inputs(e, max(images, 32))
    sess = zoo_models.ort_session(model.proto, threads)
    ref = zoo_models.onnxruntime_outputs(model.proto, x[:images], batch1)
    step = zoo_models.output_step(model.proto, model.output_names[0])
    res["agreement"] = {"images": images}
    for path in ("onnxruntime", "kernels"):  # where exact layers compute (CompiledModel.exact_layers)
        model.exact_layers = path
        fig = zoo_models.compare(model.run(x[:images]).outputs[model.output_names[0]], ref, step)
        res["agreement"]["default" if path == "onnxruntime" else "kernels"] = {
            "top1_equal": fig.top1_equal,
            "within_one_step": round(fig.within_one_step, 4),
            "max_steps": round(fig.max_steps, 2),
        }
    model.exact_layers = "onnxruntime"
    res["b1"] = timing(model, sess, x[:batch1], repeat * 4)
    if e.fixed_batch not in (None, 1):
        res["b32"] = None
        res["b32_reason"] = f"the model fixes a batch of {e.fixed_batch}"
        if multipliers:
            res["approx"] = bench_approx(proto, None, calib, x, batch1, approx_batch, multipliers, repeat, avx2)
        return res
    sibling = f"{name}_symbatch"  # the same weights exported with a symbolic batch, when the zoo has it
    if e.fixed_batch is None:
        big = proto
    elif sibling in zoo_models.names():
        big = zoo_models.load(sibling)
    else:
        big = symbolic_batch(proto)
    try:
        check = zoo_models.onnxruntime_outputs(big, x[:4], 4)
        if not np.allclose(check, zoo_models.onnxruntime_outputs(proto, x[:4], batch1), atol=1e-4):
            raise ValueError("the symbolic-batch copy computes different outputs")
        model32 = compile_onnx(big, calibration=calib, batch_size=32)
    except Exception as exc:
        res["b32"] = None
        res["b32_reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        big = None
    else:
        res["b32"] = timing(model32, zoo_models.ort_session(model32.proto, threads), x[:32], repeat * 4)
    if multipliers:
        xa = zoo_models.eval_inputs(e, max(approx_batch, batch1))
        res["approx"] = bench_approx(proto, big, calib, xa, batch1, approx_batch, multipliers, repeat, avx2)
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: every *_trained)")
    ap.add_argument("--all", action="store_true", help="every zoo model")
    ap.add_argument("--images", type=int, default=100, help="evaluation images for the agreement figures")
    ap.add_argument("--repeat", type=int, default=5, help="timing rounds ×4 (best of, alternating)")
    ap.add_argument(
        "--threads", type=int, default=0, help="reference onnxruntime threads (0: its default, all cores, as our host)"
    )
    ap.add_argument(
        "--approx",
        default="mitchell;bam:h=4,v=0",
        help="multipliers put on every layer for the approximate timings (';'-separated; '' = none)",
    )
    ap.add_argument("--approx-batch", type=int, default=64, help="evaluation batch of the approximate timings")
    ap.add_argument(
        "--avx2",
        action="store_true",
        help="on an AVX-512 host, also time the approximate models with kernels compiled for AVX2 (haswell)",
    )
    args = ap.parse_args(argv)
    import dataclasses

    from approxtvm.runtime.kernels import detect_cpu
    from tests import zoo_models

    cpu = detect_cpu()
    avx2 = dataclasses.replace(cpu, llvm_cpu="haswell", avx512=False, vnni=False) if args.avx2 and cpu.avx512 else None

    if args.all:
        names = list(zoo_models.names())
    elif args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        for n in names:
            zoo_models.entry(n)  # unknown names fail before any work
    else:
        names = [e.name for e in zoo_models.entries() if e.name.endswith("_trained")]
    t0 = time.perf_counter()
    mults = [m.strip() for m in args.approx.split(";") if m.strip()]
    models = {n: bench_model(n, args.images, args.repeat, args.threads, mults, args.approx_batch, avx2) for n in names}
    ok = [m for m in models.values() if "error" not in m]
    summary = {
        "compiled": f"{len(ok)}/{len(models)}",
        "max_compile_s": max((m["compile_s"] for m in ok), default=None),
        "max_ratio_b1": max((m["b1"]["ratio"] for m in ok), default=None),
        "max_ratio_b32": max((m["b32"]["ratio"] for m in ok if m.get("b32")), default=None),
        "min_top1_equal_kernels": min((m["agreement"]["kernels"]["top1_equal"] for m in ok), default=None),
        "min_within_one_step_cnn_kernels": min(
            (m["agreement"]["kernels"]["within_one_step"] for m in ok if m["arch"] != "vit"), default=None
        ),
        "max_approx_ratio": {
            f"b{b}{tag}": max(
                (fig[f"b{b}{tag}"]["ratio"] for m in ok for fig in m.get("approx", {}).values() if f"b{b}{tag}" in fig),
                default=None,
            )
            for b in (1, args.approx_batch)
            for tag in ("", "_avx2")
            if tag == "" or avx2 is not None
        },
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    isa = "avx512" if cpu.avx512 else ("avx2" if cpu.avx2 else "generic")
    print(json.dumps({"benchmark": "zoo", "threads": args.threads, "isa": isa, "summary": summary, "models": models}))


if __name__ == "__main__":
    main()
