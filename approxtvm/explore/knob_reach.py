"""Which share of a model's work each approximation knob reaches.

A knob only changes the layers it can act on: the approximate multiplier, and the NoC swing and
SRAM voltage (energy and fault injection, which covers every offloaded layer kind, grouped convs and
activation × activation MatMuls included), act on the offloaded layers; compression acts on the
stored weights of offloaded layers (not on the run-time operand of an activation × activation
MatMul). Layers kept on the host (unsupported, or a policy's ``host:`` rule) reach no knob.
Without these shares an accuracy-vs-energy result can silently be about a fraction of the network;
the experiments and the demo print them per model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from approxtvm.compiler.model import CompiledModel

#: Row label → (unit, field of the reached amount, field of the total) of :meth:`KnobReach.shares`.
KNOB_ROWS: dict[str, tuple[str, str, str]] = {
    "approximate multiplier": ("MACs", "offloaded_macs", "total_macs"),
    "NoC swing (energy and faults)": ("MACs", "offloaded_macs", "total_macs"),
    "SRAM voltage (energy and faults)": ("MACs", "offloaded_macs", "total_macs"),
    "weight compression": ("weights", "compressible_weight_elements", "total_weight_elements"),
}


@dataclass(frozen=True, slots=True)
class HostLayer:
    """A MAC layer no knob reaches.

    Attributes
    ----------
    node
        ONNX node name.
    macs
        MACs per batch (``None`` when its shape is unknown).
    reason
        Why it runs on the host.
    """

    node: str
    macs: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class KnobReach:
    """What each knob can reach in one compiled model, and what its policy sets.

    MACs are per batch of the compiled size (shares do not depend on it); layers of unknown shape
    count 0 MACs (:attr:`unknown_mac_layers` says how many).

    Attributes
    ----------
    model
        Model name.
    total_macs
        MACs of every MAC-bearing ONNX node, offloaded or not.
    offloaded_macs
        MACs of the offloaded layers: the approximate multiplier applies, NoC / SRAM energy is priced
        and their faults are injected.
    total_weight_elements
        Constant weight elements of every MAC node.
    compressible_weight_elements
        Weight elements of offloaded layers with a stored weight (compression can encode them).
    applied_multiplier_macs, applied_noc_macs, applied_sram_macs
        Offloaded MACs whose policy sets a non-exact multiplier / a reduced NoC swing / a scaled buffer.
    applied_compression_weight_elements
        Weight elements the policy compresses.
    host_layers
        The MAC layers left on the host, with the reason.
    unknown_mac_layers
        MAC nodes whose MACs are unknown (counted 0).
    """

    model: str
    total_macs: int
    offloaded_macs: int
    total_weight_elements: int
    compressible_weight_elements: int
    applied_multiplier_macs: int
    applied_noc_macs: int
    applied_sram_macs: int
    applied_compression_weight_elements: int
    host_layers: tuple[HostLayer, ...]
    unknown_mac_layers: int

    def shares(self) -> dict[str, float]:
        """Row label of :data:`KNOB_ROWS` → reached fraction (0–1; 0 when the total is 0)."""
        out = {}
        for label, (_, part, whole) in KNOB_ROWS.items():
            total = getattr(self, whole)
            out[label] = getattr(self, part) / total if total else 0.0
        return out

    def applied_shares(self) -> dict[str, float]:
        """Knob → fraction of the model the policy actually changes (MACs; weights for compression)."""
        macs, weights = self.total_macs, self.total_weight_elements
        return {
            "approximate multiplier": self.applied_multiplier_macs / macs if macs else 0.0,
            "NoC swing": self.applied_noc_macs / macs if macs else 0.0,
            "SRAM voltage": self.applied_sram_macs / macs if macs else 0.0,
            "weight compression": self.applied_compression_weight_elements / weights if weights else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the counts, the shares and the host layers."""
        d = asdict(self)
        d["host_layers"] = [asdict(h) for h in self.host_layers]
        d["shares"] = self.shares()
        d["applied_shares"] = self.applied_shares()
        return d


def knob_reach(model: CompiledModel, name: str) -> KnobReach:
    """The reach of every knob in ``model`` (compiled with the policy whose applied shares you want).

    Parameters
    ----------
    model
        A compiled model; its policy's ``host:`` rules are already in its host layers.
    name
        Model name for the report.
    """
    schedules = model.schedules
    total = offloaded = 0
    weights = compressible = 0
    mult = noc = sram = compressed = 0
    host: list[HostLayer] = []
    unknown = 0
    for node in model.mac_nodes:
        macs = node.macs or 0
        unknown += node.macs is None
        total += macs
        weights += node.weight_elements
        if node.layer_id is None:
            # the partitioner's own reason where it has one (a policy's host rule, groups), else the graph's guess
            host.append(HostLayer(node.node, node.macs, model.host_reasons.get(node.node, node.reason)))
            continue
        sch = schedules[node.layer_id]
        offloaded += macs
        # an activation × activation MatMul has no stored weight (codegen forces compression off)
        compressible += node.weight_elements if sch.shape.op != "matmul" else 0
        cfg = sch.config
        mult += macs if cfg.multiplier != "exact" else 0
        noc += macs if cfg.noc_swing_v is not None else 0
        sram += macs if cfg.sram_v else 0
        compressed += node.weight_elements if cfg.compression != "none" else 0
    return KnobReach(
        name,
        total,
        offloaded,
        weights,
        compressible,
        mult,
        noc,
        sram,
        compressed,
        tuple(host),
        unknown,
    )


def reach_table_md(reaches: list[KnobReach]) -> list[str]:
    """A Markdown table (knob rows, one column per model) and a line per model on its host layers."""
    if not reaches:
        return []
    lines = [
        "| knob | share of | " + " | ".join(r.model for r in reaches) + " |",
        "|---|---|" + "---:|" * len(reaches),
    ]
    shares = [r.shares() for r in reaches]
    for label, (unit, _, _) in KNOB_ROWS.items():
        lines.append(f"| {label} | {unit} | " + " | ".join(f"{100 * s[label]:.1f} %" for s in shares) + " |")
    lines.append("")
    for r in reaches:
        if not r.host_layers:
            lines.append(f"- {r.model}: every MAC layer runs on the accelerator.")
            continue
        shown = "; ".join(
            f"`{h.node}` ({'? MACs' if h.macs is None else f'{h.macs:,} MACs'}: {h.reason or 'kept on the host'})"
            for h in r.host_layers[:8]
        )
        more = f"; and {len(r.host_layers) - 8} more" if len(r.host_layers) > 8 else ""
        lines.append(f"- {r.model}: {len(r.host_layers)} MAC layer(s) on the host, reached by no knob: {shown}{more}.")
    if any(r.unknown_mac_layers for r in reaches):
        lines.append(
            "- Layers of unknown shape count 0 MACs: "
            + ", ".join(f"{r.model} {r.unknown_mac_layers}" for r in reaches if r.unknown_mac_layers)
            + "."
        )
    return lines


__all__ = ["KNOB_ROWS", "HostLayer", "KnobReach", "knob_reach", "reach_table_md"]
