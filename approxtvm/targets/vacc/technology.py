"""Technology presets: the fault-model numbers of a process node, each with its source.

A technology YAML (shipped ones in ``targets/vacc/technologies/``, or a user's own file) sets the
SRAM bit-failure table and, optionally, the NoC link-noise model of an accelerator spec::

    name: my_node
    description: ...
    node_nm: 22
    sram:
      nominal_vdd_v: 0.8
      ber_table: [[0.8, 1.0e-12], [0.6, 1.0e-6], [0.5, 1.0e-3]]   # volts, bit-cell failure probability
      failure: write                # write | read | both: how the source observed the failures
    noc:                            # optional
      nominal_vdd_v: 0.8
      sigma_v: 0.04                 # BER = Q(V_sw / 2σ)
      swing_model: linear           # linear | quadratic
    sources:                        # every number: a citation, or "estimate: <reasoning>"
      sram.ber_table[0.6]: "..."
      sram.ber_table[0.8-0.5]: "..."   # a voltage range covers the points inside it

Between table points the failure probability is interpolated log-linearly (straight lines of
``log10 BER`` against volts); voltages below the lowest point are rejected (no extrapolation), the
nominal supply and above are fault-free. :func:`apply_technology` returns the spec with these
numbers in place; every number's source travels with it (:func:`technology_sources`).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approxtvm.errors import ConfigError
from approxtvm.schema import Schema, check
from approxtvm.targets.vacc.components import SRAM_FAILURE_MODES
from approxtvm.targets.vacc.hardware import AcceleratorSpec, SramVoltageModel
from approxtvm.targets.vacc.yaml_io import load_strict_yaml

#: How an SRAM failure reaches the data (``SramVoltageModel.failure_mode``, used by the fault planner).
FAILURE_MODES = SRAM_FAILURE_MODES
_POINT_KEY = re.compile(r"^sram\.ber_table\[(?P<hi>[0-9.]+)(?:-(?P<lo>[0-9.]+))?\]$")


@dataclass(frozen=True)
class Technology:
    """One technology preset.

    Attributes
    ----------
    name
        Preset name.
    description
        One line: what was measured, where.
    node_nm
        Process node of the measurements.
    sram
        Bit-cell failure table of the SRAM buffers.
    sram_failure
        ``write`` / ``read`` / ``both`` (see :data:`FAILURE_MODES`).
    noc_nominal_vdd_v, noc_sigma_v, noc_swing_model
        Link-noise model, ``None`` where the preset leaves the spec's value.
    sources
        Key → citation or ``"estimate: …"``.
    """

    name: str
    description: str
    node_nm: int
    sram: SramVoltageModel
    sram_failure: str = "write"
    noc_nominal_vdd_v: float | None = None
    noc_sigma_v: float | None = None
    noc_swing_model: str | None = None
    sources: tuple[tuple[str, str], ...] = ()


def shipped_technologies() -> list[str]:
    """Names of the presets shipped with the package."""
    folder = importlib.resources.files("approxtvm.targets.vacc").joinpath("technologies")
    return sorted(r.name.removesuffix(".yaml") for r in folder.iterdir() if r.name.endswith(".yaml"))


def load_technology(name_or_path: str | Path) -> Technology:
    """A shipped preset by name, or a technology YAML by path (validated; errors name file and key)."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml") and not p.exists():
        if str(name_or_path) not in shipped_technologies():
            raise ConfigError(
                f"unknown technology {name_or_path!r}",
                expected=f"one of {shipped_technologies()} or a YAML path",
                found=str(name_or_path),
                fix="pass a shipped preset name or an existing technology .yaml file",
            )
        res = importlib.resources.files("approxtvm.targets.vacc").joinpath("technologies", f"{name_or_path}.yaml")
        with importlib.resources.as_file(res) as real:
            return _parse(load_strict_yaml(real), str(real))
    return _parse(load_strict_yaml(p), str(p))


def _err(file: str, key: str, what: str, expected: str, found: Any, fix: str) -> ConfigError:
    return ConfigError(f"{file}: key {key!r}: {what}", expected=expected, found=repr(found), fix=fix)


@dataclass(frozen=True, slots=True)
class SramSection:
    """``sram:`` of a technology file.

    Attributes
    ----------
    nominal_vdd_v
        Supply of the measurements (V).
    ber_table
        ``[volts, bit-cell failure probability]`` points, highest voltage first.
    failure
        How the source observed the failures (see :data:`FAILURE_MODES`).
    """

    nominal_vdd_v: float
    ber_table: tuple[tuple[float, float], ...]
    failure: str = "write"

    def __post_init__(self) -> None:
        check(
            self.failure in FAILURE_MODES,
            "failure",
            "unknown failure mode",
            expected=f"one of {FAILURE_MODES}",
            found=self.failure,
            fix="pick one",
        )
        self.model()  # the spec model's own checks (table order, voltage range), keyed under sram

    def model(self) -> SramVoltageModel:
        """The spec's SRAM model (its own checks: table order, voltage range)."""
        return SramVoltageModel(self.nominal_vdd_v, self.ber_table, self.failure)


@dataclass(frozen=True, slots=True)
class NocSection:
    """``noc:`` of a technology file (each value ``None``: the spec's is kept).

    Attributes
    ----------
    nominal_vdd_v
        Full link swing (V).
    sigma_v
        Link noise σ (V): ``BER = Q(V_sw / 2σ)``.
    swing_model
        ``linear`` or ``quadratic``.
    """

    nominal_vdd_v: float | None = None
    sigma_v: float | None = None
    swing_model: str | None = None

    def __post_init__(self) -> None:
        v, sigma, swing = self.nominal_vdd_v, self.sigma_v, self.swing_model
        check(v is None or 0 < v <= 5, "nominal_vdd_v", "impossible voltage", expected="0 < V <= 5", found=v,
              fix="give the supply in volts")  # fmt: skip
        check(sigma is None or 0 < sigma < 1, "sigma_v", "impossible noise", expected="0 < σ < 1 V", found=sigma,
              fix="give volts")  # fmt: skip
        check(swing in (None, "linear", "quadratic"), "swing_model", "unknown model", expected="linear or quadratic",
              found=swing, fix="pick one")  # fmt: skip


@dataclass(frozen=True, slots=True)
class TechnologyFile:
    """The layout of a technology YAML (see the module docstring).

    Attributes
    ----------
    name, description
        Preset name and one line on what was measured, where.
    sram, noc
        The sections.
    sources
        Key → citation or ``"estimate: …"``; every number of the file needs one.
    node_nm
        Process node of the measurements (0: not given).
    """

    name: str
    sram: SramSection
    sources: dict[str, str]
    description: str = ""
    node_nm: int = 0
    noc: NocSection = NocSection()

    def __post_init__(self) -> None:
        check(self.node_nm >= 0, "node_nm", "not a process node", expected="a whole number of nanometres",
              found=self.node_nm, fix="e.g. node_nm: 28")  # fmt: skip
        check(all(v.strip() for v in self.sources.values()), "sources", "empty source",
              expected="key: citation or 'estimate: ...'", found=self.sources, fix="cite each number")  # fmt: skip


#: Technology files ↔ :class:`TechnologyFile`: strict types, unknown keys rejected, errors keyed.
TECHNOLOGY_SCHEMA = Schema(ConfigError)


def _parse(data: Any, file: str) -> Technology:
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping", expected="name, sram, sources", found=repr(data))
    f = TECHNOLOGY_SCHEMA.structure(data, TechnologyFile, source=file)
    model = f.sram.model()
    tech = Technology(
        name=f.name,
        description=f.description,
        node_nm=f.node_nm,
        sram=model,
        sram_failure=model.failure_mode,
        noc_nominal_vdd_v=f.noc.nominal_vdd_v,
        noc_sigma_v=f.noc.sigma_v,
        noc_swing_model=f.noc.swing_model,
        sources=tuple(f.sources.items()),
    )
    # which keys the file spells (a number needs a source only where the file gives it)
    _check_sources(tech, data["sram"], data.get("noc") or {}, file, has_node="node_nm" in data)
    return tech


def _check_sources(tech: Technology, sram: dict[str, Any], noc: dict[str, Any], file: str, *, has_node: bool) -> None:
    """Every key names a number of the file, and every number has a source."""
    keys = {f"sram.{k}" for k in sram if k != "ber_table"} | {f"noc.{k}" for k in noc}
    keys |= {"node_nm"} if has_node else set()
    covered: set[str] = set()
    points = [v for v, _ in tech.sram.ber_table]
    covered_points: set[float] = set()
    for key, _ in tech.sources:
        m = _POINT_KEY.match(key)
        if key == "sram.ber_table":
            covered_points.update(points)
        elif m:
            hi = float(m["hi"])
            lo = float(m["lo"]) if m["lo"] else hi
            inside = [v for v in points if min(hi, lo) - 1e-9 <= v <= max(hi, lo) + 1e-9]
            if not inside:
                raise _err(file, f"sources.{key}", "names no point of sram.ber_table", f"voltages among {points}",
                           key, "correct the voltage")  # fmt: skip
            covered_points.update(inside)
        elif key in keys:
            covered.add(key)
        else:
            raise _err(file, f"sources.{key}", "names no number of this file", f"one of {sorted(keys)} or "
                       "sram.ber_table[V] / [V1-V2]", key, "correct the key")  # fmt: skip
    missing = sorted(keys - covered) + [f"sram.ber_table[{v}]" for v in points if v not in covered_points]
    if missing:
        raise _err(file, "sources", "numbers without a source", "a citation or 'estimate: …' for each",
                   missing, "add a source (or label the number an estimate, with the reasoning)")  # fmt: skip


def apply_technology(spec: AcceleratorSpec, tech: Technology | str | Path) -> AcceleratorSpec:
    """``spec`` with the preset's SRAM failure table and link-noise model (everything else kept)."""
    if not isinstance(tech, Technology):
        tech = load_technology(tech)
    noc = spec.noc
    changes = {
        k: v
        for k, v in (
            ("nominal_vdd_v", tech.noc_nominal_vdd_v),
            ("sigma_v", tech.noc_sigma_v),
            ("swing_model", tech.noc_swing_model),
        )
        if v is not None
    }
    if changes:
        noc = dataclasses.replace(noc, **changes)
    return dataclasses.replace(spec, name=f"{spec.name}+{tech.name}", sram=tech.sram, noc=noc)


def technology_sources(tech: Technology | str | Path) -> list[tuple[str, str, str]]:
    """``(key, value, source)`` rows of a preset, one per number (table points one by one)."""
    if not isinstance(tech, Technology):
        tech = load_technology(tech)
    src = dict(tech.sources)
    rows: list[tuple[str, str, str]] = (
        [("node_nm", f"{tech.node_nm} nm", src.get("node_nm", ""))] if tech.node_nm else []
    )
    rows.append(("sram.nominal_vdd_v", f"{tech.sram.nominal_vdd_v} V", src.get("sram.nominal_vdd_v", "")))
    for v, b in tech.sram.ber_table:
        rows.append((f"sram.ber_table[{v}]", f"{b:.3g}", _point_source(src, v)))
    rows.append(("sram.failure", tech.sram_failure, src.get("sram.failure", "")))
    for key, val in (
        ("noc.nominal_vdd_v", tech.noc_nominal_vdd_v),
        ("noc.sigma_v", tech.noc_sigma_v),
        ("noc.swing_model", tech.noc_swing_model),
    ):
        if val is not None:
            rows.append((key, str(val), src.get(key, "")))
    return rows


def _point_source(src: dict[str, str], volts: float) -> str:
    for key, text in src.items():
        m = _POINT_KEY.match(key)
        if m:
            hi = float(m["hi"])
            lo = float(m["lo"]) if m["lo"] else hi
            if min(hi, lo) - 1e-9 <= volts <= max(hi, lo) + 1e-9:
                return text
    return src.get("sram.ber_table", "")
