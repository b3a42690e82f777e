"""Hardware description of the virtual accelerator ``vacc`` (a Simba-like chiplet).

Every number carries its unit in the field name (``capacity_bytes``, ``read_energy_pj``). Specs are
built from YAML with :meth:`AcceleratorSpec.from_yaml`, which rejects unknown keys, duplicate keys
(PyYAML would silently keep the last one), missing fields and impossible sizes, naming the file and
the key. :meth:`AcceleratorSpec.load` accepts a shipped spec name (``"simba_like"``) or a path.

Storage hierarchy (outermost first) and the mapping level each buffer belongs to:

=================  ==============  ===========================================================
mapping level      buffer          holds
=================  ==============  ===========================================================
``DRAM``           ``dram``        weights, inputs, outputs
``GlobalBuffer``   global_buffer   inputs, outputs (weights bypass it by default)
``PE``             weight_buffer   weights            (one per PE)
``PE``             input_buffer    inputs             (one per PE)
``PE``             accum_buffer    partial sums       (one per PE, pooled over its vector MACs)
``Register``       weight_register one weight         (one per MAC)
=================  ==============  ===========================================================

Energies of SRAM buffers are given per access of ``width_bits`` and charged pro rata per bit
(a 24-bit partial sum costs ``24 / width_bits`` accesses).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import itertools
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approxtvm.errors import ConfigError
from approxtvm.targets.vacc.yaml_io import load_strict_yaml

__all__ = [
    "BUFFERS",
    "BUFFER_LEVEL",
    "DRAM",
    "AcceleratorSpec",
    "EnergyTable",
    "MemoryLevel",
    "NoC",
    "PEArray",
    "PackageNetwork",
    "Precision",
    "SramVoltageModel",
]

#: On-chip buffers every spec defines, innermost first, with the mapping level they sit at.
BUFFER_LEVEL: dict[str, str] = {
    "weight_register": "Register",
    "weight_buffer": "PE",
    "input_buffer": "PE",
    "accum_buffer": "PE",
    "global_buffer": "GlobalBuffer",
}
#: All storage names including off-chip memory.
BUFFERS: tuple[str, ...] = (
    "dram",
    "global_buffer",
    "weight_buffer",
    "input_buffer",
    "accum_buffer",
    "weight_register",
)
_TENSORS = frozenset({"weight", "input", "output"})
#: Buffers every spec defines (the global buffer is optional: without it, inputs and outputs move
#: between DRAM and the PE buffers directly, over the NoC).
_REQUIRED_BUFFERS = frozenset(BUFFER_LEVEL) - {"global_buffer"}
_FIXED_TENSORS = {
    "weight_register": ("weight",),
    "weight_buffer": ("weight",),
    "input_buffer": ("input",),
    "accum_buffer": ("output",),
}


# ---------------------------------------------------------------------------------------------
# YAML loading: duplicate-key-rejecting loader and a strict dataclass builder
# ---------------------------------------------------------------------------------------------


def _fail(file: str, key: str, what: str, *, expected: str, found: str, fix: str) -> ConfigError:
    return ConfigError(f"{file}: key {key!r}: {what}", expected=expected, found=found, fix=fix)


def _convert(value: Any, tp: Any, file: str, key: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` or raise naming ``file`` and ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], file, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, file, key)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _fail(file, key, "wrong type", expected=f"a list ({tp})", found=repr(value), fix="write a YAML list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], file, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(
                file,
                key,
                "wrong length",
                expected=f"{len(args)} items",
                found=repr(value),
                fix=f"give exactly {len(args)} items",
            )
        return tuple(_convert(v, a, file, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(file, key, "wrong type", expected="true or false", found=repr(value), fix="write true/false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(
                file,
                key,
                "wrong type",
                expected="an integer",
                found=repr(value),
                fix="write a whole number (units are in the key name)",
            )
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(
                file,
                key,
                "wrong type",
                expected="a number",
                found=repr(value),
                fix="write a plain number (units are in the key name)",
            )
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(file, key, "wrong type", expected="a string", found=repr(value), fix="quote the value")
        return value
    raise TypeError(f"unsupported field type {tp!r}")  # programming error, not a user error


def _build(cls: type[Any], data: Any, file: str, path: str, **extra: Any) -> Any:
    """Build dataclass ``cls`` from mapping ``data``: unknown/missing keys raise :class:`ConfigError`."""
    where = path or "<top level>"
    if not isinstance(data, dict):
        raise _fail(
            file,
            where,
            "wrong type",
            expected=f"a mapping for {cls.__name__}",
            found=repr(data),
            fix="write `key: value` pairs",
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in extra}
    kwargs: dict[str, Any] = dict(extra)
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"remove it; allowed keys: {sorted(fields)}"
            raise _fail(
                file,
                full,
                f"unknown key in {cls.__name__}",
                expected=f"one of {sorted(fields)}",
                found=repr(key),
                fix=hint + " (every quantity carries its unit in the key name)",
            )
        kwargs[key] = _convert(value, hints[key], file, full)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            full = f"{path}.{name}" if path else name
            raise _fail(
                file,
                full,
                f"missing field of {cls.__name__}",
                expected=f"a value for {name!r}",
                found="nothing",
                fix=f"add `{name}: ...` under {where}",
            )
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise _rekey(exc, file, path) from None


def _rekey(exc: ConfigError, file: str, path: str) -> ConfigError:
    """Prefix a ``"field: what"`` error from ``__post_init__`` with the file and the full key."""
    field, _, what = exc.what.partition(": ")
    key = f"{path}.{field}" if path else field
    return ConfigError(f"{file}: key {key!r}: {what}", expected=exc.expected, found=exc.found, fix=exc.fix)


def _check(cond: bool, field: str, what: str, *, expected: str, found: object, fix: str) -> None:
    if not cond:
        raise ConfigError(f"{field}: {what}", expected=expected, found=repr(found), fix=fix)


def _check_energies(obj: object, names: tuple[str, ...], *, expected: str, fix: str) -> None:
    """Each named field of ``obj`` must be a finite, non-negative energy."""
    for name in names:
        v = getattr(obj, name)
        _check(math.isfinite(v) and v >= 0, name, "impossible energy", expected=expected, found=v, fix=fix)


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Precision:
    """Word widths in bits.

    Attributes
    ----------
    weight_bits, input_bits
        Operand widths (8 for int8/uint8).
    output_bits
        Width of a finished (requantized) output, as written back by the PE's post-processing unit.
    psum_bits
        Width of a partial sum (accumulation-buffer entry, and any partial-sum spill).
    """

    weight_bits: int = 8
    input_bits: int = 8
    output_bits: int = 8
    psum_bits: int = 24

    def __post_init__(self) -> None:
        for name in ("weight_bits", "input_bits", "output_bits", "psum_bits"):
            v = getattr(self, name)
            _check(
                0 < v <= 64,
                name,
                "impossible word width",
                expected="1..64 bits",
                found=v,
                fix="use the datapath width in bits",
            )

    def bits(self, tensor: str) -> int:
        """Bits per element of ``tensor`` (``weight``, ``input``, ``output`` or ``psum``)."""
        return {
            "weight": self.weight_bits,
            "input": self.input_bits,
            "output": self.output_bits,
            "psum": self.psum_bits,
        }[tensor]


@dataclass(frozen=True, slots=True)
class PEArray:
    """The compute array: a mesh of PEs, each with vector MACs of several lanes.

    Attributes
    ----------
    mesh_rows, mesh_cols
        PE mesh (PE ``i`` sits at column ``i % mesh_cols``, row ``i // mesh_cols``).
    vector_macs_per_pe
        Vector MAC units per PE (each owns one bank of the accumulation buffer).
    lanes_per_vector_mac
        Lanes of one vector MAC (a ``lanes``-wide dot product reduced by an adder tree).
    pe_spatial_dims, vector_mac_spatial_dims, lane_spatial_dims
        Problem dimensions a mapping may unroll across PEs, vector MACs and lanes. Lanes reduce
        (their dims must not index outputs); PEs and vector MACs must not reduce.
    """

    mesh_rows: int
    mesh_cols: int
    vector_macs_per_pe: int
    lanes_per_vector_mac: int
    pe_spatial_dims: tuple[str, ...] = ("K",)
    vector_mac_spatial_dims: tuple[str, ...] = ("K",)
    lane_spatial_dims: tuple[str, ...] = ("C",)

    def __post_init__(self) -> None:
        for name in ("mesh_rows", "mesh_cols", "vector_macs_per_pe", "lanes_per_vector_mac"):
            v = getattr(self, name)
            _check(
                0 < v <= 4096,
                name,
                "impossible size",
                expected="a positive count",
                found=v,
                fix="give a count of at least 1",
            )
        for name, allowed in (
            ("pe_spatial_dims", {"N", "K", "P", "Q"}),
            ("vector_mac_spatial_dims", {"N", "K", "P", "Q"}),
            ("lane_spatial_dims", {"C", "R", "S"}),
        ):
            dims = getattr(self, name)
            _check(
                bool(dims) and set(dims) <= allowed and len(set(dims)) == len(dims),
                name,
                "unsupported spatial dimensions",
                expected=f"a non-empty subset of {sorted(allowed)}",
                found=dims,
                fix="PEs and vector MACs split output-indexing dims, lanes split reduction dims",
            )

    @property
    def num_pes(self) -> int:
        """Number of PEs."""
        return self.mesh_rows * self.mesh_cols

    @property
    def macs_per_pe(self) -> int:
        """MAC units per PE."""
        return self.vector_macs_per_pe * self.lanes_per_vector_mac

    @property
    def num_macs(self) -> int:
        """MAC units in the array (peak MACs per cycle)."""
        return self.num_pes * self.macs_per_pe

    def pe_xy(self, pe: int) -> tuple[int, int]:
        """Mesh coordinates ``(x, y)`` of PE number ``pe``."""
        return pe % self.mesh_cols, pe // self.mesh_cols


@dataclass(frozen=True, slots=True)
class MemoryLevel:
    """One SRAM buffer (or register file).

    Attributes
    ----------
    name
        Buffer name (the YAML key), one of :data:`BUFFER_LEVEL`.
    capacity_bytes
        Capacity of one instance.
    width_bits
        Bits moved by one access.
    read_energy_pj, write_energy_pj
        Energy of one access of ``width_bits`` (pJ); charged pro rata per bit.
    tensors
        Tensors stored (``weight``, ``input``, ``output``).
    """

    name: str
    capacity_bytes: int
    width_bits: int
    read_energy_pj: float
    write_energy_pj: float
    tensors: tuple[str, ...]

    def __post_init__(self) -> None:
        _check(
            self.capacity_bytes > 0,
            "capacity_bytes",
            "impossible size",
            expected="> 0 bytes",
            found=self.capacity_bytes,
            fix="give the capacity of one instance in bytes",
        )
        _check(
            0 < self.width_bits <= 8 * self.capacity_bytes,
            "width_bits",
            "impossible width",
            expected=f"1..{8 * self.capacity_bytes} bits (at most the capacity)",
            found=self.width_bits,
            fix="give the bits moved by one access",
        )
        _check_energies(
            self,
            ("read_energy_pj", "write_energy_pj"),
            expected="a finite value >= 0 pJ",
            fix="give the energy of one access in pJ",
        )
        _check(
            bool(self.tensors) and set(self.tensors) <= _TENSORS and len(set(self.tensors)) == len(self.tensors),
            "tensors",
            "unknown tensors",
            expected=f"a non-empty subset of {sorted(_TENSORS)}",
            found=self.tensors,
            fix="list the tensors this buffer stores",
        )

    @property
    def read_energy_pj_per_bit(self) -> float:
        """Read energy per bit moved (pJ/bit)."""
        return self.read_energy_pj / self.width_bits

    @property
    def write_energy_pj_per_bit(self) -> float:
        """Write energy per bit moved (pJ/bit)."""
        return self.write_energy_pj / self.width_bits

    @property
    def capacity_bits(self) -> int:
        """Capacity of one instance in bits."""
        return 8 * self.capacity_bytes


@dataclass(frozen=True, slots=True)
class NoC:
    """On-chip network between the global buffer and the PEs.

    Attributes
    ----------
    topology, routing
        ``"mesh"`` and ``"xy"`` (dimension-ordered: X first, then Y).
    multicast
        Whether one injection can reach several PEs along a tree (else one unicast per PE).
    link_energy_pj_per_bit, router_energy_pj_per_bit
        Energy per bit for one link traversal and one router traversal at full swing.
    global_buffer_node
        ``(x, y)`` of the router the global buffer (and the DRAM interface) attaches to.
    flit_bits
        Flit payload width (for flit counts).
    swing_model
        Link energy vs voltage swing: ``"linear"`` (``V_sw/Vdd``) or ``"quadratic"`` (``(V_sw/Vdd)²``).
    nominal_vdd_v
        Supply and nominal (full) swing in volts.
    sigma_v
        Noise standard deviation for the link bit-error model ``BER = Q(V_sw / (2σ))``, volts.
    """

    link_energy_pj_per_bit: float
    router_energy_pj_per_bit: float
    topology: str = "mesh"
    routing: str = "xy"
    multicast: bool = True
    global_buffer_node: tuple[int, int] = (0, 0)
    flit_bits: int = 64
    swing_model: str = "linear"
    nominal_vdd_v: float = 0.9
    sigma_v: float = 0.05

    def __post_init__(self) -> None:
        _check(
            self.topology == "mesh",
            "topology",
            "unsupported topology",
            expected="'mesh'",
            found=self.topology,
            fix="use topology: mesh",
        )
        _check(
            self.routing == "xy",
            "routing",
            "unsupported routing",
            expected="'xy'",
            found=self.routing,
            fix="use routing: xy",
        )
        _check_energies(
            self,
            ("link_energy_pj_per_bit", "router_energy_pj_per_bit"),
            expected="a finite value >= 0 pJ/bit",
            fix="give pJ per bit per traversal",
        )
        _check(
            self.flit_bits > 0,
            "flit_bits",
            "impossible size",
            expected="> 0",
            found=self.flit_bits,
            fix="give the flit payload in bits",
        )
        _check(
            self.swing_model in ("linear", "quadratic"),
            "swing_model",
            "unknown swing model",
            expected="'linear' or 'quadratic'",
            found=self.swing_model,
            fix="pick one of the two",
        )
        _check(
            0 < self.nominal_vdd_v <= 5,
            "nominal_vdd_v",
            "impossible voltage",
            expected="0 < V <= 5",
            found=self.nominal_vdd_v,
            fix="give the supply in volts",
        )
        _check(
            0 < self.sigma_v < self.nominal_vdd_v,
            "sigma_v",
            "impossible noise",
            expected="0 < σ < Vdd",
            found=self.sigma_v,
            fix="give σ in volts (0.05 by default)",
        )

    @property
    def hop_energy_pj_per_bit(self) -> float:
        """Link plus router energy per bit (one hop at full swing)."""
        return self.link_energy_pj_per_bit + self.router_energy_pj_per_bit

    def link_energy_scale(self, swing_v: float) -> float:
        """Link energy at swing ``swing_v`` relative to full swing (per :attr:`swing_model`)."""
        ratio = swing_v / self.nominal_vdd_v
        return ratio if self.swing_model == "linear" else ratio * ratio


@dataclass(frozen=True, slots=True)
class DRAM:
    """Off-chip memory.

    Attributes
    ----------
    energy_pj_per_bit
        Read or write energy per bit.
    bandwidth_bits_per_cycle
        Interface bandwidth (latency model only).
    tensors
        Tensors it stores (all three).
    """

    energy_pj_per_bit: float
    bandwidth_bits_per_cycle: int
    tensors: tuple[str, ...] = ("weight", "input", "output")

    def __post_init__(self) -> None:
        _check_energies(self, ("energy_pj_per_bit",), expected=">= 0 pJ/bit", fix="give pJ per bit")
        _check(
            self.bandwidth_bits_per_cycle > 0,
            "bandwidth_bits_per_cycle",
            "impossible bandwidth",
            expected="> 0 bits/cycle",
            found=self.bandwidth_bits_per_cycle,
            fix="give bits per cycle",
        )
        _check(
            set(self.tensors) == _TENSORS,
            "tensors",
            "DRAM must hold every tensor",
            expected=sorted(_TENSORS),
            found=self.tensors,
            fix="list weight, input and output",
        )


@dataclass(frozen=True, slots=True)
class EnergyTable:
    """Compute energies (pJ per operation, exact multiplier).

    Attributes
    ----------
    mul_energy_pj
        One 8×8-bit multiply.
    add_energy_pj
        The add and accumulate of one product (adder-tree share + accumulator add).
    decoder_energy_pj_per_weight
        Decoding one compressed weight at the PE (bitmask scan / codebook lookup) before it is
        written into the weight buffer; charged only for compressed layers.
    """

    mul_energy_pj: float
    add_energy_pj: float
    decoder_energy_pj_per_weight: float = 0.0

    def __post_init__(self) -> None:
        _check_energies(
            self,
            ("mul_energy_pj", "add_energy_pj", "decoder_energy_pj_per_weight"),
            expected=">= 0 pJ",
            fix="give pJ per operation",
        )

    @property
    def mac_energy_pj(self) -> float:
        """Multiply plus add/accumulate."""
        return self.mul_energy_pj + self.add_energy_pj


@dataclass(frozen=True, slots=True)
class SramVoltageModel:
    """SRAM voltage scaling data: bit-cell failure probability vs supply (issue 6 knob).

    Attributes
    ----------
    nominal_vdd_v
        Nominal SRAM supply (dynamic energy scales with ``(V / nominal_vdd_v)²``).
    ber_table
        ``(voltage_v, bit_error_rate)`` points, voltages strictly decreasing, BER non-decreasing;
        interpolated log-linearly by :meth:`ber_at`.
    """

    nominal_vdd_v: float = 0.9
    ber_table: tuple[tuple[float, float], ...] = (
        (0.9, 1e-12),
        (0.8, 1e-9),
        (0.7, 1e-6),
        (0.6, 1e-4),
        (0.5, 1e-2),
    )

    def __post_init__(self) -> None:
        _check(
            0 < self.nominal_vdd_v <= 5,
            "nominal_vdd_v",
            "impossible voltage",
            expected="0 < V <= 5",
            found=self.nominal_vdd_v,
            fix="give volts",
        )
        _check(
            len(self.ber_table) >= 2,
            "ber_table",
            "too few points",
            expected=">= 2 (voltage, BER) points",
            found=self.ber_table,
            fix="list at least two points",
        )
        volts = [v for v, _ in self.ber_table]
        bers = [b for _, b in self.ber_table]
        _check(
            all(a > b for a, b in itertools.pairwise(volts)),
            "ber_table",
            "voltages not strictly decreasing",
            expected="V1 > V2 > ...",
            found=volts,
            fix="sort the table from the highest voltage down",
        )
        _check(
            all(0 < b <= 1 for b in bers),
            "ber_table",
            "BER out of range",
            expected="0 < BER <= 1",
            found=bers,
            fix="give probabilities",
        )
        _check(
            all(a <= b for a, b in itertools.pairwise(bers)),
            "ber_table",
            "BER decreases with lower voltage",
            expected="non-decreasing BER as V drops",
            found=bers,
            fix="check the table",
        )

    def ber_at(self, voltage_v: float) -> float:
        """Bit error rate at ``voltage_v`` (log-linear interpolation, clamped to the table's ends)."""
        pts = self.ber_table
        if voltage_v >= pts[0][0]:
            return pts[0][1]
        if voltage_v <= pts[-1][0]:
            return pts[-1][1]
        for (v0, b0), (v1, b1) in itertools.pairwise(pts):
            if v1 <= voltage_v <= v0:
                t = (v0 - voltage_v) / (v0 - v1)
                return 10 ** (math.log10(b0) + t * (math.log10(b1) - math.log10(b0)))
        raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class PackageNetwork:
    """Package-level network joining several chiplets (Simba's network-on-package).

    Attributes
    ----------
    chiplet_rows, chiplet_cols
        Chiplet mesh.
    link_energy_pj_per_bit, router_energy_pj_per_bit
        Energy per bit per inter-chiplet link / package router traversal.
    bandwidth_bits_per_cycle
        Per-link bandwidth (latency model only).
    """

    chiplet_rows: int
    chiplet_cols: int
    link_energy_pj_per_bit: float
    router_energy_pj_per_bit: float
    bandwidth_bits_per_cycle: int = 64

    def __post_init__(self) -> None:
        for name in ("chiplet_rows", "chiplet_cols", "bandwidth_bits_per_cycle"):
            v = getattr(self, name)
            _check(v > 0, name, "impossible size", expected="> 0", found=v, fix="give a positive count")
        _check_energies(
            self, ("link_energy_pj_per_bit", "router_energy_pj_per_bit"), expected=">= 0 pJ/bit", fix="give pJ per bit"
        )

    @property
    def num_chiplets(self) -> int:
        """Chiplets in the package."""
        return self.chiplet_rows * self.chiplet_cols


# ---------------------------------------------------------------------------------------------
# The whole accelerator
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceleratorSpec:
    """One accelerator (a chiplet, optionally placed in a package).

    Attributes
    ----------
    name
        Spec name.
    technology_nm
        Process node of the energy numbers (documentation only).
    pe_array
        PE mesh and vector-MAC organisation.
    precision
        Word widths.
    energy
        MAC energies.
    memories
        The on-chip buffers, keyed by :data:`BUFFER_LEVEL` names.
    noc
        Global-buffer-to-PE network.
    dram
        Off-chip memory.
    sram
        SRAM voltage-scaling data.
    package
        Package network if the spec describes several chiplets, else ``None``.
    """

    name: str
    pe_array: PEArray
    energy: EnergyTable
    memories: tuple[MemoryLevel, ...]
    noc: NoC
    dram: DRAM
    precision: Precision = Precision()
    sram: SramVoltageModel = SramVoltageModel()
    technology_nm: int = 45
    package: PackageNetwork | None = None

    def __post_init__(self) -> None:
        names = [m.name for m in self.memories]
        _check(
            len(set(names)) == len(names) and _REQUIRED_BUFFERS <= set(names) <= set(BUFFER_LEVEL),
            "memories",
            "wrong set of buffers",
            expected=f"{sorted(_REQUIRED_BUFFERS)}, optionally global_buffer",
            found=names,
            fix="define each buffer exactly once",
        )
        for m in self.memories:
            fixed = _FIXED_TENSORS.get(m.name)
            _check(
                fixed is None or m.tensors == fixed,
                f"memories.{m.name}.tensors",
                "wrong tensors",
                expected=fixed,
                found=m.tensors,
                fix=f"{m.name} stores only {fixed}",
            )
        if "global_buffer" in names:
            gb = self.memory("global_buffer")
            _check(
                "output" in gb.tensors,
                "memories.global_buffer.tensors",
                "the global buffer must hold outputs (PEs write results back through it)",
                expected="a list containing 'output'",
                found=gb.tensors,
                fix="add output",
            )
        acc = self.memory("accum_buffer")
        _check(
            acc.capacity_bits >= self.precision.psum_bits * self.pe_array.vector_macs_per_pe,
            "memories.accum_buffer.capacity_bytes",
            "impossible size",
            expected=f">= one {self.precision.psum_bits}-bit entry per vector MAC",
            found=acc.capacity_bytes,
            fix="enlarge the accumulation buffer",
        )
        gx, gy = self.noc.global_buffer_node
        _check(
            0 <= gx < self.pe_array.mesh_cols and 0 <= gy < self.pe_array.mesh_rows,
            "noc.global_buffer_node",
            "outside the mesh",
            expected=f"x < {self.pe_array.mesh_cols}, y < {self.pe_array.mesh_rows}",
            found=self.noc.global_buffer_node,
            fix="attach the global buffer to a mesh router",
        )

    # -- construction ---------------------------------------------------------------------------

    @staticmethod
    def from_yaml(path: str | Path) -> AcceleratorSpec:
        """Read a spec from YAML; unknown, duplicate or missing keys raise :class:`ConfigError`.

        Parameters
        ----------
        path
            YAML file. Top-level keys are the fields of this class; ``memories`` maps buffer names
            to :class:`MemoryLevel` fields (without ``name``).
        """
        return AcceleratorSpec._from_data(load_strict_yaml(Path(path)), str(path))

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = "<dict>") -> AcceleratorSpec:
        """Inverse of :meth:`to_dict` (same checks as :meth:`from_yaml`; errors name ``source``)."""
        return AcceleratorSpec._from_data(data, source)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, in the YAML layout (``memories`` keyed by buffer name)."""

        def plain(v: Any) -> Any:
            if dataclasses.is_dataclass(v):
                return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            return v

        out = {f: plain(getattr(self, f)) for f in _SPEC_FIELDS if f != "memories"}
        out["memories"] = {m.name: {k: v for k, v in plain(m).items() if k != "name"} for m in self.memories}
        return out

    @staticmethod
    def _from_data(data: Any, file: str) -> AcceleratorSpec:
        if not isinstance(data, dict):
            raise ConfigError(
                f"{file}: the top level must be a mapping",
                expected="`name: ...`, `pe_array: ...`",
                found=repr(data),
                fix="start from approxtvm/targets/vacc/specs/simba_like.yaml",
            )
        data = dict(data)
        mems = data.pop("memories", None)
        if not isinstance(mems, dict):
            raise ConfigError(
                f"{file}: key 'memories': missing or not a mapping",
                expected="a mapping of buffer name -> fields",
                found=repr(mems),
                fix=f"define {sorted(_REQUIRED_BUFFERS)} (and optionally global_buffer) under memories",
            )
        memories: list[MemoryLevel] = []
        for name, fields in mems.items():
            if name not in BUFFER_LEVEL:
                close = difflib.get_close_matches(str(name), list(BUFFER_LEVEL), n=1)
                raise ConfigError(
                    f"{file}: key 'memories.{name}': unknown buffer",
                    expected=f"one of {sorted(BUFFER_LEVEL)}",
                    found=repr(name),
                    fix=f"did you mean {close[0]!r}?" if close else "remove it",
                )
            if isinstance(fields, dict) and "tensors" not in fields and name in _FIXED_TENSORS:
                fields = {**fields, "tensors": list(_FIXED_TENSORS[name])}
            memories.append(_build(MemoryLevel, fields, file, f"memories.{name}", name=name))
        spec = _build(_SpecFields, data, file, "", memories=tuple(memories))
        try:
            return AcceleratorSpec(**{f: getattr(spec, f) for f in _SPEC_FIELDS})
        except ConfigError as exc:
            raise _rekey(exc, file, "") from None

    @staticmethod
    def load(name_or_path: str | Path) -> AcceleratorSpec:
        """Load a shipped spec by name (``"simba_like"``) or a YAML file by path."""
        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") or p.exists():
            return AcceleratorSpec.from_yaml(p)
        shipped = importlib.resources.files("approxtvm.targets.vacc").joinpath("specs", f"{name_or_path}.yaml")
        if not shipped.is_file():
            names = sorted(
                r.name.removesuffix(".yaml")
                for r in importlib.resources.files("approxtvm.targets.vacc").joinpath("specs").iterdir()
                if r.name.endswith(".yaml")
            )
            raise ConfigError(
                f"unknown accelerator {name_or_path!r}",
                expected=f"one of {names} or a YAML path",
                found=str(name_or_path),
                fix="pass a shipped name or an existing .yaml file",
            )
        with importlib.resources.as_file(shipped) as real:
            return AcceleratorSpec.from_yaml(real)

    # -- queries ----------------------------------------------------------------------------------

    def memory(self, name: str) -> MemoryLevel:
        """The buffer called ``name`` (see :data:`BUFFER_LEVEL`)."""
        for m in self.memories:
            if m.name == name:
                return m
        raise KeyError(name)

    def storage_chain(self, tensor: str) -> tuple[str, ...]:
        """Buffers holding ``tensor``, outermost (``dram``) first."""
        names = {m.name for m in self.memories}
        return tuple(b for b in BUFFERS if b == "dram" or (b in names and tensor in self.memory(b).tensors))

    def pe_buffer(self, tensor: str) -> str:
        """The per-PE buffer holding ``tensor``."""
        return {"weight": "weight_buffer", "input": "input_buffer", "output": "accum_buffer"}[tensor]


_SPEC_FIELDS = (
    "name",
    "memories",
    "pe_array",
    "energy",
    "noc",
    "dram",
    "precision",
    "sram",
    "technology_nm",
    "package",
)


@dataclass(frozen=True, slots=True)
class _SpecFields:
    """Parsing view of :class:`AcceleratorSpec` (``memories`` is parsed separately, by name)."""

    name: str
    pe_array: PEArray
    energy: EnergyTable
    noc: NoC
    dram: DRAM
    memories: tuple[MemoryLevel, ...]
    precision: Precision = Precision()
    sram: SramVoltageModel = SramVoltageModel()
    technology_nm: int = 45
    package: PackageNetwork | None = None
