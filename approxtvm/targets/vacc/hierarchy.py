"""The accelerator's memory hierarchy as data, derived from its spec (DESIGN §4).

A :class:`Hierarchy` lists the storage levels of a mapping outermost first (``DRAM``, then the
on-chip levels the spec defines: ``GlobalBuffer`` when it has a global buffer, any extra shared
level one of its buffers names, ``PE``, ``Register``), the buffers at each level and the tensors
each one holds, the spatial fan-out below each level (how many PEs, vector MACs and lanes, along
which loop dimensions) and where the network sits: every transfer from a level above ``PE`` into
the PE level or below crosses the NoC from the router of
:attr:`~approxtvm.targets.vacc.hardware.NoC.global_buffer_node`. Mapping validation, the mapper's
closed form and search, the counting walk, the fault model and the Timeloop export read the
hierarchy instead of fixed level numbers, so a spec without a global buffer, or with an extra
level, maps, counts, prices and injects faults with the same code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from approxtvm.targets.vacc.hardware import AcceleratorSpec, PackageNetwork

__all__ = ["COMPUTE", "LEVEL_ORDER", "Fanout", "Hierarchy", "Level"]

#: The levels of the shipped specs, outermost first (a level exists when one of its buffers does;
#: ``DRAM`` and ``PE`` always do). A spec may add shared levels above the PEs: see
#: :meth:`~approxtvm.targets.vacc.hardware.AcceleratorSpec.on_chip_levels`.
LEVEL_ORDER: tuple[str, ...] = ("DRAM", "GlobalBuffer", "PE", "Register")
#: Pseudo-level of the MACs, below the innermost storage level.
COMPUTE = "MAC"


@dataclass(frozen=True, slots=True)
class Fanout:
    """Spatial units directly below a level.

    Attributes
    ----------
    unit
        What is replicated (``PE``, ``vector MAC``, ``lane``).
    count
        Units available per instance of the level.
    dims
        Loop dimensions a spatial loop may split across these units.
    """

    unit: str
    count: int
    dims: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Level:
    """One storage level.

    Attributes
    ----------
    name
        Level name (the mapping's :class:`~approxtvm.targets.vacc.mapping.LevelNest` name).
    buffers
        Buffers of one instance of the level (``dram`` for ``DRAM``).
    fanout
        Spatial units below the level (empty: only temporal loops at this level).
    """

    name: str
    buffers: tuple[str, ...]
    fanout: tuple[Fanout, ...] = ()


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Levels, buffers, tensors and fan-outs of one accelerator (build with :meth:`of`).

    Attributes
    ----------
    levels
        Storage levels, outermost (``DRAM``) first.
    buffer_tensors
        ``(buffer, tensors it holds)`` for every buffer, ``dram`` (all tensors) included.
    package
        The level above the chiplet: the chiplet mesh and its network (``None``: one chiplet,
        no package). :mod:`approxtvm.targets.vacc.package` splits layers across it.
    """

    levels: tuple[Level, ...]
    buffer_tensors: tuple[tuple[str, tuple[str, ...]], ...]
    package: PackageNetwork | None = None

    @property
    def chiplets(self) -> int:
        """Chiplets a layer may be split across (1 without a package)."""
        return 1 if self.package is None else self.package.num_chiplets

    @staticmethod
    def of(spec: AcceleratorSpec) -> Hierarchy:
        """The hierarchy ``spec`` describes (cached per spec)."""
        return _hierarchy(spec)

    # -- levels -------------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """Level names, outermost first."""
        return tuple(lv.name for lv in self.levels)

    def index(self, name: str) -> int:
        """Position of level ``name`` (:data:`COMPUTE` is one past the innermost level)."""
        return len(self.levels) if name == COMPUTE else self.names.index(name)

    @property
    def compute(self) -> int:
        """Index of the MACs (one past the innermost storage level)."""
        return len(self.levels)

    @property
    def pe(self) -> int:
        """Index of the ``PE`` level."""
        return self.names.index("PE")

    @property
    def network_source(self) -> int:
        """Index of the level whose spatial loops spread tiles over the PEs (across the NoC)."""
        return self.pe - 1

    def crosses_network(self, parent: int, child: int) -> bool:
        """Whether a transfer from level ``parent`` into level ``child`` travels over the NoC."""
        return parent < self.pe <= child < self.compute

    # -- buffers ----------------------------------------------------------------------------------

    def level_of(self, buffer: str) -> int:
        """Index of the level holding ``buffer``."""
        for i, lv in enumerate(self.levels):
            if buffer in lv.buffers:
                return i
        raise KeyError(buffer)

    def tensors(self, buffer: str) -> tuple[str, ...]:
        """Tensors ``buffer`` holds."""
        return dict(self.buffer_tensors)[buffer]

    def storage_chain(self, tensor: str) -> tuple[str, ...]:
        """Buffers holding ``tensor``, outermost (``dram``) first."""
        return tuple(b for lv in self.levels for b in lv.buffers if tensor in self.tensors(b))

    def buffer_of(self, level: str, tensor: str) -> str | None:
        """The buffer of ``level`` holding ``tensor`` (``None`` if the tensor bypasses the level)."""
        for b in self.levels[self.index(level)].buffers:
            if tensor in self.tensors(b):
                return b
        return None

    @property
    def shared_buffers(self) -> tuple[str, ...]:
        """On-chip buffers above the PEs (one instance per chip), outermost first."""
        return tuple(b for lv in self.levels[1 : self.pe] for b in lv.buffers)

    @property
    def on_chip_buffers(self) -> tuple[tuple[str, str], ...]:
        """``(buffer, level name)`` of every on-chip buffer, innermost first."""
        return tuple((b, lv.name) for lv in reversed(self.levels[1:]) for b in lv.buffers)


@functools.lru_cache(maxsize=64)
def _hierarchy(spec: AcceleratorSpec) -> Hierarchy:
    pa = spec.pe_array
    fanouts = {
        "PE": (
            Fanout("vector MAC", pa.vector_macs_per_pe, pa.vector_mac_spatial_dims),
            Fanout("lane", pa.lanes_per_vector_mac, pa.lane_spatial_dims),
        ),
    }
    levels: list[Level] = [Level("DRAM", ("dram",))]
    for name, bufs in spec.on_chip_levels():
        levels.append(Level(name, tuple(m.name for m in bufs), fanouts.get(name, ())))
    # the level just above the PEs spreads tiles over them
    pe = [lv.name for lv in levels].index("PE")
    src = levels[pe - 1]
    levels[pe - 1] = Level(src.name, src.buffers, (Fanout("PE", pa.num_pes, pa.pe_spatial_dims),))
    tensors = (("dram", ("weight", "input", "output")), *((m.name, m.tensors) for m in spec.memories))
    return Hierarchy(tuple(levels), tensors, spec.package)
