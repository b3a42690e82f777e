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
from approxtvm.schema import rekey
from approxtvm.targets.vacc.components import SRAM_FAILURE_MODES
from approxtvm.targets.vacc.hardware import AcceleratorSpec, SramVoltageModel
from approxtvm.targets.vacc.yaml_io import load_strict_yaml

#: How an SRAM failure reaches the data (``SramVoltageModel.failure_mode``, used by the fault planner).
FAILURE_MODES = SRAM_FAILURE_MODES
_TOP_KEYS = {"name", "description", "node_nm", "sram", "noc", "sources"}
_SRAM_KEYS = {"nominal_vdd_v", "ber_table", "failure"}
_NOC_KEYS = {"nominal_vdd_v", "sigma_v", "swing_model"}
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


def _section(data: dict[str, Any], key: str, allowed: set[str], file: str, required: bool) -> dict[str, Any]:
    sec = data.get(key)
    if sec is None and not required:
        return {}
    if not isinstance(sec, dict):
        raise _err(file, key, "missing or not a mapping", f"a mapping with {sorted(allowed)}", sec, "see the docs")
    unknown = set(sec) - allowed
    if unknown:
        k = sorted(unknown)[0]
        raise _err(file, f"{key}.{k}", "unknown key", f"one of {sorted(allowed)}", k, "remove or rename it")
    return sec


def _parse(data: Any, file: str) -> Technology:
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping", expected="name, sram, sources", found=repr(data))
    unknown = set(data) - _TOP_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise _err(file, k, "unknown key", f"one of {sorted(_TOP_KEYS)}", k, "remove or rename it")
    for k in ("name", "sram", "sources"):
        if k not in data:
            raise _err(file, k, "missing", "present", None, f"add {k}")
    sram = _section(data, "sram", _SRAM_KEYS, file, True)
    noc = _section(data, "noc", _NOC_KEYS, file, False)
    failure = str(sram.get("failure", "write"))
    if failure not in FAILURE_MODES:
        raise _err(file, "sram.failure", "unknown failure mode", f"one of {FAILURE_MODES}", failure, "pick one")
    try:
        table = tuple((float(v), float(b)) for v, b in sram["ber_table"])
        model = SramVoltageModel(float(sram["nominal_vdd_v"]), table, failure)
    except (KeyError, TypeError, ValueError) as exc:
        raise _err(
            file, "sram", "incomplete or malformed", "nominal_vdd_v (V) and ber_table [[V, BER], ...]", exc, "fix it"
        ) from None
    except ConfigError as exc:
        raise rekey(exc, file, "sram") from None
    swing = noc.get("swing_model")
    if swing is not None and swing not in ("linear", "quadratic"):
        raise _err(file, "noc.swing_model", "unknown model", "linear or quadratic", swing, "pick one")
    sigma = noc.get("sigma_v")
    if sigma is not None and not (isinstance(sigma, int | float) and 0 < sigma < 1):
        raise _err(file, "noc.sigma_v", "impossible noise", "0 < σ < 1 V", sigma, "give volts")
    noc_vdd = noc.get("nominal_vdd_v")
    if noc_vdd is not None and not (isinstance(noc_vdd, int | float) and 0 < noc_vdd <= 5):
        raise _err(file, "noc.nominal_vdd_v", "impossible voltage", "0 < V <= 5", noc_vdd, "give the supply in volts")
    node = data.get("node_nm", 0)
    if isinstance(node, bool) or not isinstance(node, int) or node < 0:
        raise _err(file, "node_nm", "not a process node", "a whole number of nanometres", node, "e.g. node_nm: 28")
    sources = data["sources"]
    if not isinstance(sources, dict) or not all(isinstance(v, str) and v.strip() for v in sources.values()):
        raise _err(file, "sources", "not a mapping of key -> text", "key: citation or 'estimate: ...'", sources, "")
    tech = Technology(
        name=str(data["name"]),
        description=str(data.get("description", "")),
        node_nm=int(data.get("node_nm", 0)),
        sram=model,
        sram_failure=model.failure_mode,
        noc_nominal_vdd_v=None if noc.get("nominal_vdd_v") is None else float(noc["nominal_vdd_v"]),
        noc_sigma_v=None if sigma is None else float(sigma),
        noc_swing_model=swing,
        sources=tuple((str(k), str(v)) for k, v in sources.items()),
    )
    _check_sources(tech, sram, noc, file, has_node="node_nm" in data)
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
