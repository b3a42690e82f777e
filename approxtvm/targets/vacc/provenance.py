"""Where every number of an accelerator spec comes from.

A spec YAML may carry a top-level ``sources:`` mapping: a dotted key (``noc.sigma_v``,
``memories.weight_buffer``) → a citation, or ``"estimate: <reasoning>"``. A key covers every
number under it; the most specific key wins. :func:`spec_sources` lists each number of the spec
with its source; :func:`unsourced` names the numbers nobody accounted for (the shipped specs have
none, a test checks it). ``approxtvm spec show NAME`` prints the table.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approxtvm.errors import ConfigError
from approxtvm.targets.vacc.yaml_io import load_strict_yaml


@dataclass(frozen=True)
class SourcedValue:
    """One number of a spec and where it comes from.

    Attributes
    ----------
    key
        Dotted path in the YAML (``memories.weight_buffer.read_energy_pj``).
    value
        The value as written.
    source
        Citation, ``"estimate: …"``, or ``""`` when the file gives none.
    """

    key: str
    value: Any
    source: str

    @property
    def is_estimate(self) -> bool:
        """Whether the number is a labelled assumption rather than a published figure."""
        return self.source.lower().startswith("estimate")


def shipped_specs() -> list[str]:
    """Names of the accelerator specs shipped with the package."""
    folder = importlib.resources.files("approxtvm.targets.vacc").joinpath("specs")
    return sorted(r.name.removesuffix(".yaml") for r in folder.iterdir() if r.name.endswith(".yaml"))


def spec_path(name_or_path: str | Path) -> Path:
    """The YAML file of a shipped spec name or a path (what :meth:`AcceleratorSpec.load` reads)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    res = importlib.resources.files("approxtvm.targets.vacc").joinpath("specs", f"{name_or_path}.yaml")
    if not res.is_file():
        raise ConfigError(
            f"unknown accelerator {name_or_path!r}",
            expected=f"one of {shipped_specs()} or a YAML path",
            found=str(name_or_path),
            fix="pass a shipped name or an existing .yaml file",
        )
    with importlib.resources.as_file(res) as real:
        return Path(real)


def _leaves(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Numbers (and number lists) of a YAML tree with their dotted paths."""
    out: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list) and data and all(isinstance(x, list | dict) for x in data):
        out.append((prefix, data))  # a table: one value
    elif isinstance(data, bool | int | float | list | str):
        out.append((prefix, data))
    return out


def spec_sources(name_or_path: str | Path) -> list[SourcedValue]:
    """Every value of a spec file with its source (the most specific covering key), in file order."""
    path = spec_path(name_or_path)
    data = load_strict_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping", expected="name, pe_array, ...", found=repr(data))
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        raise ConfigError(
            f"{path}: key 'sources': not a mapping",
            expected="dotted key -> citation or 'estimate: ...'",
            found=repr(sources),
            fix="write one `key: text` line per number or group",
        )
    body = {k: v for k, v in data.items() if k not in ("sources", "name")}
    leaves = _leaves(body)
    known = {k for k, _ in leaves}
    for key in sources:
        if not any(k == key or k.startswith(f"{key}.") for k in known):
            raise ConfigError(
                f"{path}: key 'sources.{key}': names no value of the spec",
                expected="a dotted path such as noc.sigma_v or memories.weight_buffer",
                found=str(key),
                fix="correct the key",
            )
    rows = []
    for key, value in leaves:
        covering = [s for s in sources if key == s or key.startswith(f"{s}.")]
        best = max(covering, key=len) if covering else None
        rows.append(SourcedValue(key, value, str(sources[best]) if best else ""))
    return rows


def unsourced(name_or_path: str | Path) -> list[str]:
    """Keys of the spec's numbers that carry no source (strings such as names and enums excepted)."""
    return [r.key for r in spec_sources(name_or_path) if not r.source and _numeric(r.value)]


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, list):
        return any(_numeric(v) for v in value)
    return False
