"""The exploration genome: per-layer multiplier, NoC swing, buffer voltages, protected MSBs.

A :class:`SearchSpace` lists the allowed value of every knob; a genome is a tuple of integer
indices into those lists (one multiplier index per layer, then swing, input-buffer voltage,
weight-buffer voltage and protected-MSB indices). A genome decodes to a canonical
:class:`Configuration`, whose JSON is what the journal hashes: two genomes that mean the same
hardware (e.g. protected MSBs without a reduced swing) share one configuration and one evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from approxtvm.errors import ExplorationError
from approxtvm.targets.vacc.config import VDD_V, ApproxConfig, ApproxPolicy

#: The study's library: EvoApproxLib's unsigned 8×8 power–MAE Pareto set (v1 names, shipped with
#: the package; :func:`approxtvm.runtime.multipliers.pareto_set`, exact circuit ``mul8u_1JFF`` as
#: ``exact``), ordered from most to least power so that neighbouring genome indices are similar
#: circuits (crossover and mutation act on the index). A test holds it equal to the catalogue's set.
EVOAPPROX_MULTIPLIERS: tuple[str, ...] = (
    "exact",
    "mul8u_Y48",
    "mul8u_125K",
    "mul8u_EXZ",
    "mul8u_KEM",
    "mul8u_150Q",
    "mul8u_QJD",
    "mul8u_2AC",
    "mul8u_2HH",
    "mul8u_NGR",
    "mul8u_185Q",
    "mul8u_19DB",
    "mul8u_DM1",
    "mul8u_12N4",
    "mul8u_17KS",
    "mul8u_1AGV",
    "mul8u_FTA",
    "mul8u_JV3",
    "mul8u_18DU",
    "mul8u_13QR",
    "mul8u_17C8",
    "mul8u_17QU",
)
#: Multipliers the project implements itself (parametric families), most to least power.
FAMILY_MULTIPLIERS: tuple[str, ...] = (
    "exact",
    "trunc:k=2",
    "trunc:k=4",
    "trunc:k=5",
    "bam:h=6,v=2",
    "drum:k=6",
    "drum:k=5",
    "drum:k=4",
    "drum:k=3",
)
#: The default multiplier library of the genome and of experiment 1.
DEFAULT_MULTIPLIERS: tuple[str, ...] = EVOAPPROX_MULTIPLIERS
#: Named multiplier libraries (``--multipliers evoapprox`` / ``families`` on the command line).
MULTIPLIER_LIBRARIES: dict[str, tuple[str, ...]] = {"evoapprox": EVOAPPROX_MULTIPLIERS, "families": FAMILY_MULTIPLIERS}
#: NoC link swings in volts (``None`` = nominal full swing).
DEFAULT_SWINGS_V: tuple[float | None, ...] = (None, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
#: Input/weight buffer supply voltages in volts (``VDD_V`` = not scaled).
DEFAULT_SRAM_V: tuple[float, ...] = (VDD_V, 0.8, 0.7, 0.6, 0.5)
#: Protected most-significant bits per NoC word.
DEFAULT_PROTECTED_MSBS: tuple[int, ...] = (0, 2, 4)


@dataclass(frozen=True, slots=True)
class Configuration:
    """One point of the design space, in canonical form.

    Attributes
    ----------
    multipliers
        ``(layer id, multiplier spec)`` pairs of the layers whose multiplier is not ``exact``,
        sorted by layer id.
    noc_swing_v
        NoC link swing in volts; ``None`` is nominal.
    noc_protected_msbs
        MSBs sent at full swing (always 0 when the swing is nominal).
    sram_v
        Scaled buffers ``(buffer, volts)``, sorted; nominal voltages are omitted.
    """

    multipliers: tuple[tuple[str, str], ...] = ()
    noc_swing_v: float | None = None
    noc_protected_msbs: int = 0
    sram_v: tuple[tuple[str, float], ...] = field(default=())

    @staticmethod
    def make(
        multipliers: Mapping[str, str] | None = None,
        *,
        noc_swing_v: float | None = None,
        noc_protected_msbs: int = 0,
        sram_v: Mapping[str, float] | None = None,
    ) -> Configuration:
        """Build the canonical form (drops exact layers, nominal voltages, useless protection)."""
        mults = tuple(sorted((str(k), str(v)) for k, v in (multipliers or {}).items() if v != "exact"))
        swing = None if noc_swing_v is None or noc_swing_v >= VDD_V else float(noc_swing_v)
        msbs = int(noc_protected_msbs) if swing is not None else 0
        srams = tuple(sorted((str(b), float(v)) for b, v in (sram_v or {}).items() if v < VDD_V))
        return Configuration(mults, swing, msbs, srams)

    def multiplier_for(self, layer_id: str) -> str:
        """Multiplier spec of one layer (``exact`` unless listed)."""
        return dict(self.multipliers).get(layer_id, "exact")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (mappings for the pair tuples)."""
        return {
            "multipliers": dict(self.multipliers),
            "noc_swing_v": self.noc_swing_v,
            "noc_protected_msbs": self.noc_protected_msbs,
            "sram_v": dict(self.sram_v),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Configuration:
        """Inverse of :meth:`to_dict`."""
        unknown = sorted(set(d) - {"multipliers", "noc_swing_v", "noc_protected_msbs", "sram_v"})
        if unknown:
            raise ExplorationError(
                "a stored configuration has unknown keys",
                expected="multipliers, noc_swing_v, noc_protected_msbs, sram_v",
                found=", ".join(unknown),
                fix="use a journal written by this version",
            )
        return Configuration.make(
            d.get("multipliers") or {},
            noc_swing_v=d.get("noc_swing_v"),
            noc_protected_msbs=int(d.get("noc_protected_msbs") or 0),
            sram_v=d.get("sram_v") or {},
        )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the identity of the configuration."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def policy(self) -> ApproxPolicy:
        """The :class:`ApproxPolicy` that compiles this configuration."""
        default = ApproxConfig(
            noc_swing_v=self.noc_swing_v, noc_protected_msbs=self.noc_protected_msbs, sram_v=self.sram_v
        )
        return ApproxPolicy.per_layer(dict(self.multipliers), default=default)

    def label(self) -> str:
        """Short human-readable description (for tables and plots)."""
        parts = [" ".join(f"{lid}={m}" for lid, m in self.multipliers) or "exact"]
        if self.noc_swing_v is not None:
            parts.append(
                f"swing {self.noc_swing_v:g} V" + (f" p{self.noc_protected_msbs}" if self.noc_protected_msbs else "")
            )
        parts += [f"{b.split('_')[0]} {v:g} V" for b, v in self.sram_v]
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """Allowed values of every knob for a model with the given layers.

    Attributes
    ----------
    layer_ids
        Offloaded layers in program order (one multiplier gene each).
    multipliers
        Multiplier specs (gene value = index); ``exact`` should be first.
    swings_v
        NoC swings in volts (``None`` = nominal).
    input_buffer_v, weight_buffer_v
        Buffer supply voltages in volts.
    protected_msbs
        Protected-MSB counts.
    max_distinct_multipliers
        At most this many different multipliers in the whole network (``exact`` counts when
        used), as a chip has a few multiplier types (ALWANN); ``None`` = no limit. Genomes that use
        more are repaired on decoding (:meth:`repair`).
    """

    layer_ids: tuple[str, ...]
    multipliers: tuple[str, ...] = DEFAULT_MULTIPLIERS
    swings_v: tuple[float | None, ...] = DEFAULT_SWINGS_V
    input_buffer_v: tuple[float, ...] = DEFAULT_SRAM_V
    weight_buffer_v: tuple[float, ...] = DEFAULT_SRAM_V
    protected_msbs: tuple[int, ...] = DEFAULT_PROTECTED_MSBS
    max_distinct_multipliers: int | None = None

    def __post_init__(self) -> None:
        if self.max_distinct_multipliers is not None and self.max_distinct_multipliers < 1:
            raise ExplorationError(
                "search space: max_distinct_multipliers must be at least 1",
                expected="an integer ≥ 1 (or None for no limit)",
                found=str(self.max_distinct_multipliers),
                fix="e.g. 2 for a chip with two multiplier types",
            )
        for name in ("layer_ids", "multipliers", "swings_v", "input_buffer_v", "weight_buffer_v", "protected_msbs"):
            values = getattr(self, name)
            if not values:
                raise ExplorationError(
                    f"search space: {name} is empty",
                    expected="at least one value",
                    found="()",
                    fix=f"list at least one value for {name}",
                )
            if len(set(values)) != len(values):
                raise ExplorationError(
                    f"search space: {name} repeats a value",
                    expected="distinct values",
                    found=repr(values),
                    fix="remove the duplicates",
                )

    @property
    def n_var(self) -> int:
        """Genes per genome."""
        return len(self.layer_ids) + 4

    @property
    def upper(self) -> np.ndarray:
        """Largest index of every gene (lower bounds are 0)."""
        return np.array(
            [len(self.multipliers) - 1] * len(self.layer_ids)
            + [
                len(self.swings_v) - 1,
                len(self.input_buffer_v) - 1,
                len(self.weight_buffer_v) - 1,
                len(self.protected_msbs) - 1,
            ],
            dtype=np.int64,
        )

    def repair(self, genome: Sequence[int] | np.ndarray) -> np.ndarray:
        """The genome with at most :attr:`max_distinct_multipliers` distinct multiplier genes.

        Keeps the most used multipliers (ties: the more accurate, i.e. lower index) and moves every
        other layer to the nearest kept one in library order (the closest circuit in power;
        ties: the more accurate). Genomes within the limit are returned unchanged.
        """
        g = np.array([round(float(v)) for v in genome], dtype=np.int64)
        k = self.max_distinct_multipliers
        nl = len(self.layer_ids)
        used = g[:nl]
        values, counts = np.unique(used, return_counts=True)
        if k is None or len(values) <= k:
            return g
        order = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0]))
        kept = np.array(sorted(v for v, _ in order[:k]), dtype=np.int64)
        dist = np.abs(used[:, None] - kept[None, :])
        g[:nl] = kept[np.argmin(dist, axis=1)]  # argmin takes the first (lower-index) kept on ties
        return g

    def decode(self, genome: Sequence[int] | np.ndarray) -> Configuration:
        """Genome (integer indices) → canonical :class:`Configuration` (repaired, see :meth:`repair`)."""
        g = [round(float(v)) for v in genome]
        if len(g) != self.n_var or any(v < 0 or v > u for v, u in zip(g, self.upper, strict=True)):
            raise ExplorationError(
                "genome does not fit the search space",
                expected=f"{self.n_var} indices within 0..{self.upper.tolist()}",
                found=str(g),
                fix="decode genomes with the space that produced them",
            )
        g = self.repair(g).tolist()
        nl = len(self.layer_ids)
        mults = {lid: self.multipliers[i] for lid, i in zip(self.layer_ids, g[:nl], strict=True)}
        return Configuration.make(
            mults,
            noc_swing_v=self.swings_v[g[nl]],
            noc_protected_msbs=self.protected_msbs[g[nl + 3]],
            sram_v={"input_buffer": self.input_buffer_v[g[nl + 1]], "weight_buffer": self.weight_buffer_v[g[nl + 2]]},
        )

    def _nominal_index(self, values: Sequence[Any], nominal: Any) -> int:
        return values.index(nominal) if nominal in values else 0

    def uniform_genome(self, multiplier: str) -> np.ndarray:
        """One multiplier on every layer, every other knob nominal (or its first value)."""
        if multiplier not in self.multipliers:
            raise ExplorationError(
                f"multiplier {multiplier!r} is not in the search space",
                expected=", ".join(self.multipliers),
                found=multiplier,
                fix="add it to the multiplier library of the run",
            )
        nl = len(self.layer_ids)
        g = np.zeros(self.n_var, dtype=np.int64)
        g[:nl] = self.multipliers.index(multiplier)
        g[nl] = self._nominal_index(self.swings_v, None)
        g[nl + 1] = self._nominal_index(self.input_buffer_v, VDD_V)
        g[nl + 2] = self._nominal_index(self.weight_buffer_v, VDD_V)
        g[nl + 3] = self._nominal_index(self.protected_msbs, 0)
        return g

    def uniform_genomes(self) -> np.ndarray:
        """The uniform-multiplier genomes, in library order (the NSGA-II seeds)."""
        return np.stack([self.uniform_genome(m) for m in self.multipliers])

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "layer_ids": list(self.layer_ids),
            "multipliers": list(self.multipliers),
            "swings_v": list(self.swings_v),
            "input_buffer_v": list(self.input_buffer_v),
            "weight_buffer_v": list(self.weight_buffer_v),
            "protected_msbs": list(self.protected_msbs),
            "max_distinct_multipliers": self.max_distinct_multipliers,
        }
