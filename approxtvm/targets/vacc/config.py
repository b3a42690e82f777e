"""Approximation configuration of one layer, and the policy that assigns one to every layer."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from approxtvm.errors import PolicyError
from approxtvm.schema import FieldHook, Invalid, Schema
from approxtvm.targets.vacc.yaml_io import load_strict_yaml

#: Buffers whose supply voltage a policy may scale (DESIGN §5).
SCALABLE_BUFFERS = ("input_buffer", "weight_buffer", "global_buffer", "accum_buffer")
#: Weight encodings a policy may force (DESIGN §6); ``auto`` picks the smallest per tile.
COMPRESSION_MODES = ("none", "auto", "dense", "bitmask", "rle", "codebook", "codebook_bitmask")
#: Nominal supply (V); swings and SRAM voltages cannot exceed it.
VDD_V = 0.9
#: Range of NoC swings and SRAM voltages the fault/energy models are calibrated for (V).
SWING_RANGE_V = (0.2, VDD_V)
SRAM_RANGE_V = (0.4, VDD_V)


@dataclass(frozen=True, slots=True)
class ApproxConfig:
    """Approximation knobs of one layer.

    Attributes
    ----------
    multiplier
        Multiplier spec: ``exact``, a catalogue name (``mul8u_2HH``), a family spec
        (``bam:h=4,v=0``) or a path to a table / C model.
    noc_swing_v
        NoC link voltage swing in volts; ``None`` is the nominal (full) swing.
    noc_protected_msbs
        Most-significant bits of each 8-bit word sent at full swing (0–8).
    nop_swing_v
        Package (chiplet-to-chiplet) link swing in volts, on a package spec; ``None`` is the
        links' nominal swing (``package.nominal_swing_v`` of the spec).
    nop_protected_msbs
        Most-significant bits of each 8-bit word sent over package links at full swing (0–8).
    sram_v
        Scaled buffer → supply voltage in volts, as sorted ``(buffer, volts)`` pairs.
    compression
        Weight encoding mode (see :data:`COMPRESSION_MODES`).
    """

    multiplier: str = "exact"
    noc_swing_v: float | None = None
    noc_protected_msbs: int = 0
    sram_v: tuple[tuple[str, float], ...] = field(default=())
    compression: str = "none"
    nop_swing_v: float | None = None
    nop_protected_msbs: int = 0

    def __post_init__(self) -> None:
        _check_config(self)

    @property
    def sram_v_map(self) -> dict[str, float]:
        """``sram_v`` as a dict."""
        return dict(self.sram_v)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``sram_v`` as a mapping)."""
        return POLICY_SCHEMA.unstructure(self)

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "config") -> ApproxConfig:
        """Build from a mapping, rejecting unknown keys; ``where`` names the source in errors."""
        return _config_from_mapping(ApproxConfig(), d, where, "")

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): identical configs give identical strings."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _check_protected_msbs(key: str, value: object) -> None:
    """A link's protected MSBs: a whole number of bits, 0–8 (NoC and package links alike)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(
            f"{key}: must be an integer",
            expected="0–8",
            found=repr(value),
            fix="write a whole number of bits",
        )
    if not 0 <= value <= 8:
        raise PolicyError(
            f"{key}: out of range",
            expected="an integer 0–8",
            found=repr(value),
            fix="protect between 0 and 8 bits",
        )


def _check_config(c: ApproxConfig) -> None:
    """Range checks; errors are ``"<field>: <what>"`` (the schema adds the file and the key)."""
    if not isinstance(c.multiplier, str) or not c.multiplier:
        raise PolicyError(
            "multiplier: must be a non-empty string",
            expected="e.g. exact, mul8u_2HH",
            found=repr(c.multiplier),
            fix="name a multiplier (`approxtvm multipliers list`)",
        )
    if c.noc_swing_v is not None and not SWING_RANGE_V[0] <= c.noc_swing_v <= SWING_RANGE_V[1]:
        raise PolicyError(
            "noc_swing_v: out of range",
            expected=f"{SWING_RANGE_V[0]}–{SWING_RANGE_V[1]} V",
            found=f"{c.noc_swing_v} V",
            fix="choose a swing inside the modelled range",
        )
    _check_protected_msbs("noc_protected_msbs", c.noc_protected_msbs)
    if c.nop_swing_v is not None and not 0 < c.nop_swing_v <= VDD_V:
        raise PolicyError(
            "nop_swing_v: out of range",
            expected=f"0 < swing <= {VDD_V} V (and at most the package links' nominal swing of the spec)",
            found=f"{c.nop_swing_v} V",
            fix="choose a package link swing in volts",
        )
    _check_protected_msbs("nop_protected_msbs", c.nop_protected_msbs)
    for buf, v in c.sram_v:
        if buf not in SCALABLE_BUFFERS:
            raise PolicyError(
                f"sram_v.{buf}: unknown buffer",
                expected=f"one of {', '.join(SCALABLE_BUFFERS)}",
                found=buf,
                fix="use the buffer names of the accelerator YAML",
            )
        if not SRAM_RANGE_V[0] <= v <= SRAM_RANGE_V[1]:
            raise PolicyError(
                f"sram_v.{buf}: out of range",
                expected=f"{SRAM_RANGE_V[0]}–{SRAM_RANGE_V[1]} V",
                found=f"{v} V",
                fix="choose a voltage inside the BER table's range",
            )
    if c.compression not in COMPRESSION_MODES:
        raise PolicyError(
            f"compression: unknown compression mode {c.compression!r}",
            expected=f"one of {', '.join(COMPRESSION_MODES)}",
            found=c.compression,
            fix="pick one of the listed modes",
        )


#: A policy pattern with this prefix is a regular expression (full match) over layer ids.
REGEX_PREFIX = "re:"


def pattern_matches(pattern: str, layer_id: str) -> bool:
    """A policy pattern matches a layer id: equal, ``fnmatch`` glob, or ``re:`` full-match regex."""
    if pattern.startswith(REGEX_PREFIX):
        return re.fullmatch(pattern[len(REGEX_PREFIX) :], layer_id) is not None
    return pattern == layer_id or fnmatch.fnmatchcase(layer_id, pattern)


_VOLT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(mV|V)\s*$")


def _volts(value: Any, key: str = "") -> float:
    """A voltage: a number (volts) or a string with unit ``V`` or ``mV``."""
    if isinstance(value, bool):
        raise Invalid(
            "expected a voltage",
            expected="a number in volts or '600 mV'",
            found=repr(value),
            fix="write e.g. 0.6 or '600 mV'",
            key=key,
        )
    if isinstance(value, int | float):
        return float(value)
    m = _VOLT.match(str(value))
    if not m:
        raise Invalid(
            f"bad voltage {value!r}",
            expected="a number in volts, or a string in V or mV",
            found=repr(value),
            fix="write e.g. 0.6, '0.6 V' or '600 mV'",
            key=key,
        )
    return float(m.group(1)) / (1000.0 if m.group(2) == "mV" else 1.0)


def _swing_from(value: Any, _: Schema) -> float | None:
    return None if value is None else _volts(value)


def _sram_from(value: Any, _: Schema) -> tuple[tuple[str, float], ...]:
    """``sram_v: {buffer: voltage}`` → sorted ``(buffer, volts)`` pairs."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise Invalid(
            "must map buffers to voltages",
            expected="{input_buffer: 0.7, weight_buffer: 0.8}",
            found=repr(value),
            fix="write a mapping",
        )
    return tuple(sorted((str(k), _volts(v, str(k))) for k, v in value.items()))


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """The layout of a policy file (see :meth:`ApproxPolicy.from_dict`).

    Attributes
    ----------
    default
        Knobs of every layer (:class:`ApproxConfig` keys).
    layers
        Layer pattern → knobs overriding ``default`` (or a bare multiplier name).
    host
        Layer patterns kept on the host.
    """

    default: dict[str, Any] | None = None
    layers: dict[str, Any] | None = None
    host: tuple[str, ...] | None = None


#: Policy files and configs ↔ :class:`ApproxConfig`: strict types, unknown keys rejected, voltages
#: with units (``'600 mV'``), errors naming the file and the key.
POLICY_SCHEMA = Schema(
    PolicyError,
    hooks=(
        FieldHook(ApproxConfig, "noc_swing_v", _swing_from),
        FieldHook(ApproxConfig, "nop_swing_v", _swing_from),
        FieldHook(ApproxConfig, "sram_v", _sram_from, lambda v, _: dict(v)),
    ),
)


def _config_from_mapping(base: ApproxConfig, d: Any, source: str, path: str) -> ApproxConfig:
    """``base`` with the knobs of mapping ``d`` (at key ``path`` of ``source``) applied."""
    if not isinstance(d, Mapping):
        raise POLICY_SCHEMA.fail(
            source,
            path,
            "expected a mapping of knobs",
            expected=f"keys among {', '.join(base.to_dict())}",
            found=type(d).__name__,
            fix="write `key: value` pairs",
        )
    return POLICY_SCHEMA.structure({**base.to_dict(), **d}, ApproxConfig, source=source, path=path)


@dataclass(frozen=True, slots=True)
class ApproxPolicy:
    """Assigns an :class:`ApproxConfig` to every layer.

    Attributes
    ----------
    default
        Configuration of layers no rule matches.
    rules
        ``(pattern, overrides)`` pairs in order; ``pattern`` is a layer id (the ONNX node
        name), an ``fnmatch`` glob (``/layer1/*``) or, prefixed with ``re:``, a regular
        expression matched against the whole id (``re:/layer[12]/.*/Conv``); later matching
        rules override earlier ones key by key.
    host
        Patterns (same syntax) of layers kept on the host even if the accelerator could take them.
    """

    default: ApproxConfig = ApproxConfig()
    rules: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    host: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for pattern in [p for p, _ in self.rules] + list(self.host):
            if pattern.startswith(REGEX_PREFIX):
                try:
                    re.compile(pattern[len(REGEX_PREFIX) :])
                except re.error as exc:
                    raise PolicyError(
                        f"policy pattern {pattern!r} is not a valid regular expression",
                        expected="re:<Python regular expression>",
                        found=str(exc),
                        fix="escape special characters, or use a glob without the re: prefix",
                    ) from None

    @staticmethod
    def uniform(
        multiplier: str = "exact",
        *,
        noc_swing_v: float | None = None,
        noc_protected_msbs: int = 0,
        sram_v: Mapping[str, float] | None = None,
        compression: str = "none",
        nop_swing_v: float | None = None,
        nop_protected_msbs: int = 0,
    ) -> ApproxPolicy:
        """The same configuration for every layer."""
        return ApproxPolicy(
            ApproxConfig.from_dict(
                {
                    "multiplier": multiplier,
                    "noc_swing_v": noc_swing_v,
                    "noc_protected_msbs": noc_protected_msbs,
                    "sram_v": dict(sram_v or {}),
                    "compression": compression,
                    "nop_swing_v": nop_swing_v,
                    "nop_protected_msbs": nop_protected_msbs,
                },
                "ApproxPolicy.uniform",
            )
        )

    @staticmethod
    def exact() -> ApproxPolicy:
        """No approximation anywhere."""
        return ApproxPolicy()

    @staticmethod
    def per_layer(layers: Mapping[str, Mapping[str, Any] | str], default: ApproxConfig | None = None) -> ApproxPolicy:
        """Per-layer overrides; a bare string value names the layer's multiplier."""
        rules = []
        for pattern, over in layers.items():
            over = {"multiplier": over} if isinstance(over, str) else dict(over)
            _config_from_mapping(ApproxConfig(), over, "ApproxPolicy.per_layer", f"layers.{pattern}")  # validate now
            rules.append((str(pattern), tuple(sorted(over.items(), key=lambda kv: kv[0]))))
        return ApproxPolicy(default or ApproxConfig(), tuple(rules))

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "policy") -> ApproxPolicy:
        """Build from ``{default: {...}, layers: {pattern: {...}}}``."""
        if not isinstance(d, Mapping):
            raise PolicyError(
                f"{where}: a policy must be a mapping",
                expected="keys default, layers",
                found=type(d).__name__,
                fix="see the README's policy example",
            )
        f = POLICY_SCHEMA.structure(d, PolicyFile, source=where)
        default = _config_from_mapping(ApproxConfig(), f.default or {}, where, "default")
        rules = []
        for pattern, over in (f.layers or {}).items():
            over = {"multiplier": over} if isinstance(over, str) else over
            _config_from_mapping(ApproxConfig(), over, where, f"layers.{pattern}")
            rules.append((str(pattern), tuple(sorted(dict(over).items(), key=lambda kv: kv[0]))))
        return ApproxPolicy(default, tuple(rules), f.host or ())

    def multiplier_names(self) -> frozenset[str]:
        """Every multiplier spec the policy can assign (default and rules)."""
        names = {self.default.multiplier}
        names |= {str(v) for _, over in self.rules for k, v in over if k == "multiplier"}
        return frozenset(names)

    def wants_signed(self) -> bool:
        """``True`` when every multiplier is a signed EvoApproxLib circuit (``mul8s_*``): int8 mode."""
        return all(n.rpartition("/")[2].startswith("mul8s_") for n in self.multiplier_names())

    @staticmethod
    def from_spec(spec: str | os.PathLike[str]) -> ApproxPolicy:
        """A policy YAML file, or, when no such file exists, a multiplier spec used on every layer.

        ``from_spec("mul8u_FTA")`` = ``ApproxPolicy.uniform("mul8u_FTA")``; a string that looks like
        a path (``.yaml``/``.yml`` or a separator) must be an existing file.
        """
        text = os.fspath(spec)
        looks_like_path = text.lower().endswith((".yaml", ".yml")) or "/" in text.replace("v2022/", "")
        if Path(text).is_file() or looks_like_path:
            return ApproxPolicy.from_yaml(text)
        return ApproxPolicy.uniform(text)

    @staticmethod
    def from_yaml(path: str | os.PathLike[str]) -> ApproxPolicy:
        """Load a policy file; errors name the file and the key."""
        p = Path(path)
        if not p.is_file():
            raise PolicyError(
                f"policy file {p} does not exist",
                expected="a YAML policy file",
                found="no such file",
                fix="check the path",
            )
        data = load_strict_yaml(p, PolicyError, "policy file")
        return ApproxPolicy.from_dict(data if data is not None else {}, str(p))

    def config_for(self, layer_id: str) -> ApproxConfig:
        """The configuration of one layer."""
        cfg = self.default
        for pattern, over in self.rules:
            if pattern_matches(pattern, layer_id):
                cfg = _config_from_mapping(cfg, dict(over), "policy", f"layers.{pattern}")
        return cfg

    def keeps_on_host(self, layer_id: str) -> bool:
        """Whether the policy keeps ``layer_id`` on the host."""
        return any(pattern_matches(p, layer_id) for p in self.host)

    def unmatched_rules(self, layer_ids: list[str]) -> list[str]:
        """Rule and host patterns that match none of ``layer_ids`` (typos in a policy file)."""
        patterns = [p for p, _ in self.rules] + list(self.host)
        return [p for p in patterns if not any(pattern_matches(p, lid) for lid in layer_ids)]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form accepted by :meth:`from_dict`."""
        d: dict[str, Any] = {"default": self.default.to_dict()}
        if self.rules:
            d["layers"] = {p: dict(o) for p, o in self.rules}
        if self.host:
            d["host"] = list(self.host)
        return d

    def digest(self) -> str:
        """Content hash of the policy (sha256 of its canonical JSON, 16 hex digits)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
