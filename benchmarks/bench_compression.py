"""Weight-compression benchmark on ResNet-50: encode time and footprint ratios per encoding.

Every Conv / Gemm weight of :func:`approxtvm.models.resnet50` (random He-init, seeded) is
quantized per tensor to uint8 (asymmetric, in numpy), cut into 64×C×R×S tiles (64×C for the
Gemm) and encoded. Configurations: the plain quantized weights, and 50 % / 80 % per-layer magnitude
pruning followed by 4-bit clustering. For each: footprint ratio (encoded bytes, metadata
included / dense bytes) per forced encoding and for ``auto``, the ``auto`` encode and decode
times (decode checked bit-exact), and how many tiles ``auto`` gave each encoding.

Prints one JSON line.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np

from approxtvm.models import resnet50
from approxtvm.models.zoo import initializer_arrays
from approxtvm.targets.vacc.compression import (
    ENCODINGS,
    CompressedWeights,
    cluster_codes,
    compress_layer,
    decompress_layer,
    prune_codes,
)

TILE_K = 64
CLUSTER_BITS = 4


def quantize_per_tensor(w: np.ndarray) -> tuple[np.ndarray, float, int]:
    """uint8 asymmetric per-tensor quantization (range includes 0, as ONNX QDQ): codes, scale, zp."""
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    return np.clip(np.rint(w / scale) + zp, 0, 255).astype(np.uint8), scale, zp


def _tile_shape(w: np.ndarray) -> tuple[int, ...]:
    return (TILE_K, *w.shape[1:])


def _encode_all(layers: list[tuple[np.ndarray, int]], mode: str) -> tuple[list[CompressedWeights], float]:
    t0 = time.perf_counter()
    out = [compress_layer(codes, _tile_shape(codes), zp, mode) for codes, zp in layers]
    return out, time.perf_counter() - t0


def bench_config(layers: list[tuple[np.ndarray, int]]) -> dict[str, object]:
    dense = sum(c.size for c, _ in layers)
    ratios: dict[str, float] = {}
    for mode in ENCODINGS:
        encoded, _ = _encode_all(layers, mode)
        ratios[mode] = round(sum(c.total_bytes for c in encoded) / dense, 4)
    auto, seconds = _encode_all(layers, "auto")
    ratios["auto"] = round(sum(c.total_bytes for c in auto) / dense, 4)
    t0 = time.perf_counter()
    exact = all(np.array_equal(decompress_layer(c), codes) for c, (codes, _) in zip(auto, layers, strict=True))
    decode_s = time.perf_counter() - t0
    tiles = Counter(e for c in auto for e in c.tile_encodings)
    return {
        "footprint_ratio": ratios,
        "auto_encode_s": round(seconds, 3),
        "auto_decode_s": round(decode_s, 3),
        "decode_exact": exact,
        "auto_tiles": dict(tiles),
        "metadata_fraction_auto": round(
            sum(c.metadata_bytes for c in auto) / max(sum(c.total_bytes for c in auto), 1), 4
        ),
    }


def main() -> None:
    weights = [w for w in initializer_arrays(resnet50()).values() if w.ndim in (2, 4)]
    quant = [quantize_per_tensor(w.astype(np.float32)) for w in weights]
    base = [(codes, zp) for codes, _, zp in quant]
    result: dict[str, object] = {
        "bench": "compression",
        "model": "resnet50",
        "layers": len(base),
        "weights": int(sum(c.size for c, _ in base)),
        "tile": f"{TILE_K}xCxRxS",
        "configs": {},
    }
    configs: dict[str, object] = {"quantized": bench_config(base)}
    transform_s: dict[str, float] = {}
    for sparsity in (0.5, 0.8):
        t0 = time.perf_counter()
        layers = [
            (cluster_codes(prune_codes(codes, zp, scale, sparsity), CLUSTER_BITS, zp), zp) for codes, scale, zp in quant
        ]
        name = f"prune{int(sparsity * 100)}_cluster{CLUSTER_BITS}"
        transform_s[name] = round(time.perf_counter() - t0, 3)
        configs[name] = bench_config(layers)
    result["configs"] = configs
    result["prune_cluster_s"] = transform_s
    result["encode_all_auto_s_max"] = max(c["auto_encode_s"] for c in configs.values())  # type: ignore[index]
    result["runtime"] = runtime_overhead()
    print(json.dumps(result))


def runtime_overhead() -> dict[str, object]:
    """Run time of the compiled shipped model with compressed vs uncompressed (same) weights.

    Tiles are decoded once when the model is built (the PE decoder is modelled in energy, not
    re-run per inference), so the per-run overhead should be ~1×; compile time includes encoding.
    """
    from approxtvm.compiler.driver import compile_onnx
    from approxtvm.compiler.weight_transforms import WeightTransforms
    from approxtvm.models import get_model, load_dataset
    from approxtvm.targets.vacc.config import ApproxPolicy

    test, train = load_dataset("digits:test"), load_dataset("digits:train")
    wt = WeightTransforms(sparsity=0.5, prune_scope="global", cluster_bits=4)
    out: dict[str, object] = {}
    models = {}
    for name, pol in (("plain", ApproxPolicy.exact()), ("compressed", ApproxPolicy.uniform(compression="auto"))):
        t0 = time.perf_counter()
        models[name] = compile_onnx(
            get_model("digits_cnn"), pol, calibration=train.x[:128], batch_size=8, weight_transforms=wt
        )
        out[f"{name}_compile_s"] = round(time.perf_counter() - t0, 3)
    times: dict[str, list[float]] = {"plain": [], "compressed": []}
    for _ in range(5):  # interleaved, medians: the machine's load drifts
        for name, m in models.items():
            t0 = time.perf_counter()
            m.run(test.x)
            times[name].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    out["digits_cnn_360_images_s"] = {k: round(v, 4) for k, v in med.items()}
    out["run_overhead_ratio"] = round(med["compressed"] / med["plain"], 3)
    return out


if __name__ == "__main__":
    main()
