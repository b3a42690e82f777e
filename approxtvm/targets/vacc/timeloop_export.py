"""Export a layer's architecture, problem and mapping as Timeloop v4 YAML (timeloopfe format).

The files let the same layer be checked by Timeloop/Accelergy. Correspondence:

* Architecture (``arch.yaml``): ``DRAM`` → the shared levels of the spec's hierarchy, outermost
  first (``GlobalBuffer`` on the shipped specs: keeps inputs and outputs, bypasses weights, as our
  spec says; none without a global buffer; an extra level under its level name) → container ``PE``
  with ``meshX`` = number of PEs (Timeloop sees a count; our NoC model owns the 4×4 topology) →
  ``PEInputBuffer``, ``PEWeightBuffer``, ``PEAccuBuffer`` → container ``MACs`` (``meshX`` = lanes,
  ``meshY`` = vector MACs) → ``PEWeightRegs`` → ``MAC``. Capacities and widths come from the spec;
  energies are left to Accelergy (not emitted).
* Problem (``problem.yaml``): Timeloop's CNN layer; our ``K`` is Timeloop's ``M``. Our (P, R) pair is
  Timeloop's (P, R) with ``Wstride``/``Wdilation`` = our ``stride_h``/``dilation_h``; (Q, S) uses
  ``Hstride``/``Hdilation`` = our ``stride_w``/``dilation_w`` (Timeloop only needs the pairs to match).
* Package: on a spec with several chiplets the ``chiplet`` container fans out ``meshX`` =
  chiplets below DRAM, and a :class:`~approxtvm.targets.vacc.package.PackageMapping`'s partition
  is a spatial entry at ``DRAM``; the problem is the whole layer.
* Mapping (``mapping.yaml``): one temporal entry per Timeloop storage level, a spatial entry at the
  storage feeding the PEs (``GlobalBuffer``; ``DRAM`` without a shared level) and one at
  ``PEAccuBuffer`` (lanes on X, vector MACs on Y). Our ``PE`` level loops go to ``PEAccuBuffer``, the
  innermost PE buffer, so all three PE buffers hold the whole PE tile; ``PEInputBuffer`` and
  ``PEWeightBuffer`` get factors of 1. ``permutation`` lists loops innermost first, as Timeloop
  expects. Two loops over one dimension at one level are merged (Timeloop allows one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import Loop, Mapping
from approxtvm.targets.vacc.package import PackageMapping
from approxtvm.targets.vacc.workload import DIMS, LayerShape

__all__ = ["arch_yaml", "export_timeloop", "mapping_yaml", "package_mapping_yaml", "problem_yaml"]

#: Our dimension names -> Timeloop's.
TL_DIM = {"N": "N", "G": "G", "K": "M", "C": "C", "P": "P", "Q": "Q", "R": "R", "S": "S"}
#: Timeloop's grouped-CNN dimensions (``G`` = groups, ``M``/``C`` per group).
_TL_ORDER = ("G", "C", "M", "R", "S", "N", "P", "Q")
_TENSOR = {"weight": "Weights", "input": "Inputs", "output": "Outputs"}


class _Tagged:
    """A mapping emitted with a YAML tag (``!Component``, ``!Container``)."""

    def __init__(self, tag: str, body: dict[str, Any]) -> None:
        self.tag, self.body = tag, body


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes :class:`_Tagged` nodes with their tag and keeps key order."""


_Dumper.add_representer(_Tagged, lambda d, v: d.represent_mapping(v.tag, v.body.items()))


def _dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100)


def _buffer(spec: AcceleratorSpec, buf: str, name: str, datawidth: int) -> _Tagged:
    mem = spec.memory(buf)
    keep = [_TENSOR[t] for t in mem.tensors]
    bypass = [v for k, v in _TENSOR.items() if k not in mem.tensors]
    return _Tagged(
        "!Component",
        {
            "name": name,
            "class": "SRAM" if buf != "weight_register" else "regfile",
            "attributes": {
                "depth": mem.capacity_bits // mem.width_bits,
                "width": mem.width_bits,
                "datawidth": datawidth,
            },
            "constraints": {"dataspace": {"keep": keep, "bypass": bypass}},
        },
    )


def _chiplets(spec: AcceleratorSpec) -> _Tagged:
    """The chiplet container: a fan-out of ``num_chiplets`` below DRAM on a package (a count, as
    for the PEs: the package mesh and its routes are our model's, not Timeloop's)."""
    n = spec.package.num_chiplets if spec.package is not None else 1
    return _Tagged("!Container", {"name": "chiplet", **({"spatial": {"meshX": n}} if n > 1 else {})})


def _shared_levels(spec: AcceleratorSpec) -> tuple[str, ...]:
    """Levels between DRAM and the PEs (``GlobalBuffer`` on the shipped specs), outermost first."""
    hier = Hierarchy.of(spec)
    return hier.names[1 : hier.pe]


def _components(spec: AcceleratorSpec, level: str) -> list[tuple[str, str]]:
    """``(buffer, Timeloop component name)`` of one shared level, outermost first.

    A level with one buffer keeps the level's name (``GlobalBuffer``); several buffers at one
    level are named ``<level>_<buffer>`` and the level's loops go to the last (innermost) one.
    """
    hier = Hierarchy.of(spec)
    bufs = hier.levels[hier.index(level)].buffers
    return [(b, level if len(bufs) == 1 else f"{level}_{b}") for b in bufs]


def arch_yaml(spec: AcceleratorSpec) -> str:
    """Timeloop v4 architecture of ``spec`` (capacities, widths, keep/bypass, fan-outs)."""
    pa, prec = spec.pe_array, spec.precision
    nodes = [
        _Tagged("!Container", {"name": "system", "attributes": {"technology": f"{spec.technology_nm}nm"}}),
        _Tagged(
            "!Component",
            {
                "name": "DRAM",
                "class": "DRAM",
                "attributes": {
                    "type": "LPDDR4",
                    "width": spec.dram.bandwidth_bits_per_cycle,
                    "datawidth": prec.input_bits,
                },
            },
        ),
        _chiplets(spec),
        *(
            _buffer(spec, buf, name, prec.input_bits)
            for level in _shared_levels(spec)
            for buf, name in _components(spec, level)
        ),
        _Tagged("!Container", {"name": "PE", "spatial": {"meshX": pa.num_pes}}),
        _buffer(spec, "input_buffer", "PEInputBuffer", prec.input_bits),
        _buffer(spec, "weight_buffer", "PEWeightBuffer", prec.weight_bits),
        _buffer(spec, "accum_buffer", "PEAccuBuffer", prec.psum_bits),
        _Tagged(
            "!Container",
            {"name": "MACs", "spatial": {"meshX": pa.lanes_per_vector_mac, "meshY": pa.vector_macs_per_pe}},
        ),
        _buffer(spec, "weight_register", "PEWeightRegs", prec.weight_bits),
        _Tagged(
            "!Component",
            {
                "name": "MAC",
                "class": "intmac",
                "attributes": {"multiplier_width": prec.weight_bits, "adder_width": prec.psum_bits},
            },
        ),
    ]
    return _dump({"architecture": {"version": 0.4, "nodes": nodes}})


def problem_yaml(shape: LayerShape) -> str:
    """Timeloop v4 problem (grouped CNN layer; ``G = 1`` for a plain one) for ``shape``.

    An activation × activation MatMul is the grouped dense case: its second operand is the
    ``Weights`` data space, one slice per group.
    """
    b = shape.bounds
    doc = {
        "problem": {
            "version": 0.4,
            "shape": {
                "name": "CNN_Layer",
                "dimensions": list(_TL_ORDER),
                "coefficients": [
                    {"name": "Wstride", "default": 1},
                    {"name": "Hstride", "default": 1},
                    {"name": "Wdilation", "default": 1},
                    {"name": "Hdilation", "default": 1},
                ],
                "data_spaces": [
                    {"name": "Weights", "projection": [[["G"]], [["C"]], [["M"]], [["R"]], [["S"]]]},
                    {
                        "name": "Inputs",
                        "projection": [
                            [["N"]],
                            [["G"]],
                            [["C"]],
                            [["R", "Wdilation"], ["P", "Wstride"]],
                            [["S", "Hdilation"], ["Q", "Hstride"]],
                        ],
                    },
                    {
                        "name": "Outputs",
                        "projection": [[["N"]], [["G"]], [["M"]], [["Q"]], [["P"]]],
                        "read_write": True,
                    },
                ],
            },
            "instance": {
                **{TL_DIM[d]: b[d] for d in DIMS},
                "Wstride": shape.stride_h,
                "Hstride": shape.stride_w,
                "Wdilation": shape.dilation_h,
                "Hdilation": shape.dilation_w,
            },
        }
    }
    return _dump(doc)


def _entry(target: str, kind: str, loops: tuple[Loop, ...], split: int | None = None) -> dict[str, Any]:
    factors = dict.fromkeys(_TL_ORDER, 1)
    order: list[str] = []  # outermost first
    for lp in loops:
        d = TL_DIM[lp.dim]
        factors[d] *= lp.bound
        if d in order:
            order.remove(d)
        order.append(d)
    rest = [d for d in _TL_ORDER if d not in order]
    entry: dict[str, Any] = {
        "target": target,
        "type": kind,
        "factors": " ".join(f"{d}={factors[d]}" for d in _TL_ORDER),
        "permutation": "".join(reversed(order)) + "".join(rest),  # innermost first, unit loops last
    }
    if split is not None:
        entry["split"] = split
    return entry


def mapping_yaml(mapping: Mapping, spec: AcceleratorSpec) -> str:
    """Timeloop v4 mapping equivalent to ``mapping`` on the architecture of :func:`arch_yaml`."""
    mapping.validate(spec)
    return _dump({"mapping": _entries(mapping, spec)})


def package_mapping_yaml(pm: PackageMapping, spec: AcceleratorSpec) -> str:
    """Timeloop v4 mapping of a layer split across a package: the partition is a spatial entry at
    ``DRAM`` (across the chiplet containers), each chiplet's nest as :func:`mapping_yaml`."""
    pm.validate(spec)
    entries = _entries(pm.chiplet, spec)
    part = tuple(Loop(d, n, True) for d, n in pm.partition.splits)
    entries.insert(1, _entry("DRAM", "spatial", part, split=len(_TL_ORDER)))
    return _dump({"mapping": entries})


def _entries(mapping: Mapping, spec: AcceleratorSpec) -> list[dict[str, Any]]:
    if not mapping.is_even:
        raise ScheduleError(
            "an uneven mapping has no Timeloop form here",
            expected="one loop boundary per storage level (an even mapping)",
            found=f"per-tensor cuts {[(b.tensor, b.level, b.temporal_loops_above) for b in mapping.boundaries]}",
            fix="export the mapping of a spec without `mapper: {uneven: true}`",
        )
    lanes = set(spec.pe_array.lane_spatial_dims)
    pe = mapping.level("PE")
    lane_loops = tuple(lp for lp in pe.spatial if lp.dim in lanes)
    vmac_loops = tuple(lp for lp in pe.spatial if lp.dim not in lanes)
    lane_entry = _entry("PEAccuBuffer", "spatial", (*vmac_loops, *lane_loops))
    # loops on X (lanes) come first in the permutation; ``split`` = how many dims go to X
    lane_entry["permutation"] = (
        "".join(TL_DIM[lp.dim] for lp in lane_loops)
        + "".join(TL_DIM[lp.dim] for lp in vmac_loops)
        + "".join(d for d in _TL_ORDER if d not in {TL_DIM[lp.dim] for lp in pe.spatial})
    )
    lane_entry["split"] = len({lp.dim for lp in lane_loops})
    entries = [_entry("DRAM", "temporal", mapping.level("DRAM").temporal)]
    feeder = "DRAM"  # the storage the spatial loops across the PEs hang off
    for level in _shared_levels(spec):
        comps = _components(spec, level)
        entries += [_entry(name, "temporal", ()) for _, name in comps[:-1]]
        feeder = comps[-1][1]
        entries.append(_entry(feeder, "temporal", mapping.level(level).temporal))
    across = mapping.levels[Hierarchy.of(spec).network_source].spatial
    entries += [
        _entry(feeder, "spatial", across, split=len(_TL_ORDER)),
        _entry("PEInputBuffer", "temporal", ()),
        _entry("PEWeightBuffer", "temporal", ()),
        _entry("PEAccuBuffer", "temporal", pe.temporal),
        lane_entry,
        _entry("PEWeightRegs", "temporal", mapping.level("Register").temporal),
    ]
    return entries


def export_timeloop(mapping: Mapping | PackageMapping, spec: AcceleratorSpec, directory: str | Path) -> dict[str, Path]:
    """Write ``arch.yaml``, ``problem.yaml`` and ``mapping.yaml`` for one layer into ``directory``
    (a :class:`~approxtvm.targets.vacc.package.PackageMapping`: the whole layer across the package).

    Returns
    -------
    dict
        ``{"arch": path, "problem": path, "mapping": path}``.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {"arch": d / "arch.yaml", "problem": d / "problem.yaml", "mapping": d / "mapping.yaml"}
    out["arch"].write_text(arch_yaml(spec))
    out["problem"].write_text(problem_yaml(mapping.shape))
    if isinstance(mapping, PackageMapping):
        out["mapping"].write_text(package_mapping_yaml(mapping, spec))
    else:
        out["mapping"].write_text(mapping_yaml(mapping, spec))
    return out
