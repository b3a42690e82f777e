"""The parts of an accelerator spec: precision, PE array, buffers, DRAM, energies, SRAM scaling.

The signalling links (the on-chip NoC and the package network) are in
:mod:`approxtvm.targets.vacc.links`.

Frozen dataclasses with units in their field names; each checks its own values when built.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from approxtvm.schema import check as _check
from approxtvm.schema import check_energies as _check_energies

__all__ = [
    "BUFFERS",
    "BUFFER_LEVEL",
    "DRAM",
    "SRAM_FAILURE_MODES",
    "EnergyTable",
    "MemoryLevel",
    "PEArray",
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
#: How an SRAM bit-cell failure reaches the data: once per tile residency, on every read, or both.
SRAM_FAILURE_MODES = ("write", "read", "both")


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
    level
        Mapping level of the buffer. Empty for the buffers of :data:`BUFFER_LEVEL` (their level is
        fixed); any other buffer is an extra shared (one per chip) level above the PEs and names its
        level here (``L2``, ``GlobalBuffer2``...). Levels above the PEs are ordered as their buffers
        appear in the spec's ``memories``, innermost first (the shipped specs list the register first
        and the global buffer last).
    """

    name: str
    capacity_bytes: int
    width_bits: int
    read_energy_pj: float
    write_energy_pj: float
    tensors: tuple[str, ...]
    level: str = ""

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
    def mapping_level(self) -> str:
        """The mapping level this buffer sits at (:attr:`level`, or the fixed one of its name)."""
        return self.level or BUFFER_LEVEL.get(self.name, "")

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
    failure_mode
        How a bit-cell failure reaches the data, as the table's source observed it (one of
        :data:`SRAM_FAILURE_MODES`): ``write`` — a stored word is corrupted once per tile residency
        and the flip persists until the tile is replaced (data held and read back at the low
        supply); ``read`` — every read of a word fails independently (read disturb / sensing
        failure); ``both``. The fault planner uses it unless ``FaultOptions.sram_fault_mode`` says
        otherwise.
    """

    nominal_vdd_v: float = 0.9
    ber_table: tuple[tuple[float, float], ...] = (
        (0.9, 1e-12),
        (0.8, 1e-9),
        (0.7, 1e-6),
        (0.6, 1e-4),
        (0.5, 1e-2),
    )
    failure_mode: str = "write"

    def __post_init__(self) -> None:
        _check(
            self.failure_mode in SRAM_FAILURE_MODES,
            "failure_mode",
            "unknown SRAM failure mode",
            expected=f"one of {SRAM_FAILURE_MODES}",
            found=self.failure_mode,
            fix="write (once per residency), read (every read) or both",
        )
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
            all(0 < v <= 5 for v in volts),
            "ber_table",
            "impossible voltage in the table",
            expected="0 < V <= 5 for every point",
            found=volts,
            fix="give volts",
        )
        _check(
            volts[-1] < self.nominal_vdd_v,
            "ber_table",
            "no point below the nominal supply",
            expected=f"a lowest point below nominal_vdd_v = {self.nominal_vdd_v} V",
            found=volts,
            fix="add the scaled-supply measurements (or correct nominal_vdd_v)",
        )
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
