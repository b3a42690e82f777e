"""Mapper time per unique layer shape, cold cache: depthwise/grouped convs, transformer Linear and
attention MatMuls (the modern-layer shapes), against the mean over ResNet-18's unique conv shapes in
the same process. Prints one JSON line (milliseconds per shape and objective; goal 50 ms)."""

from __future__ import annotations

import json
import os
import time

from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import clear_mapper_cache, map_layer
from approxtvm.targets.vacc.workload import LayerShape

SHAPES = {
    "dw3x3_144x56x56": LayerShape.conv2d(1, 144, 144, 56, 56, 3, 3, pads=(1, 1, 1, 1), groups=144),
    "dw3x3_960x7x7": LayerShape.conv2d(1, 960, 960, 7, 7, 3, 3, pads=(1, 1, 1, 1), groups=960),
    "dw5x5_240x28x28_s2": LayerShape.conv2d(1, 240, 240, 28, 28, 5, 5, strides=(2, 2), pads=(2, 2, 2, 2), groups=240),
    "grouped_g56_448x14x14": LayerShape.conv2d(1, 448, 448, 14, 14, 3, 3, pads=(1, 1, 1, 1), groups=56),
    "vit_fc1_197x768x3072": LayerShape.dense(197, 3072, 768),
    "vit_qkv_197x768x2304": LayerShape.dense(197, 2304, 768),
    "attn_qk_12x197x197x64": LayerShape.matmul(12, 197, 197, 64),
    "attn_av_12x197x64x197": LayerShape.matmul(12, 197, 64, 197),
}


def _cold_ms(shape: LayerShape, spec: AcceleratorSpec, objective: str) -> float:
    clear_mapper_cache()
    t0 = time.perf_counter()
    map_layer(shape, spec, objective)
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    spec = AcceleratorSpec.load("simba_like")
    out: dict[str, object] = {"bench": "mapper_shapes", "spec": spec.name, "goal_ms": 50.0}
    per: dict[str, float] = {}
    for name, shape in SHAPES.items():
        for objective in ("energy", "edp"):
            per[f"{name}/{objective}"] = round(min(_cold_ms(shape, spec, objective) for _ in range(3)), 1)
    out["ms"] = per
    out["max_ms"] = max(per.values())
    out["meets_goal"] = out["max_ms"] <= 50.0
    unique = list(dict.fromkeys(s for _, s in resnet_layer_shapes("resnet18")))
    out["resnet18_unique_mean_ms"] = round(sum(_cold_ms(s, spec, "energy") for s in unique) / len(unique), 1)
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
