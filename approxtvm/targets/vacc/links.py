"""The signalling links of an accelerator spec: the on-chip NoC and the network-on-package.

Both scale their energy with the voltage swing and share the swing model, voltage and noise checks.
Frozen dataclasses with units in their field names; each checks its own values when built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from approxtvm.schema import check as _check
from approxtvm.schema import check_energies as _check_energies

__all__ = ["NoC", "PackageNetwork"]


def _check_signalling(link: Any, voltage_field: str, voltage_name: str, *, fix_v: str, fix_sigma: str) -> None:
    """Checks every swing-scaled link shares (on-chip NoC, package): swing model, voltage, noise σ."""
    _check(
        link.swing_model in ("linear", "quadratic"),
        "swing_model",
        "unknown swing model",
        expected="'linear' or 'quadratic'",
        found=link.swing_model,
        fix="pick one of the two",
    )
    v = getattr(link, voltage_field)
    _check(0 < v <= 5, voltage_field, "impossible voltage", expected="0 < V <= 5", found=v, fix=fix_v)
    _check(
        0 < link.sigma_v < v,
        "sigma_v",
        "impossible noise",
        expected=f"0 < σ < {voltage_name}",
        found=link.sigma_v,
        fix=fix_sigma,
    )


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
        _check_signalling(
            self,
            "nominal_vdd_v",
            "Vdd",
            fix_v="give the supply in volts",
            fix_sigma="give σ in volts (0.05 by default)",
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
class PackageNetwork:
    """Package-level network joining several chiplets (Simba's network-on-package, NoP).

    The chiplets sit on a 2-D mesh of package routers with XY routing; the off-package memory
    interface attaches to the router of :attr:`memory_node`. A hop is one inter-chiplet link plus
    the router it enters, so a chiplet at the memory node receives without a hop (and a package of
    one chiplet has no package traffic).

    Attributes
    ----------
    chiplet_rows, chiplet_cols
        Chiplet mesh.
    link_energy_pj_per_bit, router_energy_pj_per_bit
        Energy per bit per inter-chiplet link / package router traversal, at full swing.
    bandwidth_bits_per_cycle
        Bits per chiplet-clock cycle one link carries in one direction (latency model).
    memory_node
        ``(x, y)`` of the chiplet whose package router the memory interface attaches to.
    multicast
        Whether one injection reaches several chiplets along the union of their XY routes.
    swing_model
        Link energy vs swing, as :attr:`NoC.swing_model` (``linear`` or ``quadratic``).
    nominal_swing_v
        Full swing of the package links, volts (the ``nop_swing_v`` knob scales below it).
    sigma_v
        Receiver noise σ of the package links for ``BER = Q(V_sw / (2σ))``, volts.
    memory_bandwidth_bits_per_cycle
        Bits per cycle of the package's memory interface (``None``: one DRAM channel of the
        chiplet spec, ``dram.bandwidth_bits_per_cycle``).
    """

    chiplet_rows: int
    chiplet_cols: int
    link_energy_pj_per_bit: float
    router_energy_pj_per_bit: float
    bandwidth_bits_per_cycle: int = 64
    memory_node: tuple[int, int] = (0, 0)
    multicast: bool = True
    swing_model: str = "linear"
    nominal_swing_v: float = 0.2
    sigma_v: float = 0.01
    memory_bandwidth_bits_per_cycle: int | None = None

    def __post_init__(self) -> None:
        for name in ("chiplet_rows", "chiplet_cols", "bandwidth_bits_per_cycle"):
            v = getattr(self, name)
            _check(v > 0, name, "impossible size", expected="> 0", found=v, fix="give a positive count")
        _check_energies(
            self, ("link_energy_pj_per_bit", "router_energy_pj_per_bit"), expected=">= 0 pJ/bit", fix="give pJ per bit"
        )
        mx, my = self.memory_node
        _check(
            0 <= mx < self.chiplet_cols and 0 <= my < self.chiplet_rows,
            "memory_node",
            "outside the chiplet mesh",
            expected=f"x < {self.chiplet_cols}, y < {self.chiplet_rows}",
            found=self.memory_node,
            fix="attach the memory interface to a chiplet of the package",
        )
        _check_signalling(
            self,
            "nominal_swing_v",
            "the nominal swing",
            fix_v="give the links' full swing in volts",
            fix_sigma="give σ in volts",
        )
        _check(
            self.memory_bandwidth_bits_per_cycle is None or self.memory_bandwidth_bits_per_cycle > 0,
            "memory_bandwidth_bits_per_cycle",
            "impossible size",
            expected="> 0 (or leave it out: one DRAM channel)",
            found=self.memory_bandwidth_bits_per_cycle,
            fix="give the memory interface's bits per cycle",
        )

    @property
    def num_chiplets(self) -> int:
        """Chiplets in the package."""
        return self.chiplet_rows * self.chiplet_cols

    def chiplet_xy(self, index: int) -> tuple[int, int]:
        """``(x, y)`` of chiplet ``index`` (row-major: ``x = index mod cols``)."""
        return index % self.chiplet_cols, index // self.chiplet_cols

    def link_energy_scale(self, swing_v: float) -> float:
        """Package link energy at swing ``swing_v`` relative to full swing (per :attr:`swing_model`)."""
        ratio = swing_v / self.nominal_swing_v
        return ratio if self.swing_model == "linear" else ratio * ratio
