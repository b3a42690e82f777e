"""Depthwise 3×3 and ViT Linear layers through every multiplier path, vs onnxruntime (same process).

Used by ``bench_multipliers.py`` (its ``modern_layers`` entry); runnable alone, printing ONE JSON line.

* depthwise: MobileNet-V2's 144-channel 3×3 depthwise conv at 56×56, pad 1, batch 1 (4.06 M MACs);
  onnxruntime ``ConvInteger(group = 144)`` vs our exact / low-rank (BAM h=4) / table paths.
* ViT Linear: ViT-B/16's MLP fc1, ``[1, 197, 768] × [768, 3072]`` (465 M MACs) as a dense layer over
  the flattened tokens; onnxruntime ``MatMulInteger`` vs our paths.
* attention: ``QKᵀ`` of ViT-B/16 (12 heads, 197 tokens, 64 dims; 29.8 M MACs), both operands
  activations; onnxruntime ``MatMulInteger`` (batched) vs our paths.

``isa`` says which instruction set the table kernels ran with; on an AVX-512 host the table (and
depthwise low-rank) figures are also measured with the kernels compiled for an AVX2-only CPU
(``*_avx2``), the CI machines' kind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable

import numpy as np

from approxtvm.runtime.kernels import KernelCache, LayerStore, dense_products, detect_cpu
from approxtvm.runtime.kernels.act_matmul import matmul_products
from approxtvm.runtime.kernels.grouped import grouped_conv2d_products
from approxtvm.runtime.multipliers import Multiplier, family_multiplier


def _best(fn: Callable[[], object], repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def _session(node: object, inputs: list[tuple[str, list[int]]], inits: list[object], threads: int) -> object:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [node],
        "bench",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def measure(repeat: int = 10, threads: int | None = None, check: bool = False) -> dict[str, object]:
    """Times (ms) and ratios to onnxruntime of the three layers on each path."""
    from onnx import helper, numpy_helper

    threads = threads or os.cpu_count() or 1
    rng = np.random.default_rng(0)
    arbitrary = Multiplier("random", rng.integers(0, 65536, (256, 256)).astype(np.int32), False)
    mults = {"exact": family_multiplier("exact"), "lowrank": family_multiplier("bam:h=4,v=0"), "table": arbitrary}
    cache = KernelCache()
    cpu = detect_cpu()
    out: dict[str, object] = {"isa": "avx512" if cpu.avx512 else ("avx2" if cpu.avx2 else "generic")}
    if cpu.avx512:  # the same table kernels compiled for an AVX2-only CPU, measured in this process
        avx2 = KernelCache(host_cpu=dataclasses.replace(cpu, llvm_cpu="haswell", avx512=False, vnni=False))
        mults_avx2 = {"table_avx2": (arbitrary, avx2), "lowrank_avx2": (mults["lowrank"], avx2)}
    else:
        mults_avx2 = {}

    # depthwise 3×3
    c, h = 144, 56
    x = rng.integers(0, 256, (1, c, h, h), dtype=np.uint8)
    w = rng.integers(0, 256, (c, 1, 3, 3), dtype=np.uint8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz"], ["y"], pads=[1, 1, 1, 1], group=c)
    sess = _session(
        node,
        [("x", [1, c, h, h])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(7, np.uint8), "xz")],
        threads,
    )
    t_ort = _best(lambda: sess.run(None, {"x": x}), repeat)
    # one store per path, as a compiled layer keeps (its prepared kernel, weight-side data)
    stores = {tag: LayerStore.for_weights(w) for tag in [*mults, *mults_avx2]}
    dw: dict[str, object] = {"macs": c * h * h * 9, "ms": {"ort_conv_integer": round(t_ort * 1e3, 3)}}
    for path, m in mults.items():

        def run(m: Multiplier = m, path: str = path) -> np.ndarray:
            return grouped_conv2d_products(
                x, w, m, groups=c, pads=(1, 1, 1, 1), pad_value=7, path=path, cache=cache, store=stores[path]
            )

        t = _best(run, repeat)
        dw["ms"][path] = round(t * 1e3, 3)  # type: ignore[index]
        dw[f"{path}_over_ort"] = round(t / t_ort, 2)
        if check:
            ref = grouped_conv2d_products(x, w, m, groups=c, pads=(1, 1, 1, 1), pad_value=7, path="reference")
            dw[f"{path}_bit_exact"] = bool(np.array_equal(run(), ref))
    for tag, (m, c2) in mults_avx2.items():
        path = tag.split("_")[0]

        def run2(m: Multiplier = m, c2: KernelCache = c2, path: str = path, tag: str = tag) -> np.ndarray:
            return grouped_conv2d_products(
                x, w, m, groups=c, pads=(1, 1, 1, 1), pad_value=7, path=path, cache=c2, store=stores[tag]
            )

        t = _best(run2, repeat)
        dw["ms"][tag] = round(t * 1e3, 3)  # type: ignore[index]
        dw[f"{tag}_over_ort"] = round(t / t_ort, 2)
    out["depthwise_3x3_144x56x56"] = dw

    # ViT-B/16 MLP fc1 over 197 tokens
    t_, d, k = 197, 768, 3072
    xa = rng.integers(0, 256, (t_, d), dtype=np.uint8)
    wk = rng.integers(0, 256, (k, d), dtype=np.uint8)
    node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
    sess2 = _session(node, [("x", [t_, d])], [numpy_helper.from_array(np.ascontiguousarray(wk.T), "w")], threads)
    t_ort2 = _best(lambda: sess2.run(None, {"x": xa}), repeat)
    lin: dict[str, object] = {"macs": t_ * d * k, "ms": {"ort_matmul_integer": round(t_ort2 * 1e3, 3)}}
    for path, m in mults.items():
        st_ = LayerStore.for_weights(wk)
        t = _best(
            lambda m=m, path=path, st_=st_: dense_products(xa, wk, m, path=path, cache=cache, store=st_),
            max(2, repeat // 3),
        )
        lin["ms"][path] = round(t * 1e3, 3)  # type: ignore[index]
        lin[f"{path}_over_ort"] = round(t / t_ort2, 2)
    if mults_avx2:
        m, c2 = mults_avx2["table_avx2"]
        st2 = LayerStore.for_weights(wk)
        t = _best(lambda: dense_products(xa, wk, m, path="table", cache=c2, store=st2), max(2, repeat // 3))
        lin["ms"]["table_avx2"] = round(t * 1e3, 3)  # type: ignore[index]
        lin["table_avx2_over_ort"] = round(t / t_ort2, 2)
    out["vit_linear_197x768x3072"] = lin

    # attention QKᵀ, 12 heads
    heads, dh = 12, 64
    q = rng.integers(0, 256, (1, heads, t_, dh), dtype=np.uint8)
    kt = rng.integers(0, 256, (1, heads, dh, t_), dtype=np.uint8)
    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    sess3 = _session(node, [("a", list(q.shape)), ("b", list(kt.shape))], [], threads)
    t_ort3 = _best(lambda: sess3.run(None, {"a": q, "b": kt}), repeat)
    att: dict[str, object] = {"macs": heads * t_ * t_ * dh, "ms": {"ort_matmul_integer": round(t_ort3 * 1e3, 3)}}
    for path, m in mults.items():
        t = _best(lambda m=m, path=path: matmul_products(q, kt, m, path=path, cache=cache), max(2, repeat // 3))
        att["ms"][path] = round(t * 1e3, 3)  # type: ignore[index]
        att[f"{path}_over_ort"] = round(t / t_ort3, 2)
    out["attention_qk_12x197x64"] = att
    return out


if __name__ == "__main__":
    print(json.dumps(measure(check=True)))
