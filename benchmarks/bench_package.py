"""Package mapper benchmark: map all of ResNet-50 across Simba's 36 chiplets; ONE JSON line.

Cold caches. Times, in one process, (a) the chiplet mapper on every layer on one chiplet
(``map_layer``, objective edp) and (b) the package mapper on simba_package_6x6 (``map_package``:
partition search + a chiplet mapping per kept sub-layer + package counts), and reports their
ratio (absolute seconds are noisy on a shared machine; the ratio is what the code controls).

Goal: ResNet-50 on 36 chiplets ≤ 10 s.
"""

from __future__ import annotations

import json
import os
import platform
import time

from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import clear_mapper_cache, map_layer
from approxtvm.targets.vacc.package_counts import package_counts
from approxtvm.targets.vacc.package_mapper import clear_package_cache, map_package


def main() -> None:
    layers = [s for _, s in resnet_layer_shapes("resnet50")]
    chip = AcceleratorSpec.load("simba_like")
    six = AcceleratorSpec.load("simba_package_6x6")
    clear_mapper_cache()
    t0 = time.perf_counter()
    for s in layers:
        map_layer(s, chip, "edp")
    chip_s = time.perf_counter() - t0
    clear_mapper_cache()
    clear_package_cache()
    t0 = time.perf_counter()
    pms = [map_package(s, six, six.mapping_objective) for s in layers]
    counts = [package_counts(pm, six) for pm in pms]
    pkg_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "bench": "package",
                "net": "resnet50",
                "layers": len(layers),
                "unique_shapes": len(set(layers)),
                "chiplets": six.package.num_chiplets,
                "objective": six.mapping_objective,
                "chiplet_map_s": round(chip_s, 3),
                "package_map_s": round(pkg_s, 3),
                "package_over_chiplet": round(pkg_s / chip_s, 3),
                "goal_s": 10.0,
                "meets_goal": pkg_s <= 10.0,
                "split_layers": sum(1 for pm in pms if pm.partition.splits),
                "latency_cycles": sum(c.latency_cycles for c in counts),
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
