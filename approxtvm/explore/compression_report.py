"""Compression report for one configuration: footprint, bytes moved per level, energy and accuracy
before and after (DESIGN §6, issue "weight compression")."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel
from approxtvm.compiler.weight_transforms import WeightTransforms
from approxtvm.explore.evaluate import Evaluation, evaluate
from approxtvm.explore.plots import plot_energy_breakdown
from approxtvm.models.datasets import Dataset
from approxtvm.runtime.counting import simulate_counts
from approxtvm.targets.vacc.config import ApproxPolicy


def bytes_moved(model: CompiledModel) -> dict[str, float]:
    """Bytes read + written per storage level for one batch, weights at their stored size.

    Weight traffic in DRAM and on the NoC uses the layout's real (compressed) tile bytes; inside
    the PE weights are decoded, so the weight buffer holds dense 8-bit codes.
    """
    spec = model.spec
    out: dict[str, float] = {}
    for p in model.programs.values():
        sch = p.schedule
        counts = simulate_counts(sch.mapping, spec)
        dense = p.weight.size * spec.precision.bits("weight") / 8
        ratio = 1.0 if sch.config.compression == "none" else sch.weight_layout.total_bytes / dense
        for buf, tensor, reads, writes in counts.buffer_accesses:
            b = (reads + writes) * spec.precision.bits(tensor) / 8
            if tensor == "weight" and buf == "dram":
                b *= ratio
            out[buf] = out.get(buf, 0.0) + b
        for tensor, bits, _, _ in counts.noc_traffic:
            out["noc"] = out.get("noc", 0.0) + bits / 8 * (ratio if tensor == "weight" else 1.0)
    return out


@dataclass(frozen=True)
class CompressionSummary:
    """Before/after figures of one compression study."""

    baseline: Evaluation
    transformed: Evaluation
    compressed: Evaluation
    dense_weight_bytes: int
    compressed_weight_bytes: int
    bytes_before: dict[str, float]
    bytes_after: dict[str, float]
    encodings: dict[str, int]

    @property
    def footprint_ratio(self) -> float:
        """Compressed ÷ dense weight bytes (metadata included)."""
        return self.compressed_weight_bytes / self.dense_weight_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""

        def ev(e: Evaluation) -> dict[str, Any]:
            return {
                "top1": e.top1,
                "energy_per_inference_pj": e.energy_per_inference_pj,
                "by_component_pj": e.by_component_per_inference_pj(),
            }

        return {
            "baseline": ev(self.baseline),
            "pruned_clustered": ev(self.transformed),
            "compressed": ev(self.compressed),
            "dense_weight_bytes": self.dense_weight_bytes,
            "compressed_weight_bytes": self.compressed_weight_bytes,
            "footprint_ratio": self.footprint_ratio,
            "bytes_moved_before": self.bytes_before,
            "bytes_moved_after": self.bytes_after,
            "tile_encodings": self.encodings,
        }


def compression_study(
    model: onnx.ModelProto,
    policy: ApproxPolicy,
    transforms: WeightTransforms,
    data: Dataset,
    calibration: Any,
    *,
    mode: str = "auto",
    batch_size: int = 8,
) -> CompressionSummary:
    """Compile three variants of ``policy`` — as is, pruned/clustered, pruned/clustered and
    compressed — run them on ``data`` and compare (the last two must agree bit for bit)."""
    packed_policy = ApproxPolicy(replace(policy.default, compression=mode), policy.rules)
    kw = {"calibration": calibration, "batch_size": batch_size}
    base = compile_onnx(model, policy, **kw)
    trans = compile_onnx(model, policy, weight_transforms=transforms, **kw)
    packed = compile_onnx(model, packed_policy, weight_transforms=transforms, **kw)
    e_base, e_trans, e_packed = evaluate(base, data), evaluate(trans, data), evaluate(packed, data)
    dense = sum(p.weight.size for p in packed.programs.values())
    comp = sum(p.schedule.weight_layout.total_bytes for p in packed.programs.values())
    enc: dict[str, int] = {}
    for p in packed.programs.values():
        for e in p.schedule.weight_layout.encoding:
            enc[e] = enc.get(e, 0) + 1
    return CompressionSummary(e_base, e_trans, e_packed, dense, comp, bytes_moved(trans), bytes_moved(packed), enc)


def write_compression_report(summary: CompressionSummary, out: Path, title: str) -> Path:
    """Markdown report + JSON + a before/after energy bar chart."""
    out.mkdir(parents=True, exist_ok=True)
    d = summary.to_dict()
    (out / "compression.json").write_text(json.dumps(d, indent=1))
    names = ["baseline", "pruned_clustered", "compressed"]
    plot_energy_breakdown(out / "compression_energy.png", [(n, d[n]["by_component_pj"]) for n in names], title)
    lines = [
        f"# Weight compression: {title}",
        "",
        f"Footprint: {d['compressed_weight_bytes']:,} B of {d['dense_weight_bytes']:,} B dense "
        f"(ratio {d['footprint_ratio']:.3f}, metadata included); tile encodings {d['tile_encodings']}.",
        "",
        "| variant | top-1 % | energy/inference nJ | DRAM nJ | NoC nJ | decoder nJ |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        c = d[n]["by_component_pj"]
        top1 = d[n]["top1"]
        lines.append(
            f"| {n} | {'n/a' if top1 is None else f'{100 * top1:.2f}'} | "
            f"{d[n]['energy_per_inference_pj'] / 1e3:.2f} | {c.get('dram', 0) / 1e3:.2f} | "
            f"{(c.get('noc_link', 0) + c.get('noc_router', 0)) / 1e3:.2f} | {c.get('decoder', 0) / 1e3:.3f} |"
        )
    lines += [
        "",
        "Bytes moved per batch (weights at their stored size):",
        "",
        "| level | before | after |",
        "|---|---:|---:|",
    ]
    for lvl in sorted(set(d["bytes_moved_before"]) | set(d["bytes_moved_after"])):
        before, after = d["bytes_moved_before"].get(lvl, 0), d["bytes_moved_after"].get(lvl, 0)
        lines.append(f"| {lvl} | {before:,.0f} | {after:,.0f} |")
    lines += ["", "![energy before/after](compression_energy.png)", ""]
    path = out / "compression.md"
    path.write_text("\n".join(lines))
    return path
