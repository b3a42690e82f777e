"""Mapper benchmark: map + estimate ResNet-18/50 on simba_like, energy next to ZigZag's; ONE JSON line.

Measures, per network and with a cold mapper cache, the seconds to map every conv/dense layer and
price it (``map_layer`` + ``analytic_counts`` + ``energy_of``), and separately the seconds of the
independent tile walk (``simulate_counts``). Reports pJ/MAC with and without the NoC, and per
component next to ZigZag 3.9.1 on the same chiplet (DESIGN §4). The ZigZag results are read at
benchmark time from ``--zigzag-dir`` (default: ``../shared/zigzag-reference`` beside the repository,
or ``$ZIGZAG_REFERENCE``); they are development data, the product never reads them.

Goals: ResNet-50 ≤ 5 s; total without NoC within ±25 % of ZigZag (2.29 / 2.36 pJ/MAC).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.energy import COMPONENTS, EnergyReport, energy_of
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import analytic_counts, clear_mapper_cache, map_layer

#: ZigZag memory level -> our energy component (ZigZag has no NoC).
ZIGZAG_LEVEL = {
    "weight_reg": "register",
    "weight_buf": "weight_buffer",
    "input_buf": "input_buffer",
    "accum_buf": "accum_buffer",
    "global_buf": "global_buffer",
    "dram": "dram",
}


def _zigzag(directory: Path, net: str) -> dict[str, Any] | None:
    path = directory / "results" / f"{net}_simba_energy.json"
    if not path.is_file():
        return None
    z = json.loads(path.read_text())
    macs = z["total_macs"]
    comp = {"mac": z["mac_energy_pJ"] / macs}
    for level, pj in z["energy_by_level_pJ"].items():
        comp[ZIGZAG_LEVEL[level]] = pj / macs
    return {
        "pj_per_mac": z["pJ_per_MAC"],
        "by_component_pj_per_mac": comp,
        "wall_s": z["wall_s_total"],
        "latency_cycles": z["latency_cycles"],
    }


def _run(net: str, spec: AcceleratorSpec, objective: str = "energy") -> tuple[dict[str, Any], EnergyReport]:
    layers = resnet_layer_shapes(net)
    clear_mapper_cache()
    t0 = time.perf_counter()
    mappings = [map_layer(shape, spec, objective) for _, shape in layers]
    report = EnergyReport(
        tuple(energy_of(name, analytic_counts(m, spec), spec) for (name, _), m in zip(layers, mappings, strict=True))
    )
    map_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = EnergyReport(
        tuple(energy_of(name, simulate_counts(m, spec), spec) for (name, _), m in zip(layers, mappings, strict=True))
    )
    sim_s = time.perf_counter() - t0
    comps = report.by_component()
    noc = comps["noc_link"] + comps["noc_router"]
    macs = report.macs
    return {
        "layers": len(layers),
        "unique_shapes": len({s for _, s in layers}),
        "macs": macs,
        "map_and_estimate_s": round(map_s, 3),
        "simulate_counts_s": round(sim_s, 3),
        "simulated_equals_analytic": sim == report,
        "pj_per_mac": report.pj_per_mac,
        "pj_per_mac_without_noc": (report.total_pj - noc) / macs,
        "by_component_pj_per_mac": {c: comps[c] / macs for c in COMPONENTS},
        "latency_cycles": report.latency_cycles,
        "utilisation": macs / (report.latency_cycles * spec.pe_array.num_macs),
    }, report


def main() -> None:
    default_dir = Path(
        os.environ.get("ZIGZAG_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "zigzag-reference")
    )
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zigzag-dir", type=Path, default=default_dir)
    ap.add_argument("--spec", default="simba_like")
    args = ap.parse_args()
    spec = AcceleratorSpec.load(args.spec)
    out: dict[str, Any] = {
        "bench": "mapper",
        "spec": spec.name,
        "python": platform.python_version(),
        "goals": {"resnet50_map_s_max": 5.0, "pj_per_mac_without_noc_tolerance": 0.25},
    }
    for net in ("resnet18", "resnet50"):
        ours, _ = _run(net, spec)
        z = _zigzag(args.zigzag_dir, net)
        if z is not None:
            ours["zigzag"] = z
            ours["ratio_without_noc_vs_zigzag"] = ours["pj_per_mac_without_noc"] / z["pj_per_mac"]
            ours["within_25pct"] = abs(ours["ratio_without_noc_vs_zigzag"] - 1) <= 0.25
            ours["component_ratio_vs_zigzag"] = {
                c: (ours["by_component_pj_per_mac"][c] / v if v else None)
                for c, v in z["by_component_pj_per_mac"].items()
            }
            ours["speedup_vs_zigzag"] = z["wall_s"] / ours["map_and_estimate_s"]
        edp, _ = _run(net, spec, "edp")
        ours["objective_edp"] = {
            k: edp[k]
            for k in (
                "map_and_estimate_s",
                "pj_per_mac",
                "pj_per_mac_without_noc",
                "latency_cycles",
                "utilisation",
            )
        }
        out[net] = ours
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
