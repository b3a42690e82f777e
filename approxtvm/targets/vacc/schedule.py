"""LayerSchedule: everything the runtime needs to execute one offloaded layer, as data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from approxtvm.errors import ScheduleError
from approxtvm.schema import FieldHook, Schema
from approxtvm.targets.vacc.config import ApproxConfig
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.package import PACKAGE_HOOKS, PackageMapping
from approxtvm.targets.vacc.workload import LayerShape

SCHEDULE_VERSION = 1


@dataclass(frozen=True, slots=True)
class QuantParams:
    """Quantization of a layer's operands (ONNX QDQ semantics).

    Attributes
    ----------
    signed
        int8 operands (``True``) or uint8 (``False``).
    input_scale, input_zero_point
        Per-tensor activation quantization.
    weight_scales, weight_zero_points
        One entry (per tensor) or K entries (per output channel).
    bias_scales, bias_zero_points
        Quantization of the int32 bias (empty when the layer has no bias).
    weight_code_offset
        Added to the model's weight codes (and zero points) to bring them to the activations'
        signedness: +128 for int8 weights beside uint8 activations, −128 for the reverse, 0 when
        both agree. ``(w + o) − (z_w + o) = w − z_w``, so with the exact multiplier the
        accumulators are unchanged; no approximate table exists for mixed operands.
    """

    signed: bool
    input_scale: float
    input_zero_point: int
    weight_scales: tuple[float, ...]
    weight_zero_points: tuple[int, ...]
    bias_scales: tuple[float, ...] = ()
    bias_zero_points: tuple[int, ...] = ()
    weight_code_offset: int = 0

    @property
    def dtype(self) -> str:
        """numpy dtype of the operands."""
        return "int8" if self.signed else "uint8"


@dataclass(frozen=True, slots=True)
class Intrinsic:
    """The PE's MAC instruction: ``lanes``-wide dot product, table multiply, exact int32 sum.

    Attributes
    ----------
    name
        Instruction name (``vacc.mac8``).
    lanes
        Products per instruction (input channels across the vector lanes).
    multiplier
        Multiplier spec as given by the policy.
    multiplier_name
        Resolved multiplier name.
    table_hash
        sha256 of the product table: schedules say exactly which arithmetic they used.
    mul_energy_pj
        Energy of one multiply with this multiplier.
    """

    name: str
    lanes: int
    multiplier: str
    multiplier_name: str
    table_hash: str
    mul_energy_pj: float


@dataclass(frozen=True, slots=True)
class WeightLayout:
    """How weights are cut into the tiles the mapping moves, and how each tile is encoded.

    Attributes
    ----------
    tile_order
        Loop dims, outermost first, in which weight tiles are stored and sent.
    encoding
        Encoding of each tile (``dense`` until compression is applied).
    tile_bytes
        Bytes of each tile as stored in DRAM (metadata included).
    """

    tile_order: tuple[str, ...]
    encoding: tuple[str, ...]
    tile_bytes: tuple[int, ...]

    @property
    def total_bytes(self) -> int:
        """Footprint of the layer's weights."""
        return sum(self.tile_bytes)


@dataclass(frozen=True, slots=True)
class LayerSchedule:
    """One offloaded layer: problem, numerics, approximation, loop nest, intrinsic, weight layout.

    Attributes
    ----------
    layer_id
        Stable id (ONNX node name).
    symbol
        Global symbol the VM calls.
    shape
        The layer's loop bounds, strides, pads, dilations.
    quant
        Operand quantization.
    has_bias
        Whether the layer adds an int32 bias.
    config
        Approximation config from the policy.
    accelerator
        Name of the accelerator spec the mapping targets.
    mapping
        Loop nest per memory level (from the mapper).
    intrinsic
        The MAC instruction and its multiplier.
    weight_layout
        Weight tiles and their encodings.
    outputs
        What each output of the offloaded call is: ``result`` or ``input_dequantized`` (a
        dequantize shared with another user becomes a second output, DESIGN §2).
    predicted
        Predicted access counts (analytic), JSON form.
    inputs
        What each runtime input of the offloaded call is, in call order: ``x`` (the activation
        codes); for an activation × activation matmul ``a`` (first operand, table row) and ``b``
        (second operand, table column) in whichever order the partitioner passes them.
    package
        On a multi-chiplet spec, the package level: how the layer is split across chiplets and
        the chiplet mapping of each part (energy and counts follow it); ``mapping`` is then the
        whole layer's nest the kernels execute. ``None`` on a spec without a package.
    """

    layer_id: str
    symbol: str
    shape: LayerShape
    quant: QuantParams
    has_bias: bool
    config: ApproxConfig
    accelerator: str
    mapping: Mapping
    intrinsic: Intrinsic
    weight_layout: WeightLayout
    outputs: tuple[str, ...] = ("result",)
    predicted: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    inputs: tuple[str, ...] = ("x",)
    package: PackageMapping | None = None

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form; :meth:`from_dict` inverts it exactly."""
        out = {"version": SCHEDULE_VERSION, **SCHEDULE_SCHEMA.unstructure(self)}
        if out["package"] is None:
            del out["package"]  # single-chiplet schedules keep the form they had before packages
        return out

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "schedule") -> LayerSchedule:
        """Inverse of :meth:`to_dict` (strict: errors name ``source`` and the key)."""
        if not isinstance(d, dict) or d.get("version") != SCHEDULE_VERSION:
            raise ScheduleError(
                f"{source}: unsupported schedule version",
                expected=str(SCHEDULE_VERSION),
                found=str(d.get("version") if isinstance(d, dict) else type(d).__name__),
                fix="recompile the model with this approxtvm",
            )
        fields = {k: v for k, v in d.items() if k != "version"}
        return SCHEDULE_SCHEMA.structure(fields, LayerSchedule, source=source)

    def to_json(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> LayerSchedule:
        """Inverse of :meth:`to_json`."""
        return LayerSchedule.from_dict(json.loads(text))

    # ------------------------------------------------------------------ text view
    def to_text(self) -> str:
        """Readable view: header, loop nest per level (Timeloop style), intrinsic, layout."""
        s, q, i = self.shape, self.quant, self.intrinsic
        head = [
            f"layer {self.layer_id} ({s.op}{f', {s.groups} groups' if s.groups > 1 else ''})"
            f"  symbol {self.symbol}  accelerator {self.accelerator}",
            f"  shape N={s.n} K={s.k} C={s.c} P={s.p} Q={s.q} R={s.r} S={s.s}  input {s.h}×{s.w}"
            f"  stride {s.stride_h}×{s.stride_w}  dilation {s.dilation_h}×{s.dilation_w}"
            f"  pads (t,l,b,r) {s.pad_top},{s.pad_left},{s.pad_bottom},{s.pad_right}  MACs {s.macs:,}",
            f"  operands {q.dtype}  x: scale {q.input_scale:.6g} zp {q.input_zero_point}"
            f"  w: {'per-channel' if len(q.weight_scales) > 1 else 'per-tensor'} scale"
            f" {q.weight_scales[0]:.6g}{'…' if len(q.weight_scales) > 1 else ''}"
            f" zp {q.weight_zero_points[0]}{'…' if len(q.weight_zero_points) > 1 else ''}"
            f"  bias {'yes' if self.has_bias else 'no'}"
            + (
                f"  (weight codes {q.weight_code_offset:+d}: model weights are of the other signedness)"
                if q.weight_code_offset
                else ""
            ),
            f"  approx: {self.config.to_json()}",
            f"  intrinsic {i.name}: {i.lanes}-lane dot product, multiply = {i.multiplier_name}"
            f" (table sha256 {i.table_hash[:12]}…, {i.mul_energy_pj:.4g} pJ/mul), int32 accumulate",
            f"  weights: {len(self.weight_layout.tile_bytes)} tile(s) in order"
            f" {'/'.join(self.weight_layout.tile_order) or '-'}, encodings"
            f" {sorted(set(self.weight_layout.encoding))}, {self.weight_layout.total_bytes:,} B",
            "  loop nest:",
        ]
        nest = self.mapping if self.package is None else self.package
        lines = head + ["    " + line for line in nest.to_text().splitlines()]
        counts = self.predicted.get("counts")
        if counts:
            util = counts["macs"] / counts["mac_slots"] if counts.get("mac_slots") else 0.0
            lines += [
                "  accesses (elements; analytic = what the runtime counts):",
                f"    MACs {counts['macs']:,}  latency {counts['latency_cycles']:,} cycles"
                f"  utilisation {100 * util:.1f} %",
            ]
            lines += [
                f"    {a['buffer']:<16}{a['tensor']:<8} reads {a['reads']:>14,}  writes {a['writes']:>14,}"
                for a in counts["buffer_accesses"]
            ]
            lines += [
                f"    {'noc':<16}{n['tensor']:<8} bits {n['payload_bits']:>15,}  link-bit hops"
                f" {n['link_bit_traversals']:>14,}"
                for n in counts["noc_traffic"]
            ]
            lines += [
                f"    {'package':<16}{n['tensor']:<8} bits {n['payload_bits']:>15,}  link-bit hops"
                f" {n['link_bit_traversals']:>14,}"
                for n in counts.get("package_traffic", ())
            ]
        return "\n".join(lines)


#: Schedules ↔ plain JSON (saved models, the BYOC layer blob). The policy's config keeps its own
#: JSON form (the policy schema's); the shape, mapping and package mapping are the schema's own.
SCHEDULE_SCHEMA = Schema(
    ScheduleError,
    hooks=(
        FieldHook(LayerSchedule, "config", lambda v, _: ApproxConfig.from_dict(v), lambda v, _: v.to_dict()),
        *PACKAGE_HOOKS,
    ),
)
