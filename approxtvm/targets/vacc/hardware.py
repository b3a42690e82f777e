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

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approxtvm.errors import ConfigError
from approxtvm.schema import OMIT, FieldHook, Invalid, Schema, nested
from approxtvm.schema import check as _check
from approxtvm.targets.vacc.components import (
    BUFFER_LEVEL,
    BUFFERS,
    DRAM,
    EnergyTable,
    MemoryLevel,
    PEArray,
    Precision,
    SramVoltageModel,
)
from approxtvm.targets.vacc.links import NoC, PackageNetwork
from approxtvm.targets.vacc.provenance import spec_path
from approxtvm.targets.vacc.yaml_io import load_strict_yaml

__all__ = [
    "BUFFERS",
    "BUFFER_LEVEL",
    "DRAM",
    "MAPPING_OBJECTIVES",
    "AcceleratorSpec",
    "EnergyTable",
    "MapperOptions",
    "MemoryLevel",
    "NoC",
    "PEArray",
    "PackageNetwork",
    "Precision",
    "SramVoltageModel",
]

#: Buffers every spec defines (the global buffer is optional: without it, inputs and outputs move
#: between DRAM and the PE buffers directly, over the NoC).
_REQUIRED_BUFFERS = frozenset(BUFFER_LEVEL) - {"global_buffer"}
#: What the mapper may minimise (see :data:`approxtvm.targets.vacc.mapper.OBJECTIVES`).
MAPPING_OBJECTIVES = ("energy", "edp", "latency")
#: Level names a spec cannot give an extra buffer (DRAM is off-chip; PE and Register are per PE / MAC).
_RESERVED_LEVELS = ("DRAM", "PE", "Register")
_FIXED_TENSORS = {
    "weight_register": ("weight",),
    "weight_buffer": ("weight",),
    "input_buffer": ("input",),
    "accum_buffer": ("output",),
}


# ---------------------------------------------------------------------------------------------
# The whole accelerator
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MapperOptions:
    """How the mapper searches (the spec's ``mapper`` section; written out only when not the default).

    Attributes
    ----------
    uneven
        Refine each layer's even optimum into an uneven mapping: every tensor's buffers may cut the
        loop nest at their own place (:mod:`approxtvm.targets.vacc.uneven`). Off by default.
    """

    uneven: bool = False


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
    mapping_objective
        What the mapper minimises per layer on one chiplet: ``energy`` (default), ``edp``
        (energy × latency) or ``latency``. ``edp`` costs ResNet-18/50 1.7 % energy for 29-39 %
        fewer cycles (README); the digits models map the same either way.
    mapper
        Search options (:class:`MapperOptions`).
    """

    name: str
    pe_array: PEArray
    energy: EnergyTable
    memories: tuple[MemoryLevel, ...]
    noc: NoC
    dram: DRAM
    precision: Precision = Precision()  # noqa: RUF009 (frozen: one shared immutable default)
    sram: SramVoltageModel = SramVoltageModel()  # noqa: RUF009 (frozen: one shared immutable default)
    technology_nm: int = 45
    package: PackageNetwork | None = None
    mapping_objective: str = "energy"
    mapper: MapperOptions = MapperOptions()

    def __post_init__(self) -> None:
        _check(
            self.mapping_objective in MAPPING_OBJECTIVES,
            "mapping_objective",
            "unknown mapper objective",
            expected=f"one of {MAPPING_OBJECTIVES}",
            found=self.mapping_objective,
            fix="energy, edp (energy × latency) or latency",
        )
        names = [m.name for m in self.memories]
        _check(
            len(set(names)) == len(names) and set(names) >= _REQUIRED_BUFFERS,
            "memories",
            "wrong set of buffers",
            expected=f"{sorted(_REQUIRED_BUFFERS)}, optionally global_buffer and extra levels",
            found=names,
            fix="define each buffer exactly once",
        )
        self._check_levels()
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

    def _check_levels(self) -> None:
        """Extra buffers sit at named shared levels above the PEs, listed together, one per tensor."""
        shared: list[str] = []
        for m in self.memories:
            fixed = BUFFER_LEVEL.get(m.name)
            if fixed is not None:
                _check(
                    m.level in ("", fixed),
                    f"memories.{m.name}.level",
                    "the level of this buffer is fixed",
                    expected=repr(fixed),
                    found=m.level,
                    fix="remove the key",
                )
            else:
                _check(
                    bool(m.level) and m.level not in _RESERVED_LEVELS,
                    f"memories.{m.name}.level",
                    "an extra buffer needs the name of its level above the PEs",
                    expected=f"a level name other than {_RESERVED_LEVELS} (e.g. L2)",
                    found=m.level,
                    fix=f"add `level: L2` under memories.{m.name}, or use one of {sorted(BUFFER_LEVEL)}",
                )
            lv = m.mapping_level
            if lv in ("PE", "Register"):
                continue
            _check(
                not shared or lv == shared[-1] or lv not in shared,
                f"memories.{m.name}.level",
                "the buffers of one level must be listed together",
                expected=f"level {lv!r} next to its other buffers",
                found=[x.name for x in self.memories],
                fix="reorder memories: innermost level first, the buffers of a level side by side",
            )
            if lv not in shared:
                shared.append(lv)
            for t in m.tensors:
                other = [x.name for x in self.memories if x.mapping_level == lv and t in x.tensors]
                _check(
                    len(other) == 1,
                    f"memories.{m.name}.tensors",
                    f"two buffers of level {lv} hold {t}",
                    expected="at most one buffer per tensor and level",
                    found=other,
                    fix="keep the tensor in one of them",
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
        return SPEC_SCHEMA.unstructure(self)

    @staticmethod
    def _from_data(data: Any, file: str) -> AcceleratorSpec:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{file}: the top level must be a mapping",
                expected="`name: ...`, `pe_array: ...`",
                found=repr(data),
                fix="start from approxtvm/targets/vacc/specs/simba_like.yaml",
            )
        data = {k: v for k, v in data.items() if k != "sources"}  # provenance: targets.vacc.provenance
        return SPEC_SCHEMA.structure(data, AcceleratorSpec, source=file)

    @staticmethod
    def load(name_or_path: str | Path) -> AcceleratorSpec:
        """Load a shipped spec by name (``"simba_like"``) or a YAML file by path."""
        return AcceleratorSpec.from_yaml(spec_path(name_or_path))

    # -- queries ----------------------------------------------------------------------------------

    def memory(self, name: str) -> MemoryLevel:
        """The buffer called ``name`` (see :data:`BUFFER_LEVEL`)."""
        for m in self.memories:
            if m.name == name:
                return m
        raise KeyError(name)

    def on_chip_levels(self) -> tuple[tuple[str, tuple[MemoryLevel, ...]], ...]:
        """``(level, its buffers)`` of every on-chip level, outermost first.

        The levels above the PEs (the global buffer's, and any extra level) are ordered as their
        buffers appear in :attr:`memories`, innermost first; then come ``PE`` and ``Register``.
        """
        shared: list[str] = []
        for m in self.memories:
            if m.mapping_level not in ("PE", "Register") and m.mapping_level not in shared:
                shared.append(m.mapping_level)
        order = [*reversed(shared), "PE", "Register"]
        return tuple((lv, bufs) for lv in order if (bufs := tuple(m for m in self.memories if m.mapping_level == lv)))

    def storage_chain(self, tensor: str) -> tuple[str, ...]:
        """Buffers holding ``tensor``, outermost (``dram``) first."""
        return ("dram", *(m.name for _, bufs in self.on_chip_levels() for m in bufs if tensor in m.tensors))

    def pe_buffer(self, tensor: str) -> str:
        """The per-PE buffer holding ``tensor``."""
        return {"weight": "weight_buffer", "input": "input_buffer", "output": "accum_buffer"}[tensor]


def _memories_from(value: Any, schema: Schema) -> tuple[MemoryLevel, ...]:
    """``memories: {buffer name: fields}`` → the buffers (the name is the key; fixed tensors implied)."""
    if not isinstance(value, Mapping):
        raise Invalid(
            "not a mapping",
            expected="a mapping of buffer name -> fields",
            found=type(value).__name__,
            fix=f"define {sorted(_REQUIRED_BUFFERS)} (and optionally global_buffer) under memories",
        )
    out = []
    for name, fields in value.items():
        if name not in BUFFER_LEVEL and not (isinstance(fields, Mapping) and "level" in fields):
            close = difflib.get_close_matches(str(name), list(BUFFER_LEVEL), n=1)
            raise Invalid(
                "unknown buffer",
                expected=f"one of {sorted(BUFFER_LEVEL)}",
                found=repr(name),
                fix=(f"did you mean {close[0]!r}? " if close else "remove it, ")
                + "or give it `level: NAME` to add a shared level above the PEs",
                key=str(name),
            )
        if isinstance(fields, Mapping):
            if "name" in fields:
                raise Invalid(
                    "unknown key in MemoryLevel",
                    expected="the buffer's fields, without name",
                    found="'name'",
                    fix="remove it: the key under memories is the buffer's name",
                    key=f"{name}.name",
                )
            implied = {"tensors": list(_FIXED_TENSORS[name])} if name in _FIXED_TENSORS else {}
            fields = {**implied, **fields, "name": name}
        out.append(nested(str(name), lambda fields=fields: schema.convert(fields, MemoryLevel)))
    return tuple(out)


def _memories_to(memories: tuple[MemoryLevel, ...], schema: Schema) -> dict[str, Any]:
    # ``level`` is written only for extra buffers (the fixed ones' is implied by their name)
    return {
        m.name: {k: v for k, v in schema.unstructure(m).items() if k != "name" and (k != "level" or v)}
        for m in memories
    }


#: Spec files ↔ :class:`AcceleratorSpec`: strict types, unknown keys rejected, errors name the key.
SPEC_SCHEMA = Schema(
    ConfigError,
    hooks=(
        FieldHook(AcceleratorSpec, "memories", _memories_from, _memories_to),
        # the default is left out, so specs, saved models and schedules without it stay byte-identical
        FieldHook(
            AcceleratorSpec,
            "mapper",
            lambda v, schema: schema.convert(v, MapperOptions),
            lambda v, schema: OMIT if v == MapperOptions() else schema.unstructure(v),
        ),
    ),
    implied=((MemoryLevel, "name"),),
)
