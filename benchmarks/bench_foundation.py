"""Foundation benchmark: compile time, runtime per image vs onnxruntime (same QDQ model), peak memory.

Prints one JSON line. Times are medians; ratios are measured in the same process and run, since
absolute times are noisy on shared 2-core machines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

from approxtvm.compiler import frontend
from approxtvm.compiler.driver import compile_onnx
from approxtvm.models import calibration_data, get_model, load_dataset
from approxtvm.runtime.kernels import detect_cpu


def _median_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up (kernel compilation, ORT session creation)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_model(name: str, proto, x: np.ndarray, repeat: int, batch: int = 1) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Per-image time of our exact path and of onnxruntime on the same QDQ model, same batch."""
    t0 = time.perf_counter()
    model = compile_onnx(proto, batch_size=batch)
    compile_s = time.perf_counter() - t0
    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    xb = x[:batch]
    ours = _median_time(lambda: model.run(xb), repeat) / batch
    ref = _median_time(lambda: sess.run(None, {model.input_name: xb}), repeat) / batch
    tag = name if batch == 1 else f"{name}_batch{batch}"
    return {
        f"{tag}_compile_s": round(compile_s, 3),
        f"{tag}_ms_per_image": round(1e3 * ours, 4),
        f"{tag}_ort_ms_per_image": round(1e3 * ref, 4),
        f"{tag}_ratio_vs_ort": round(ours / ref, 2),
    }


def table_kernel_isa() -> dict[str, object]:
    """G MAC/s of the TVM table kernels on a ResNet-50 stage-3 layer (256→256, 3×3, 14×14; its
    per-weight tables are not cached, as in a ResNet-50 run), compiled for the host and, when the
    host has AVX-512, also for an AVX2-only target (``haswell``) in the same process: ``table``
    (the automatic choice: the register-LUT kernel on AVX-512, per-weight tables built per call
    elsewhere), ``table_gather`` and ``table_perm`` (AVX-512 only); plus the exact onnxruntime conv
    of the same layer for the ratio."""
    import dataclasses

    from approxtvm.runtime.kernels import KernelCache, conv2d_products
    from approxtvm.runtime.multipliers import resolve_multiplier

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 256, 14, 14)).astype(np.uint8)
    w = rng.integers(0, 256, (256, 256, 3, 3)).astype(np.uint8)
    macs = 256 * 256 * 9 * 14 * 14
    mult, exact = resolve_multiplier("mitchell"), resolve_multiplier("exact")
    host = detect_cpu()
    out: dict[str, object] = {}
    ecache = KernelCache()  # one onnxruntime session, reused
    t_exact = _median_time(lambda: conv2d_products(x, w, exact, pads=(1, 1, 1, 1), cache=ecache), 5)
    out["layer_exact_gmacs"] = round(macs / t_exact / 1e9, 2)
    cpus = {"host": host}
    if host.avx512:
        cpus["avx2"] = dataclasses.replace(host, llvm_cpu="haswell", avx512=False, vnni=False)
    for tag, cpu in cpus.items():
        cache = KernelCache(host_cpu=cpu, table_cache_max_bytes=0)  # tables built per call
        kernels = ("table", "table_gather") + (("table_perm",) if cpu.avx512 else ())
        for kernel in kernels:
            t = _median_time(lambda c=cache, k=kernel: conv2d_products(x, w, mult, pads=(1,) * 4, path=k, cache=c), 3)
            out[f"layer_{kernel}_{tag}_gmacs"] = round(macs / t / 1e9, 2)
            out[f"layer_{kernel}_{tag}_x_exact"] = round(t / t_exact, 1)
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    cpu = detect_cpu()
    isa = "avx512" if cpu.avx512 else ("avx2" if cpu.avx2 else "generic")
    out: dict[str, object] = {"cpu": cpu.to_dict(), "isa": isa, "load_avg_1min_start": os.getloadavg()[0]}
    digits = load_dataset("digits:train")
    for name in ("digits_cnn", "digits_resnet"):
        q = frontend.quantize(get_model(name), digits.x[:128])
        out.update(bench_model(name, q, load_dataset("digits:test").x, repeat=20))
        out.update(bench_model(name, q, load_dataset("digits:test").x, repeat=10, batch=64))
    if not quick:
        r50 = get_model("resnet50")
        t0 = time.perf_counter()
        q50 = frontend.quantize(r50, calibration_data(r50, n=4))
        out["resnet50_quantize_s"] = round(time.perf_counter() - t0, 2)
        x50 = calibration_data(r50, n=1, seed=1)
        out.update(bench_model("resnet50", q50, x50, repeat=5))
        # approximate multipliers on every layer: an arbitrary-table one (TVM table kernels) and
        # low-rank ones with 5 / 3 / 1 byte terms (BAM h=4, BAM h=2, operand truncation); ratios to
        # our exact path measured alternately in this run (wall and process CPU time)
        from approxtvm.runtime.kernels import KernelCache
        from approxtvm.runtime.shared_caches import SharedCaches
        from approxtvm.targets.vacc.config import ApproxPolicy

        exact50 = compile_onnx(q50)
        cpu = detect_cpu()
        runs = [
            ("table_mitchell", "mitchell", None),
            ("lowrank_bam_h4", "bam:h=4,v=0", None),
            ("lowrank_bam_h2", "bam:h=2,v=0", None),
            ("lowrank_optrunc", "optrunc:ka=2,kb=2", None),
        ]
        if cpu.vnni:  # the low-rank GEMMs under the int8 policy of a CPU without VNNI (onnxruntime's
            # own kernels stay this host's: only our choice of int8 vs uint8 blocks changes)
            runs.append(("lowrank_bam_h4_novnni", "bam:h=4,v=0", dataclasses.replace(cpu, vnni=False)))
        if cpu.avx512:  # the table path with its kernels compiled for an AVX2-only CPU (the CI kind)
            runs.append(("table_mitchell_avx2", "mitchell", dataclasses.replace(cpu, llvm_cpu="haswell", avx512=False)))
        for tag, spec, force_cpu in runs:
            t0 = time.perf_counter()
            # a forced CPU from the start: compiling decides the layers that run inside the host graph
            # (and their weight kind) with the model's kernel cache
            caches = None if force_cpu is None else SharedCaches(kernels=KernelCache(host_cpu=force_cpu))
            approx = compile_onnx(q50, ApproxPolicy.uniform(spec), caches=caches)
            out[f"resnet50_{tag}_compile_s"] = round(time.perf_counter() - t0, 2)
            paths = sorted({p.kernel_path for p in approx.programs.values()})
            t0 = time.perf_counter()
            approx.run(x50)  # first run: kernel compilation and per-layer tables
            out[f"resnet50_{tag}_first_run_s"] = round(time.perf_counter() - t0, 2)
            # exact and approximate timed alternately (best of 3 each): same load for both
            t_ap, t_ex, c_ap, c_ex = (float("inf"),) * 4
            for _ in range(3):
                t0, c0 = time.perf_counter(), time.process_time()
                approx.run(x50)
                t_ap, c_ap = min(t_ap, time.perf_counter() - t0), min(c_ap, time.process_time() - c0)
                t0, c0 = time.perf_counter(), time.process_time()
                exact50.run(x50)
                t_ex, c_ex = min(t_ex, time.perf_counter() - t0), min(c_ex, time.process_time() - c0)
            out[f"resnet50_{tag}_s_per_image"] = round(t_ap, 3)
            out[f"resnet50_{tag}_exact_s_per_image"] = round(t_ex, 4)
            out[f"resnet50_{tag}_paths"] = paths
            if approx._ort is not None:  # layers inside the host graph (one onnxruntime session)
                out[f"resnet50_{tag}_fused_layers"] = len(approx._ort.fused_layers())
            out[f"resnet50_{tag}_llvm_cpu"] = next(iter(approx.programs.values())).cache.cpu.llvm_cpu
            out[f"resnet50_{tag}_x_exact"] = round(t_ap / t_ex, 2)
            out[f"resnet50_{tag}_cpu_x_exact"] = round(c_ap / c_ex, 2)  # process CPU time, both runs
        out.update(table_kernel_isa())
    out["load_avg_1min_end"] = os.getloadavg()[0]
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
