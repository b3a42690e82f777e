"""Fault injection for low-swing NoC links and voltage-scaled SRAM buffers (DESIGN §5).

**Where faults live.** The schedule's PE-level tiles are the unit: a weight tile travels
DRAM → NoC → the PE's weight buffer and stays there while the loops above the PE level leave it
resident (weight-stationary); an input tile travels global buffer → NoC (multicast) → the input
buffer of each receiving PE. A NoC bit error corrupts the copy the receiving PE stores; an SRAM
bit-cell failure corrupts the stored tile. Either way the corrupted copy is used for **every
product computed during its residency** and disappears when the tile is evicted: the next fill
of the same tile is a fresh, independently sampled copy. Faults therefore follow the mapping's
reuse (the same walk as :func:`approxtvm.runtime.counting.iter_tiles`), not per-MAC noise.

**Models.** Per bit and per link traversal ``BER_noc = Q(V_sw / (2σ))`` (``spec.noc``); each
receiving PE's copy crosses the links of its own XY route from the global-buffer router (``hops``
links; a PE at that router has none) and is corrupted independently of the other receivers; bits
hit on an even number of hops arrive intact. The ``noc_protected_msbs`` top bits of every 8-bit
word travel at full swing and never flip. SRAM: ``BER_sram = spec.sram.ber_at(V)`` per bit, all 8
bits of a word exposed; ``write`` faults (default) hit every bit once when the tile is written,
``read`` faults hit every bit once per read of its word during the residency (reads per word from
the layer's access counts; a read fault is applied to the whole residency — when in the residency
it happened is not modelled), ``both`` does both. Only the PE input and weight buffers have a fault
model: a scaled global or accumulation buffer saves energy only (the plan lists it in
``energy_only_buffers`` and the run's counters say so). Output and partial-sum traffic is not
corrupted.

**Sampling** is exact per bit: the flip count of each (tile residency, destination, source) is
``Binomial(exposed bits, BER)`` and the flipped bits are uniform without replacement among the
exposed (bit, hop or read) slots. The generator is numpy's counter-based ``Philox``, keyed by
``(seed, layer index)``; its counter selects a block of ``B`` consecutive layer calls (batches of
the run; ``B ≤ 64`` fixed per layer by its number of fault rows and expected flips). Inside a block the draws are
taken in a fixed order — call, tensor (weight, input), source (NoC, SRAM write, SRAM read), tile
(fill), destination (PE) — one vectorised draw per quantity, so a call's faults are a pure
function of (seed, layer, call, tensor, tile, destination) and do not depend on threads,
processes or what ran before.

**Arithmetic.** Faults corrupt the operand bytes entering the multiplier (padding taps included:
the padded input tile is what the input buffer holds). The zero-point correction terms
(``z_w Σx``, ``z_x Σw``, ``K z_x z_w``) stay exact — computed off-array from the fault-free
operands. Hence ``acc_faulty = acc_clean + Δ`` with ``Δ = Σ_residency Σ_MAC [M(x', w') − M(x, w)]``
over the MACs that touch a corrupted byte, and :func:`inject` computes exactly that, sparsely:
the fault-free layer runs on the fast whole-layer kernel and only the products of corrupted bytes
are recomputed (weights × every output of their residency, inputs × every weight of theirs, plus
the exact cross term where a corrupted weight meets a corrupted input). int32 wrap-around is kept.
The inner loops (a scatter primitive and a fused input-fault term) are compiled with TVM once per
model (:func:`tvm_kernels`), with a numpy fallback (:data:`NUMPY_KERNELS`).
:func:`faulty_products_reference` executes the same faults tile by tile with corrupted tile copies
(the specification; tests hold :func:`inject` to it).

**Plumbing.** :class:`ModelFaults` (one per compiled model) holds the per-layer plans, checked
against the spec's model ranges when the model is built; :class:`FaultSession` (one per run)
samples and injects per layer call and adds up the counters reported in
``RunResult.counters["faults"]``. A layer without a scaled component never reaches this module.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from approxtvm.errors import PolicyError
from approxtvm.runtime.counting import _instances, _tile_ids, _walk, simulate_counts
from approxtvm.runtime.kernels import conv2d_products
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.schedule import LayerSchedule
from approxtvm.targets.vacc.workload import DIMS

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = [
    "FAULT_BUFFERS",
    "NUMPY_KERNELS",
    "SRAM_FAULT_MODES",
    "CorruptedWords",
    "FaultKernels",
    "FaultOptions",
    "FaultPlan",
    "FaultSample",
    "FaultSession",
    "ModelFaults",
    "TileGeometry",
    "clear_kernel_cache",
    "compiled_kernels",
    "energy_swing_v",
    "faulty_products_reference",
    "inject",
    "noc_ber",
    "plan_faults",
    "products_delta",
    "sample_block",
    "sample_faults",
    "scatter_numpy",
    "sram_ber",
    "tile_geometry",
    "tvm_kernels",
]

#: When SRAM bit-cell faults happen: on the write of a tile, on every read of a word, or both.
SRAM_FAULT_MODES = ("write", "read", "both")
#: Tensors with a fault model and the PE buffer each one lives in.
FAULT_BUFFERS: dict[str, str] = {"weight": "weight_buffer", "input": "input_buffer"}
_TENSORS = ("weight", "input")
_SOURCES = ("noc", "sram_write", "sram_read")
_WORD_BITS = 8
#: Dimensions of the packed tile arrays the fault kernels index (``7`` columns): the ungrouped
#: ones; grouped layers and activation × activation matmuls are not fault-injected (the executor
#: refuses them), so ``G`` is 1 wherever these arrays are built.
_FDIMS = tuple(d for d in DIMS if d != "G")
_D = {d: i for i, d in enumerate(_FDIMS)}
_MAX_SEED = 2**64
_CHUNK_ELEMS = 1 << 14  # gathered operands per vectorised chunk (small temporaries are reused)
_MAX_BLOCK_CALLS = 64  # layer calls sampled by one generator ...
_BLOCK_ROWS = 1 << 13  # ... as long as their event rows stay below this
_BLOCK_FLIPS = 256.0  # ... and their expected flips too


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def noc_ber(spec: AcceleratorSpec, swing_v: float | None) -> float:
    """Bit error rate of one link traversal at swing ``swing_v``: ``Q(V_sw / (2σ))``.

    ``None`` or a swing at/above the nominal supply is the unscaled link: 0 (no fault model).

    Raises
    ------
    PolicyError
        If the swing is not in ``(0, nominal_vdd_v]``.
    """
    if swing_v is None:
        return 0.0
    nom = spec.noc.nominal_vdd_v
    if not 0 < swing_v <= nom:
        raise PolicyError(
            "NoC swing outside the link model's range",
            expected=f"0 < swing <= {nom} V",
            found=f"{swing_v} V",
            fix=f"choose a swing at or below the NoC supply of {spec.name}",
        )
    if swing_v >= nom:
        return 0.0
    return 0.5 * math.erfc(swing_v / (2.0 * spec.noc.sigma_v) / math.sqrt(2.0))


def sram_ber(spec: AcceleratorSpec, voltage_v: float | None) -> float:
    """Bit-cell failure probability of a buffer supplied at ``voltage_v`` (``spec.sram`` table).

    ``None`` or the nominal supply is the unscaled buffer: 0 (no fault model).

    Raises
    ------
    PolicyError
        If the voltage is outside ``[lowest table voltage, nominal_vdd_v]`` (the table is not
        extrapolated).
    """
    if voltage_v is None:
        return 0.0
    sm = spec.sram
    lo = min(v for v, _ in sm.ber_table)
    if not lo <= voltage_v <= sm.nominal_vdd_v:
        raise PolicyError(
            "SRAM voltage outside the BER table's range",
            expected=f"{lo}–{sm.nominal_vdd_v} V (the sram.ber_table of {spec.name})",
            found=f"{voltage_v} V",
            fix="choose a voltage the table covers, or extend the table",
        )
    if voltage_v >= sm.nominal_vdd_v:
        return 0.0
    return sm.ber_at(voltage_v)


def energy_swing_v(spec: AcceleratorSpec, swing_v: float | None, protected_msbs: int) -> float | None:
    """The swing to price NoC links at when ``protected_msbs`` of every 8 bits travel at full swing.

    Link energy per bit is ``f · 1 + (1 − f) · scale(V_sw)`` with ``f = protected_msbs / 8``;
    returned as the swing whose :meth:`~approxtvm.targets.vacc.hardware.NoC.link_energy_scale`
    equals that mix, so :func:`approxtvm.runtime.energy.energy_of` prices it exactly.
    """
    if swing_v is None:
        return None
    noc_ber(spec, swing_v)  # range check
    f = protected_msbs / _WORD_BITS
    mixed = f + (1.0 - f) * spec.noc.link_energy_scale(swing_v)
    ratio = mixed if spec.noc.swing_model == "linear" else math.sqrt(mixed)
    return min(spec.noc.nominal_vdd_v, spec.noc.nominal_vdd_v * ratio)


@dataclass(frozen=True, slots=True)
class FaultOptions:
    """Run-wide fault-model options (the per-layer knobs are in the schedule's config).

    Attributes
    ----------
    sram_fault_mode
        One of :data:`SRAM_FAULT_MODES`.
    ber_scale
        Multiplies every bit error rate (1 = the models; 0 = the scaled energy without any fault,
        e.g. to separate the energy effect of a voltage from its accuracy effect).
    """

    sram_fault_mode: str = "write"
    ber_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.sram_fault_mode not in SRAM_FAULT_MODES:
            raise PolicyError(
                "unknown SRAM fault mode",
                expected=f"one of {', '.join(SRAM_FAULT_MODES)}",
                found=repr(self.sram_fault_mode),
                fix="use write (default), read or both",
            )
        if not (math.isfinite(self.ber_scale) and self.ber_scale >= 0):
            raise PolicyError(
                "ber_scale must be a finite number >= 0",
                expected=">= 0",
                found=repr(self.ber_scale),
                fix="use 1 for the models' rates, 0 for no faults",
            )


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What can go wrong in one layer, and how likely it is (per bit).

    Attributes
    ----------
    layer_id
        The layer.
    layer_index
        Position of the layer in the model (part of the generator key).
    noc_ber
        Bit error rate per link traversal (0: links at full swing).
    noc_protected_msbs
        Top bits of each 8-bit word sent at full swing (never flipped on the NoC).
    sram_ber
        ``(tensor, BER)`` of the PE buffer holding ``weight`` / ``input`` (0: nominal supply).
    sram_fault_mode
        See :data:`SRAM_FAULT_MODES`.
    energy_only_buffers
        Scaled buffers without a fault model (``global_buffer``, ``accum_buffer``).
    """

    layer_id: str
    layer_index: int
    noc_ber: float = 0.0
    noc_protected_msbs: int = 0
    sram_ber: tuple[tuple[str, float], ...] = (("weight", 0.0), ("input", 0.0))
    sram_fault_mode: str = "write"
    energy_only_buffers: tuple[str, ...] = ()

    @property
    def sram_ber_map(self) -> dict[str, float]:
        """``sram_ber`` as a dict."""
        return dict(self.sram_ber)

    @property
    def trivial(self) -> bool:
        """No scaled component with a fault model: the fault-free fast path runs unchanged."""
        return self.noc_ber == 0.0 and all(b == 0.0 for _, b in self.sram_ber)


def plan_faults(
    schedule: LayerSchedule, spec: AcceleratorSpec, layer_index: int, options: FaultOptions = FaultOptions()
) -> FaultPlan:
    """The fault plan of one layer from its config (range-checked against ``spec``'s models)."""
    cfg = schedule.config
    where = f"layer {schedule.layer_id}"
    try:
        nb = noc_ber(spec, cfg.noc_swing_v)
        sv = cfg.sram_v_map
        for v in sv.values():
            sram_ber(spec, v)  # range check of every scaled buffer, modelled or not
        sb = tuple((t, sram_ber(spec, sv.get(FAULT_BUFFERS[t]))) for t in _TENSORS)
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc.what}", expected=exc.expected, found=exc.found, fix=exc.fix) from None
    energy_only = tuple(
        sorted(b for b, v in sv.items() if b not in FAULT_BUFFERS.values() and v < spec.sram.nominal_vdd_v)
    )
    k = options.ber_scale
    return FaultPlan(
        schedule.layer_id,
        layer_index,
        min(1.0, nb * k),
        cfg.noc_protected_msbs,
        tuple((t, min(1.0, b * k)) for t, b in sb),
        options.sram_fault_mode,
        energy_only,
    )


# ---------------------------------------------------------------------------------------------
# Tile geometry: the PE-level walk of the mapping
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TileGeometry:
    """Where every PE-level tile sits and when it is (re)filled.

    Attributes
    ----------
    steps
        Temporal steps above the PE level (execution order).
    step_start
        ``(steps, 7)`` start of the tile in each dimension of :data:`DIMS`, instance 0.
    inst_off
        ``(instances, 7)`` offset of each PE instance (PE number = instance index).
    ext
        ``(7,)`` tile extent per dimension.
    hops
        ``(instances,)`` links on the XY route from the global-buffer router to each PE.
    fills
        Per tensor: steps at which its tile is (re)loaded, ascending, starting at 0. Fill ``j`` is
        resident during steps ``[fills[j], fills[j+1])``; residency ``r = j · instances + i``.
    words
        Per tensor: elements of one tile (the input tile in padded coordinates, halo included).
    reads_per_word
        Per tensor: reads of each stored word during one residency (read-mode SRAM faults).
    """

    steps: int
    step_start: np.ndarray
    inst_off: np.ndarray
    ext: np.ndarray
    hops: np.ndarray
    fills: dict[str, np.ndarray]
    words: dict[str, int]
    reads_per_word: dict[str, int]
    ends: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t, f in self.fills.items():
            self.ends.setdefault(t, np.append(f[1:], self.steps).astype(np.int64))

    @property
    def instances(self) -> int:
        """PE instances holding tiles."""
        return len(self.inst_off)

    def residency_ends(self, tensor: str) -> np.ndarray:
        """End step (exclusive) of every fill of ``tensor``."""
        return self.ends[tensor]

    def tile_dims(self, tensor: str, mapping: Mapping) -> tuple[int, ...]:
        """Extent of ``tensor``'s tile per axis (weights KCRS, inputs NCHW padded)."""
        e = mapping.tile_extent("PE", tensor)
        return tuple(e.values())


def tile_geometry(mapping: Mapping, spec: AcceleratorSpec) -> TileGeometry:
    """The PE-level walk of ``mapping`` (the same walk as :func:`~approxtvm.runtime.counting.iter_tiles`)."""
    li = mapping.level_index("PE")
    w = _walk(mapping, li)
    start = np.zeros((w.steps, len(_FDIMS)), np.int64)
    for lp, ix, st in zip(w.loops, w.idx, w.strides, strict=True):
        start[:, _D[lp.dim]] += ix * st
    insts = _instances(mapping, li)
    off = np.array([[o[d] for d in _FDIMS] for o in insts], np.int64).reshape(len(insts), len(_FDIMS))
    ext_d = mapping.dim_extents("PE")
    ext = np.array([ext_d[d] for d in _FDIMS], np.int64)
    gx, gy = spec.noc.global_buffer_node
    pa = spec.pe_array
    hops = np.array(
        [abs(x - gx) + abs(y - gy) for x, y in (pa.pe_xy(i % pa.num_pes) for i in range(len(insts)))], np.int64
    )
    fills = {}
    for t in _TENSORS:
        ids = _tile_ids(w, t, mapping.shape.bounds)
        fills[t] = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1]))).astype(np.int64)
    words = {t: mapping.tile_size("PE", t) for t in _TENSORS}
    counts = simulate_counts(mapping, spec)
    rpw = {}
    for t in _TENSORS:
        buf = FAULT_BUFFERS[t]
        rw = [(r, wr) for b, tt, r, wr in counts.buffer_accesses if b == buf and tt == t]
        reads, writes = rw[0] if rw else (0, 0)
        rpw[t] = max(1, round(reads / writes)) if writes else 1
    return TileGeometry(w.steps, start, off, ext, hops, fills, words, rpw)


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CorruptedWords:
    """Corrupted stored words of one tensor in one layer call.

    Attributes
    ----------
    residency
        ``fill index · instances + instance`` of the tile copy (see :class:`TileGeometry`).
    word
        Flat index of the word inside the tile (C order over the tile's axes).
    mask
        uint8 XOR mask applied to the stored byte (never 0).
    """

    residency: np.ndarray
    word: np.ndarray
    mask: np.ndarray

    @staticmethod
    def empty() -> CorruptedWords:
        """No corruption."""
        return CorruptedWords(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return len(self.word)


@dataclass(frozen=True, eq=False)
class _Events:
    """Static per-layer event table: one row per (tensor, source, residency) with exposure > 0.

    Rows are grouped in streams (tensor, source) in :data:`_TENSORS` × :data:`_SOURCES` order.
    """

    slots: np.ndarray  # exposed (bit, hop/read) slots per row
    ber: np.ndarray
    free_bits: np.ndarray  # bits per word that can flip (8 - protected at the NoC)
    tile_slots: np.ndarray  # words · free_bits
    key_base: np.ndarray  # global word key of the row's tile copy: tensor base + residency · words
    stream_start: np.ndarray  # first row of every stream
    streams: tuple[tuple[str, str, int], ...]  # (tensor, source label, exposed slots per call)
    tensor_base: tuple[int, int]  # key base of weight and input words
    words: tuple[int, int]  # words per tile of weight and input
    key_span: int  # keys of one call: weight then input words of every residency

    @property
    def block_calls(self) -> int:
        """Layer calls sampled together: one generator per block, the work per block bounded (rows
        and expected flips), so that a run never samples much more than it uses."""
        flips = float(np.dot(self.slots, self.ber)) if len(self.slots) else 0.0
        by_flips = int(_BLOCK_FLIPS // flips) if flips > 0 else _MAX_BLOCK_CALLS
        return max(1, min(_MAX_BLOCK_CALLS, _BLOCK_ROWS // max(1, len(self.slots)), by_flips))


def _events(plan: FaultPlan, geom: TileGeometry) -> _Events:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("slots", "ber", "fb", "ts", "kb")}
    streams: list[tuple[str, str, int]] = []
    starts: list[int] = []
    n_inst = geom.instances
    sb = plan.sram_ber_map
    free = _WORD_BITS - plan.noc_protected_msbs
    rows = 0
    base = 0
    bases = []
    for t in _TENSORS:
        n_res = len(geom.fills[t]) * n_inst
        words = geom.words[t]
        bases.append(base)
        res = np.arange(n_res, dtype=np.int64)
        per_source = {
            "noc": (plan.noc_ber, free, words * free * np.tile(geom.hops, len(geom.fills[t]))),
            "sram_write": (
                sb[t] if plan.sram_fault_mode in ("write", "both") else 0.0,
                _WORD_BITS,
                np.full(n_res, words * _WORD_BITS, np.int64),
            ),
            "sram_read": (
                sb[t] if plan.sram_fault_mode in ("read", "both") else 0.0,
                _WORD_BITS,
                np.full(n_res, words * _WORD_BITS * geom.reads_per_word[t], np.int64),
            ),
        }
        for src in _SOURCES:
            ber, fb, slots = per_source[src]
            if ber <= 0.0 or fb <= 0:
                continue
            keep = slots > 0
            m = int(keep.sum())
            if not m:
                continue
            streams.append((t, "noc" if src == "noc" else "sram", int(slots.sum())))
            starts.append(rows)
            rows += m
            cols["slots"].append(slots[keep].astype(np.int64))
            cols["ber"].append(np.full(m, ber))
            cols["fb"].append(np.full(m, fb, np.int64))
            cols["ts"].append(np.full(m, words * fb, np.int64))
            cols["kb"].append(base + res[keep] * words)
        base += n_res * words

    def cat(k: str, dtype: Any) -> np.ndarray:
        return np.concatenate(cols[k]) if cols[k] else np.zeros(0, dtype)

    return _Events(
        cat("slots", np.int64),
        cat("ber", np.float64),
        cat("fb", np.int64),
        cat("ts", np.int64),
        cat("kb", np.int64),
        np.array(starts, np.int64),
        tuple(streams),
        (bases[0], bases[1]),
        (geom.words["weight"], geom.words["input"]),
        base,
    )


@dataclass(frozen=True, eq=False)
class FaultSample:
    """The faults of one layer call.

    Attributes
    ----------
    weight, input
        Corrupted words of each tensor.
    streams
        ``(tensor, source, exposed bits)`` of every sampled stream (source ``noc`` or ``sram``).
    flipped
        Bits flipped per stream (binomial counts; a bit hit on two hops counts twice).
    """

    weight: CorruptedWords
    input: CorruptedWords
    streams: tuple[tuple[str, str, int], ...] = ()
    flipped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def of(self, tensor: str) -> CorruptedWords:
        """Corrupted words of ``tensor``."""
        return self.weight if tensor == "weight" else self.input

    @property
    def counters(self) -> dict[str, dict[str, Any]]:
        """Per tensor: ``bits_exposed``, ``bits_flipped``, ``words_corrupted``, and per source."""
        return _counters(self.streams, self.flipped, (len(self.weight), len(self.input)))


def _counters(
    streams: tuple[tuple[str, str, int], ...], flipped: np.ndarray, words: tuple[int, int], calls: int = 1
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for ti, t in enumerate(_TENSORS):
        c: dict[str, Any] = {"bits_exposed": 0, "bits_flipped": 0, "words_corrupted": int(words[ti])}
        for (st, label, exposed), fl in zip(streams, flipped.tolist(), strict=True):
            if st != t:
                continue
            sub = c.setdefault(label, {"bits_exposed": 0, "bits_flipped": 0})
            sub["bits_exposed"] += exposed * calls
            sub["bits_flipped"] += int(fl)
            c["bits_exposed"] += exposed * calls
            c["bits_flipped"] += int(fl)
        out[t] = c
    return out


def _check_seed(seed: int) -> None:
    if not 0 <= seed < _MAX_SEED:
        raise PolicyError(
            "fault seed out of range",
            expected="0 <= seed < 2**64",
            found=str(seed),
            fix="use a non-negative 64-bit seed",
        )


def sample_faults(
    plan: FaultPlan, geom: TileGeometry, *, seed: int, call: int = 0, events: _Events | None = None
) -> FaultSample:
    """Sample the corrupted words of one layer call (see the module docstring for the key).

    Parameters
    ----------
    plan, geom
        The layer's fault plan and tile geometry.
    seed
        Run seed.
    call
        Index of the layer call within the run (batch index).
    events
        The layer's precomputed event table (built here if ``None``).
    """
    ev = events if events is not None else _events(plan, geom)
    b = ev.block_calls
    return sample_block(plan, geom, seed=seed, block=call // b, events=ev)[call % b]


def sample_block(
    plan: FaultPlan, geom: TileGeometry, *, seed: int, block: int, events: _Events | None = None
) -> list[FaultSample]:
    """The samples of layer calls ``block·B … block·B + B − 1`` (``B = events.block_calls``).

    One ``Philox`` generator per (seed, layer, block) draws, in order, the flip counts of every
    (call, tensor, source, tile, destination) row, then the flipped slots of the rows that have
    flips: a call's faults are a pure function of (seed, layer, call), whatever ran before.
    """
    _check_seed(seed)
    ev = events if events is not None else _events(plan, geom)
    B, E = ev.block_calls, len(ev.slots)
    if not E:
        return [FaultSample(CorruptedWords.empty(), CorruptedWords.empty()) for _ in range(B)]
    rng = np.random.Generator(np.random.Philox(key=seed | (plan.layer_index << 64), counter=block << 128))
    counts = rng.binomial(np.tile(ev.slots, B), np.tile(ev.ber, B)).reshape(B, E)
    flipped = np.add.reduceat(counts, ev.stream_start, axis=1)
    flat = counts.ravel()
    hit = np.flatnonzero(flat)
    if not len(hit):
        return [FaultSample(CorruptedWords.empty(), CorruptedWords.empty(), ev.streams, flipped[c]) for c in range(B)]
    reps = flat[hit]
    owner = np.repeat(hit, reps)  # global row: call · E + event
    row = owner % E
    nslots = ev.slots[row]
    pos = _positions(rng, nslots)
    if reps.max() > 1:  # positions are without replacement inside each row: redraw repeats
        multi = np.flatnonzero(np.repeat(reps > 1, reps))  # only rows with several flips can repeat
        while True:
            order = multi[np.lexsort((pos[multi], owner[multi]))]
            so, sp = owner[order], pos[order]
            dup = np.flatnonzero((so[1:] == so[:-1]) & (sp[1:] == sp[:-1])) + 1
            if not len(dup):
                break
            idx = np.sort(order[dup])
            pos[idx] = _positions(rng, nslots[idx])
    fb = ev.free_bits[row]
    within = pos % ev.tile_slots[row]
    key = (owner // E) * ev.key_span + ev.key_base[row] + within // fb
    mask = np.left_shift(np.uint8(1), (within % fb).astype(np.uint8))
    if len(key) > 1:
        order = np.argsort(key, kind="stable")
        key, mask = key[order], mask[order]
        starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
        mask = np.bitwise_xor.reduceat(mask, starts)
        key = key[starts]
        nz = mask != 0
        key, mask = key[nz], mask[nz]
    bounds = np.searchsorted(
        key, (np.arange(B)[:, None] * ev.key_span + np.array([0, ev.tensor_base[1], ev.key_span])).ravel()
    )
    out = []
    for c in range(B):
        w0, x0, x1 = bounds[3 * c : 3 * c + 3]
        parts = []
        for ti, (lo, hi) in enumerate(((w0, x0), (x0, x1))):
            k = key[lo:hi] - (c * ev.key_span + ev.tensor_base[ti])
            parts.append(CorruptedWords(k // ev.words[ti], k % ev.words[ti], mask[lo:hi]))
        out.append(FaultSample(parts[0], parts[1], ev.streams, flipped[c]))
    return out


def _positions(rng: np.random.Generator, nslots: np.ndarray) -> np.ndarray:
    """Uniform slot indices in ``[0, nslots)`` (53-bit uniforms; bias below 2^-40 for our sizes)."""
    if not len(nslots):
        return np.zeros(0, np.int64)
    pos = (rng.random(len(nslots)) * nslots).astype(np.int64)
    return np.minimum(pos, nslots - 1)


# ---------------------------------------------------------------------------------------------
# Applying faults: sparse exact deltas
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _LayerArrays:
    """Per-layer constants of the delta computation (flat offsets, table, weight bytes, tap tables)."""

    table: np.ndarray  # int32 (65536,): table[a * 256 + w]
    wflat: np.ndarray  # weight bytes, flat (K·C·R·S)
    dims: tuple[int, ...]  # N, K, C, P, Q, R, S, Hp, Wp
    box_x: np.ndarray  # (Nt·Pt·Qt,) offsets in the padded input of an output box's (n, p, q)
    box_o: np.ndarray  # same box in the output
    k_w: np.ndarray  # (Kt,) offsets of k in the weights
    k_o: np.ndarray  # (Kt,) offsets of k in the output
    taps_start: np.ndarray  # per input-tile position (hh·Wt + ww): first of its taps in the tap arrays
    taps_len: np.ndarray  # number of (r, s) taps of the tile that read that position
    taps: np.ndarray  # (4, n) tile-relative r, s and the output p, q each tap produces
    xpad: np.ndarray | None  # padded-input scratch (border = zero point), refilled inside each call
    cache: dict[str, Any] = field(default_factory=dict)  # kernels' prepared static arguments


def _layer_arrays(prog: LayerProgram, geom: TileGeometry) -> _LayerArrays:
    s = prog.schedule.shape
    hp, wp = s.h + s.pad_top + s.pad_bottom, s.w + s.pad_left + s.pad_right
    if s.op == "dense":
        hp = wp = 1
    e = {d: int(geom.ext[_D[d]]) for d in _FDIMS}
    n, p, q = np.meshgrid(np.arange(e["N"]), np.arange(e["P"]), np.arange(e["Q"]), indexing="ij")
    box_x = (n * (s.c * hp * wp) + p * (s.stride_h * wp) + q * s.stride_w).ravel().astype(np.int64)
    box_o = (n * (s.k * s.p * s.q) + p * s.q + q).ravel().astype(np.int64)
    kt = np.arange(e["K"], dtype=np.int64)
    ht = s.input_extent(e["P"], e["R"], s.stride_h, s.dilation_h)
    wt = s.input_extent(e["Q"], e["S"], s.stride_w, s.dilation_w)
    starts, lens, taps = [], [], []
    for hh in range(ht):
        for ww in range(wt):
            starts.append(len(taps))
            for r in range(e["R"]):
                dp, mh = divmod(hh - r * s.dilation_h, s.stride_h)
                if hh - r * s.dilation_h < 0 or mh or dp >= e["P"]:
                    continue
                for t in range(e["S"]):
                    dq, mw = divmod(ww - t * s.dilation_w, s.stride_w)
                    if ww - t * s.dilation_w < 0 or mw or dq >= e["Q"]:
                        continue
                    taps.append((r, t, dp, dq))
            lens.append(len(taps) - starts[-1])
    xpad = None
    if s.op != "dense" and (s.pad_top or s.pad_bottom or s.pad_left or s.pad_right):
        zx = np.array(prog.schedule.quant.input_zero_point).astype(prog.weight.dtype).view(np.uint8)
        xpad = np.full((s.n, s.c, hp, wp), zx, np.uint8)
    return _LayerArrays(
        np.array(prog.multiplier.table, dtype=np.int32).ravel(),  # own writeable copies
        np.array(prog.weight).view(np.uint8).ravel(),
        (s.n, s.k, s.c, s.p, s.q, s.r, s.s, hp, wp),
        box_x,
        box_o,
        kt * (s.c * s.r * s.s),
        kt * (s.p * s.q),
        np.array(starts, np.int64),
        np.array(lens, np.int64),
        np.array(taps, np.int64).reshape(-1, 4).T.copy(),
        xpad,
    )


def _padded_input(x: np.ndarray, prog: LayerProgram, scratch: np.ndarray | None = None) -> np.ndarray:
    """The padded input bytes, flat (what the input buffers hold, halo and padding included).

    ``scratch`` (border already holding the zero point) is reused for the result when given.
    """
    s = prog.schedule.shape
    xb = np.ascontiguousarray(x).view(np.uint8)
    if s.op == "dense" or not (s.pad_top or s.pad_bottom or s.pad_left or s.pad_right):
        return xb.ravel()
    if scratch is None:
        zx = np.array(prog.schedule.quant.input_zero_point).astype(x.dtype).view(np.uint8)
        scratch = np.full((s.n, s.c, s.h + s.pad_top + s.pad_bottom, s.w + s.pad_left + s.pad_right), zx, np.uint8)
    scratch[:, :, s.pad_top : s.pad_top + s.h, s.pad_left : s.pad_left + s.w] = xb
    return scratch.ravel()


def _input_bytes(
    x: np.ndarray, prog: LayerProgram, n: np.ndarray, c: np.ndarray, h: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """Input bytes at padded coordinates ``(n, c, h, w)`` (the zero point in the padding), int64."""
    s = prog.schedule.shape
    xb = np.ascontiguousarray(x).view(np.uint8).ravel()
    if s.op == "dense":
        return xb[n * s.c + c].astype(np.int64)
    hu, wu = h - s.pad_top, w - s.pad_left
    inside = (hu >= 0) & (hu < s.h) & (wu >= 0) & (wu < s.w)
    idx = ((n * s.c + c) * s.h + np.clip(hu, 0, s.h - 1)) * s.w + np.clip(wu, 0, s.w - 1)
    zx = int(np.array(prog.schedule.quant.input_zero_point).astype(x.dtype).view(np.uint8))
    return np.where(inside, xb[idx], zx).astype(np.int64)


def _expand_steps(begin: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(record index, step) for every step of every record's residency."""
    lens = end - begin
    rec = np.repeat(np.arange(len(begin)), lens)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    return rec, begin[rec] + (np.arange(int(lens.sum())) - first)


def products_delta(
    x: np.ndarray, prog: LayerProgram, geom: TileGeometry, sample: FaultSample, arrays: _LayerArrays | None = None
) -> np.ndarray:
    """``Σ M(x', w') − Σ M(x, w)`` of the layer under ``sample`` (int64, shaped ``(N, K, P, Q)``).

    Exact: weight faults × every output of their residency, input faults × every weight of theirs,
    and the cross term where a corrupted weight meets a corrupted input in the same step.
    """
    s = prog.schedule.shape
    out = np.zeros(s.n * s.k * s.p * s.q, np.int64)
    _delta_into(out, x, prog, geom, sample, arrays if arrays is not None else _layer_arrays(prog, geom))
    return out.reshape(s.n, s.k, s.p, s.q)


def scatter_numpy(
    src: np.ndarray,
    sbase: np.ndarray,
    soff: np.ndarray,
    obase: np.ndarray,
    ooff: np.ndarray,
    a1: np.ndarray,
    a0: np.ndarray,
    lut: np.ndarray,
    out: np.ndarray,
    mul: int,
) -> None:
    """``out[obase[i] + ooff[j]] += lut[v·mul + a1[i]] − lut[v·mul + a0[i]]``, ``v = src[sbase[i] + soff[j]]``.

    The inner loop of both fault terms (a corrupted weight against the inputs of its outputs, a
    corrupted input against the weights of its outputs). Chunked so that temporaries stay small
    (fresh large numpy temporaries page-fault); :func:`tvm_kernels` holds the compiled equivalent.
    """
    chunk = max(1, _CHUNK_ELEMS // max(1, len(soff)))
    for a in range(0, len(sbase), chunk):
        sl = slice(a, a + chunk)
        v = src[sbase[sl, None] + soff].astype(np.int64) * mul
        d = lut[v + a1[sl, None]] - lut[v + a0[sl, None]]
        np.add.at(out, (obase[sl, None] + ooff).ravel(), d.astype(out.dtype, copy=False).ravel())  # 1-D: fast


Scatter = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
    None,
]


InputTerm = Callable[[np.ndarray, "LayerProgram", TileGeometry, "_LayerArrays", CorruptedWords, np.ndarray], None]
Delta = Callable[[np.ndarray, "LayerProgram", TileGeometry, "_LayerArrays", "FaultSample", np.ndarray], None]


@dataclass(frozen=True, eq=False)
class FaultKernels:
    """The inner loops of :func:`inject`.

    Attributes
    ----------
    scatter
        :func:`scatter_numpy` or its compiled equivalent.
    input_term
        Fused input-fault term (corrupted words straight to output deltas), or ``None`` to expand
        rows with numpy and :attr:`scatter` them.
    delta
        The whole delta fused (weight term, input term and cross term), or ``None``.
    """

    scatter: Scatter
    input_term: InputTerm | None = None
    delta: Delta | None = None


#: Pure-numpy kernels (no TVM needed).
NUMPY_KERNELS = FaultKernels(scatter_numpy)


def tvm_kernels() -> FaultKernels:
    """The inner loops compiled with TVM (serial loops, int32 wrap-around, in place); see
    :func:`compiled_kernels` for the per-process copy the runtime uses.

    Raises whatever TVM raises when it cannot build; :class:`ModelFaults` then falls back to numpy.
    """
    import tvm
    import tvm_ffi
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    @T.prim_func(s_tir=True)
    def input_delta(
        prm_h: T.handle,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        tst_h: T.handle,
        tln_h: T.handle,
        taps_h: T.handle,
        x_h: T.handle,
        w_h: T.handle,
        lut_h: T.handle,
        out_h: T.handle,
    ):
        T.func_attr({"global_symbol": "input_delta", "tirx.noalias": True})
        ne, nf, nss, nio, nhw, ntp, nx, nw, no = (
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
        )
        prm = T.match_buffer(prm_h, (24,), "int64", align=1)
        res = T.match_buffer(res_h, (ne,), "int64", align=1)
        word = T.match_buffer(word_h, (ne,), "int64", align=1)
        mask = T.match_buffer(mask_h, (ne,), "uint8", align=1)
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        tst = T.match_buffer(tst_h, (nhw,), "int64", align=1)
        tln = T.match_buffer(tln_h, (nhw,), "int64", align=1)
        taps = T.match_buffer(taps_h, (ntp,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        w = T.match_buffer(w_h, (nw,), "uint8", align=1)
        lut = T.match_buffer(lut_h, (65536,), "int32", align=1)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        for e in range(ne):
            # prm: I Nt Ct Ht Wt C K P Q R S sh sw dh dw pt pl H W Kt zx ntaps
            i = res[e] % prm[0]
            jf = res[e] // prm[0]
            ww = word[e] % prm[4]
            hh = (word[e] // prm[4]) % prm[3]
            cc = (word[e] // (prm[4] * prm[3])) % prm[2]
            nn = word[e] // (prm[4] * prm[3] * prm[2])
            f0 = fills[jf]
            n = ss[f0 * 7 + 0] + io[i * 7 + 0] + nn
            c = ss[f0 * 7 + 2] + io[i * 7 + 2] + cc
            p0 = ss[f0 * 7 + 3] + io[i * 7 + 3]
            q0 = ss[f0 * 7 + 4] + io[i * 7 + 4]
            r0 = ss[f0 * 7 + 5] + io[i * 7 + 5]
            s0 = ss[f0 * 7 + 6] + io[i * 7 + 6]
            hu = p0 * prm[11] + r0 * prm[13] + hh - prm[15]
            wu = q0 * prm[12] + s0 * prm[14] + ww - prm[16]
            inside = T.int64(0) <= hu and hu < prm[17] and T.int64(0) <= wu and wu < prm[18]
            xo = T.if_then_else(
                inside,
                T.Cast(
                    "int64", x[T.if_then_else(inside, ((n * prm[5] + c) * prm[17] + hu) * prm[18] + wu, T.int64(0))]
                ),
                prm[20],
            )
            xn = T.bitwise_xor(xo, T.Cast("int64", mask[e]))
            hw = hh * prm[4] + ww
            for t in range(tln[hw]):
                tt = tst[hw] + t
                wb = ((c * prm[9] + r0 + taps[tt]) * prm[10]) + s0 + taps[prm[21] + tt]
                ob = (n * prm[6] * prm[7] + p0 + taps[2 * prm[21] + tt]) * prm[8] + q0 + taps[3 * prm[21] + tt]
                for st in range(ends[jf] - f0):
                    k0 = ss[(f0 + st) * 7 + 1] + io[i * 7 + 1]
                    for k in range(prm[19]):
                        wv = T.Cast("int64", w[wb + (k0 + k) * prm[5] * prm[9] * prm[10]])
                        out[ob + (k0 + k) * prm[7] * prm[8]] = out[ob + (k0 + k) * prm[7] * prm[8]] + (
                            lut[xn * 256 + wv] - lut[xo * 256 + wv]
                        )

    @T.prim_func(s_tir=True)
    def weight_delta(
        prm_h: T.handle,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        x_h: T.handle,
        w_h: T.handle,
        lut_h: T.handle,
        out_h: T.handle,
    ):
        T.func_attr({"global_symbol": "weight_delta", "tirx.noalias": True})
        ne, nf, nss, nio, nx, nw, no = T.int64(), T.int64(), T.int64(), T.int64(), T.int64(), T.int64(), T.int64()
        prm = T.match_buffer(prm_h, (24,), "int64", align=1)
        res = T.match_buffer(res_h, (ne,), "int64", align=1)
        word = T.match_buffer(word_h, (ne,), "int64", align=1)
        mask = T.match_buffer(mask_h, (ne,), "uint8", align=1)
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        w = T.match_buffer(w_h, (nw,), "uint8", align=1)
        lut = T.match_buffer(lut_h, (65536,), "int32", align=1)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        for e in range(ne):
            # prm: I Kt Ct Rt St C K P Q R S sh sw dh dw pt pl H W Nt Pt Qt zx
            i = res[e] % prm[0]
            jf = res[e] // prm[0]
            f0 = fills[jf]
            k = ss[f0 * 7 + 1] + io[i * 7 + 1] + word[e] // (prm[4] * prm[3] * prm[2])
            c = ss[f0 * 7 + 2] + io[i * 7 + 2] + (word[e] // (prm[4] * prm[3])) % prm[2]
            r = ss[f0 * 7 + 5] + io[i * 7 + 5] + (word[e] // prm[4]) % prm[3]
            s_ = ss[f0 * 7 + 6] + io[i * 7 + 6] + word[e] % prm[4]
            wo = T.Cast("int64", w[((k * prm[5] + c) * prm[9] + r) * prm[10] + s_])
            wn = T.bitwise_xor(wo, T.Cast("int64", mask[e]))
            for st in range(ends[jf] - f0):
                n0 = ss[(f0 + st) * 7 + 0] + io[i * 7 + 0]
                p0 = ss[(f0 + st) * 7 + 3] + io[i * 7 + 3]
                q0 = ss[(f0 + st) * 7 + 4] + io[i * 7 + 4]
                for nb in range(prm[19]):
                    for pb in range(prm[20]):
                        for qb in range(prm[21]):
                            hu = (p0 + pb) * prm[11] + r * prm[13] - prm[15]
                            wu = (q0 + qb) * prm[12] + s_ * prm[14] - prm[16]
                            inside = T.int64(0) <= hu and hu < prm[17] and T.int64(0) <= wu and wu < prm[18]
                            xo = (
                                T.if_then_else(
                                    inside,
                                    T.Cast(
                                        "int64",
                                        x[
                                            T.if_then_else(
                                                inside,
                                                (((n0 + nb) * prm[5] + c) * prm[17] + hu) * prm[18] + wu,
                                                T.int64(0),
                                            )
                                        ],
                                    ),
                                    prm[22],
                                )
                                * 256
                            )
                            oi = (((n0 + nb) * prm[6] + k) * prm[7] + p0 + pb) * prm[8] + q0 + qb
                            out[oi] = out[oi] + (lut[xo + wn] - lut[xo + wo])

    @T.prim_func(s_tir=True)
    def input_cross(
        prm_h: T.handle,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        tst_h: T.handle,
        tln_h: T.handle,
        taps_h: T.handle,
        x_h: T.handle,
        csr_h: T.handle,
        wr_h: T.handle,
        lut_h: T.handle,
        out_h: T.handle,
    ):
        # the cross term only: corrupted inputs against the corrupted weights of the same PE and step
        T.func_attr({"global_symbol": "input_cross", "tirx.noalias": True})
        ne, nf, nss, nio, nhw, ntp, nx, ncs, nwr, no = (
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
        )
        prm = T.match_buffer(prm_h, (24,), "int64", align=1)
        res = T.match_buffer(res_h, (ne,), "int64", align=1)
        word = T.match_buffer(word_h, (ne,), "int64", align=1)
        mask = T.match_buffer(mask_h, (ne,), "uint8", align=1)
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        tst = T.match_buffer(tst_h, (nhw,), "int64", align=1)
        tln = T.match_buffer(tln_h, (nhw,), "int64", align=1)
        taps = T.match_buffer(taps_h, (ntp,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        csr = T.match_buffer(csr_h, (ncs,), "int64", align=1)
        wr = T.match_buffer(wr_h, (nwr,), "int64", align=1)  # per weight record: k r s wo wn begin end
        lut = T.match_buffer(lut_h, (65536,), "int32", align=1)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        for e in range(ne):
            i = res[e] % prm[0]
            jf = res[e] // prm[0]
            ww = word[e] % prm[4]
            hh = (word[e] // prm[4]) % prm[3]
            f0 = fills[jf]
            c = ss[f0 * 7 + 2] + io[i * 7 + 2] + (word[e] // (prm[4] * prm[3])) % prm[2]
            bucket = i * prm[5] + c
            if csr[bucket + 1] > csr[bucket]:
                n = ss[f0 * 7 + 0] + io[i * 7 + 0] + word[e] // (prm[4] * prm[3] * prm[2])
                p0 = ss[f0 * 7 + 3] + io[i * 7 + 3]
                q0 = ss[f0 * 7 + 4] + io[i * 7 + 4]
                r0 = ss[f0 * 7 + 5] + io[i * 7 + 5]
                s0 = ss[f0 * 7 + 6] + io[i * 7 + 6]
                hu = p0 * prm[11] + r0 * prm[13] + hh - prm[15]
                wu = q0 * prm[12] + s0 * prm[14] + ww - prm[16]
                inside = T.int64(0) <= hu and hu < prm[17] and T.int64(0) <= wu and wu < prm[18]
                xo = T.if_then_else(
                    inside,
                    T.Cast(
                        "int64", x[T.if_then_else(inside, ((n * prm[5] + c) * prm[17] + hu) * prm[18] + wu, T.int64(0))]
                    ),
                    prm[20],
                )
                xn = T.bitwise_xor(xo, T.Cast("int64", mask[e])) * 256
                xo2 = xo * 256
                hw = hh * prm[4] + ww
                for t in range(tln[hw]):
                    tt = tst[hw] + t
                    for st in range(ends[jf] - f0):
                        for b in range(csr[bucket + 1] - csr[bucket]):
                            wi = (csr[bucket] + b) * 7
                            if (
                                wr[wi + 1] == r0 + taps[tt]
                                and wr[wi + 2] == s0 + taps[prm[21] + tt]
                                and wr[wi + 5] <= f0 + st
                                and f0 + st < wr[wi + 6]
                            ):
                                oi = (
                                    ((n * prm[6] + wr[wi]) * prm[7] + p0 + taps[2 * prm[21] + tt]) * prm[8]
                                    + q0
                                    + taps[3 * prm[21] + tt]
                                )
                                out[oi] = out[oi] + (
                                    (lut[xn + wr[wi + 4]] - lut[xn + wr[wi + 3]])
                                    - (lut[xo2 + wr[wi + 4]] - lut[xo2 + wr[wi + 3]])
                                )

    mod = tvm.IRModule({"input_delta": input_delta, "weight_delta": weight_delta, "input_cross": input_cross})
    lib = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    fn_input, fn_weight, fn_cross = lib["input_delta"], lib["weight_delta"], lib["input_cross"]

    def dl(a: np.ndarray) -> Any:
        return tvm_ffi.from_dlpack(a, require_alignment=0)

    def static(prog: LayerProgram, geom: TileGeometry, la: _LayerArrays, dtype: Any) -> dict[str, Any]:
        """The layer's constant kernel arguments, converted once and kept with the layer's arrays."""
        st = la.cache.get("tvm")
        if st is not None:
            return st
        s, m = prog.schedule.shape, prog.schedule.mapping
        _, K, C, P, Q, R, S, _, _ = la.dims
        dense = s.op == "dense"
        zx = int(np.array(prog.schedule.quant.input_zero_point).astype(dtype).view(np.uint8))
        geo = [
            C,
            K,
            P,
            Q,
            R,
            S,
            s.stride_h,
            s.stride_w,
            s.dilation_h,
            s.dilation_w,
            0 if dense else s.pad_top,
            0 if dense else s.pad_left,
            1 if dense else s.h,
            1 if dense else s.w,
        ]
        ext = geom.ext
        arrays = {
            # I Nt Ct Ht Wt C K P Q R S sh sw dh dw pt pl H W Kt zx ntaps
            "prm_x": np.array(
                [geom.instances, *geom.tile_dims("input", m), *geo, len(la.k_w), zx, la.taps.shape[1], 0, 0], np.int64
            ),
            # I Kt Ct Rt St C K P Q R S sh sw dh dw pt pl H W Nt Pt Qt zx
            "prm_w": np.array(
                [geom.instances, *geom.tile_dims("weight", m), *geo, ext[_D["N"]], ext[_D["P"]], ext[_D["Q"]], zx, 0],
                np.int64,
            ),
            "fills_x": geom.fills["input"],
            "ends_x": geom.residency_ends("input"),
            "fills_w": geom.fills["weight"],
            "ends_w": geom.residency_ends("weight"),
            "ss": geom.step_start.ravel(),
            "io": geom.inst_off.ravel(),
            "tst": la.taps_start,
            "tln": la.taps_len,
            "taps": la.taps.ravel(),
        }
        st = {k: dl(_compact(v, np.int64)) for k, v in arrays.items()}
        st["w"], st["lut"] = dl(_compact(la.wflat, np.uint8)), dl(_compact(la.table, np.int32))
        st["_keep"] = arrays
        la.cache["tvm"] = st
        return st

    def input_term(
        x: np.ndarray, prog: LayerProgram, geom: TileGeometry, la: _LayerArrays, cx: CorruptedWords, out: np.ndarray
    ) -> None:
        if not len(cx):
            return
        _check_out(out)
        st = static(prog, geom, la, x.dtype)
        xr = _compact(np.asarray(x).view(np.uint8).ravel(), np.uint8)
        fn_input(
            st["prm_x"],
            dl(_compact(cx.residency, np.int64)),
            dl(_compact(cx.word, np.int64)),
            dl(_compact(cx.mask, np.uint8)),
            st["fills_x"],
            st["ends_x"],
            st["ss"],
            st["io"],
            st["tst"],
            st["tln"],
            st["taps"],
            dl(xr),
            st["w"],
            st["lut"],
            dl(out),
        )
        _ = lib

    def delta(
        x: np.ndarray, prog: LayerProgram, geom: TileGeometry, la: _LayerArrays, sample: FaultSample, out: np.ndarray
    ) -> None:
        _check_out(out)
        st = static(prog, geom, la, x.dtype)
        m = prog.schedule.mapping
        _, _, C, _, _, R, S, _, _ = la.dims
        xr = dl(_compact(np.asarray(x).view(np.uint8).ravel(), np.uint8))
        o = dl(out)
        cw, cx = sample.weight, sample.input
        if len(cw):
            fn_weight(
                st["prm_w"],
                dl(_compact(cw.residency, np.int64)),
                dl(_compact(cw.word, np.int64)),
                dl(_compact(cw.mask, np.uint8)),
                st["fills_w"],
                st["ends_w"],
                st["ss"],
                st["io"],
                xr,
                st["w"],
                st["lut"],
                o,
            )
        if len(cx):
            res, word, mask = (
                dl(_compact(cx.residency, np.int64)),
                dl(_compact(cx.word, np.int64)),
                dl(_compact(cx.mask, np.uint8)),
            )
            fn_input(
                st["prm_x"],
                res,
                word,
                mask,
                st["fills_x"],
                st["ends_x"],
                st["ss"],
                st["io"],
                st["tst"],
                st["tln"],
                st["taps"],
                xr,
                st["w"],
                st["lut"],
                o,
            )
            if len(cw):
                # corrupted weights by (PE, channel): k r s wo wn first-step end-step, CSR over PE·C + c
                n_inst = geom.instances
                j, i = cw.residency // n_inst, cw.residency % n_inst
                kk, cc, rr, sw_ = np.unravel_index(cw.word, geom.tile_dims("weight", m))
                s0 = geom.step_start[geom.fills["weight"][j]] + geom.inst_off[i]
                k, c = s0[:, _D["K"]] + kk, s0[:, _D["C"]] + cc
                r, t = s0[:, _D["R"]] + rr, s0[:, _D["S"]] + sw_
                wo = la.wflat[((k * C + c) * R + r) * S + t].astype(np.int64)
                wr = np.stack(
                    [
                        k,
                        r,
                        t,
                        wo,
                        wo ^ cw.mask.astype(np.int64),
                        geom.fills["weight"][j],
                        geom.residency_ends("weight")[j],
                    ],
                    axis=1,
                )
                bucket = i * C + c
                order = np.argsort(bucket, kind="stable")
                csr = np.concatenate(([0], np.cumsum(np.bincount(bucket, minlength=n_inst * C))))
                fn_cross(
                    st["prm_x"],
                    res,
                    word,
                    mask,
                    st["fills_x"],
                    st["ends_x"],
                    st["ss"],
                    st["io"],
                    st["tst"],
                    st["tln"],
                    st["taps"],
                    xr,
                    dl(_compact(csr, np.int64)),
                    dl(_compact(wr[order].ravel(), np.int64)),
                    st["lut"],
                    o,
                )
        _ = lib

    return FaultKernels(scatter_numpy, input_term, delta)


@functools.lru_cache(maxsize=1)
def _compiled_kernels() -> FaultKernels:
    return tvm_kernels()


def compiled_kernels() -> FaultKernels:
    """:func:`tvm_kernels`, compiled once per process (they hold no layer or model data)."""
    return _compiled_kernels()


def clear_kernel_cache() -> None:
    """Forget the compiled kernels of :func:`compiled_kernels` (benchmarks measure cold builds)."""
    _compiled_kernels.cache_clear()


def _check_out(out: np.ndarray) -> None:
    if out.dtype != np.int32 or out.strides != (out.itemsize,) or not out.flags.writeable:
        raise ValueError("the compiled fault kernels accumulate in place into a writeable compact 1-D int32 array")


def _compact(a: np.ndarray, dtype: Any) -> np.ndarray:
    """A writeable, compact 1-D array for DLPack (numpy keeps odd strides on 1-element views)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if not a.flags.writeable or a.strides != (a.itemsize,):
        a = np.array(a, dtype=dtype, copy=True)
    return a


def _delta_into(
    out: np.ndarray,
    x: np.ndarray,
    prog: LayerProgram,
    geom: TileGeometry,
    sample: FaultSample,
    la: _LayerArrays,
    kernels: FaultKernels | None = None,
) -> None:
    """Add the delta of :func:`products_delta` into the flat accumulator ``out`` (int32 wraps)."""
    sch = prog.schedule
    sh_, m = sch.shape, sch.mapping
    sh, sw, dh, dw = sh_.stride_h, sh_.stride_w, sh_.dilation_h, sh_.dilation_w
    _, K, C, P, Q, R, S, Hp, Wp = la.dims
    T = la.table
    kernels = kernels or NUMPY_KERNELS
    if kernels.delta is not None:
        kernels.delta(x, prog, geom, la, sample, out)
        return
    n_inst = geom.instances
    a_rec: dict[str, np.ndarray] | None = None
    b_rec: dict[str, np.ndarray] | None = None

    cw = sample.weight
    if len(cw):
        j, i = cw.residency // n_inst, cw.residency % n_inst
        kk, cc, rr, ss = np.unravel_index(cw.word, geom.tile_dims("weight", m))
        st = geom.step_start[geom.fills["weight"][j]] + geom.inst_off[i]
        k, c = st[:, _D["K"]] + kk, st[:, _D["C"]] + cc
        r, t = st[:, _D["R"]] + rr, st[:, _D["S"]] + ss
        wo = la.wflat[((k * C + c) * R + r) * S + t].astype(np.int64)
        wn = wo ^ cw.mask.astype(np.int64)
        rec, step = _expand_steps(geom.fills["weight"][j], geom.residency_ends("weight")[j])
        box = geom.step_start[step] + geom.inst_off[i[rec]]
        n0, p0, q0 = box[:, _D["N"]], box[:, _D["P"]], box[:, _D["Q"]]
        a_rec = {
            "step": step,
            "inst": i[rec],
            "k": k[rec],
            "c": c[rec],
            "r": r[rec],
            "s": t[rec],
            "wo": wo[rec],
            "wn": wn[rec],
        }
        xb = ((n0 * C + a_rec["c"]) * Hp + p0 * sh + a_rec["r"] * dh) * Wp + q0 * sw + a_rec["s"] * dw
        ob = ((n0 * K + a_rec["k"]) * P + p0) * Q + q0
        kernels.scatter(
            _padded_input(x, prog, la.xpad), xb, la.box_x, ob, la.box_o, a_rec["wn"], a_rec["wo"], T, out, 256
        )

    cx = sample.input
    if len(cx):
        mark = None
        if a_rec is not None:  # cross term: only a (PE, channel) holding a corrupted weight matters
            mark = np.zeros(n_inst * C, bool)
            mark[a_rec["inst"] * C + a_rec["c"]] = True
        if kernels.input_term is not None:
            kernels.input_term(x, prog, geom, la, cx, out)
            if mark is not None:
                j, i = cx.residency // n_inst, cx.residency % n_inst
                c = (
                    geom.step_start[geom.fills["input"][j], _D["C"]]
                    + geom.inst_off[i, _D["C"]]
                    + np.unravel_index(cx.word, geom.tile_dims("input", m))[1]
                )
                sub = np.flatnonzero(mark[i * C + c])
                if len(sub):
                    b_rec = _input_rows(
                        x, prog, geom, la, CorruptedWords(cx.residency[sub], cx.word[sub], cx.mask[sub])
                    )
        else:
            rows = _input_rows(x, prog, geom, la, cx)
            kernels.scatter(la.wflat, rows["wb"], la.k_w, rows["ob"], la.k_o, rows["xn"], rows["xo"], T, out, 1)
            if mark is not None:
                b_rec = rows
        if b_rec is not None and mark is not None:
            sel = np.flatnonzero(mark[b_rec["inst"] * C + b_rec["c"]])
            b_rec = {k: v[sel] for k, v in b_rec.items()} if len(sel) else None

    if a_rec is not None and b_rec is not None:
        _cross_term(out, a_rec, b_rec, geom, (C, R, S, K, P, Q), T)


def _input_rows(
    x: np.ndarray, prog: LayerProgram, geom: TileGeometry, la: _LayerArrays, cx: CorruptedWords
) -> dict[str, np.ndarray]:
    """One row per (corrupted input, tap of its tile, step of its residency), numpy.

    Each row holds the MAC coordinates (step, PE, n, c, r, s, p, q), the old/new byte (·256) and
    the flat weight/output offsets of the PE's first output channel at that step.
    """
    sch = prog.schedule
    sh_, m = sch.shape, sch.mapping
    sh, sw, dh, dw = sh_.stride_h, sh_.stride_w, sh_.dilation_h, sh_.dilation_w
    _, K, C, P, Q, R, S, _, _ = la.dims
    n_inst = geom.instances
    j, i = cx.residency // n_inst, cx.residency % n_inst
    xdims = geom.tile_dims("input", m)
    nn, cc, hh, ww = np.unravel_index(cx.word, xdims)
    st = geom.step_start[geom.fills["input"][j]] + geom.inst_off[i]
    p0, q0, r0, s0 = st[:, _D["P"]], st[:, _D["Q"]], st[:, _D["R"]], st[:, _D["S"]]
    n, c = st[:, _D["N"]] + nn, st[:, _D["C"]] + cc
    h, w = p0 * sh + r0 * dh + hh, q0 * sw + s0 * dw + ww
    xo = _input_bytes(x, prog, n, c, h, w)
    xn = xo ^ cx.mask.astype(np.int64)
    # taps (r, s) of the tile that read this input, and the output (p, q) they produce
    hw = hh * xdims[3] + ww
    e, ti = _expand_steps(la.taps_start[hw], la.taps_start[hw] + la.taps_len[hw])
    ra, sa, dp, dq = la.taps[:, ti]
    begin = geom.fills["input"][j[e]]
    rec, step = _expand_steps(begin, geom.residency_ends("input")[j[e]])
    e, ra, sa, dp, dq = e[rec], ra[rec], sa[rec], dp[rec], dq[rec]
    ie = i[e]
    k0 = geom.step_start[step, _D["K"]] + geom.inst_off[ie, _D["K"]]
    rows = {
        "step": step,
        "inst": ie,
        "n": n[e],
        "c": c[e],
        "r": r0[e] + ra,
        "s": s0[e] + sa,
        "p": p0[e] + dp,
        "q": q0[e] + dq,
        "xo": xo[e] * 256,
        "xn": xn[e] * 256,
    }
    rows["wb"] = ((k0 * C + rows["c"]) * R + rows["r"]) * S + rows["s"]
    rows["ob"] = ((rows["n"] * K + k0) * P + rows["p"]) * Q + rows["q"]
    return rows


def _cross_term(
    out: np.ndarray,
    a: dict[str, np.ndarray],
    b: dict[str, np.ndarray],
    geom: TileGeometry,
    dims: tuple[int, ...],
    T: np.ndarray,
) -> None:
    """Correct MACs where a corrupted weight meets a corrupted input in the same step and PE."""
    C, R, S, K, P, Q = dims

    def key(d: dict[str, np.ndarray]) -> np.ndarray:
        return (((d["step"] * geom.instances + d["inst"]) * C + d["c"]) * R + d["r"]) * S + d["s"]

    ka, kb = key(a), key(b)
    order = np.argsort(ka, kind="stable")  # the weight side is the small one: sort it, search into it
    kas = ka[order]
    lo, hi = np.searchsorted(kas, kb, "left"), np.searchsorted(kas, kb, "right")
    if not np.any(hi > lo):
        return
    ib, ia_pos = _expand_steps(lo, hi)
    ia = order[ia_pos]
    wo, wn, xo, xn = a["wo"][ia], a["wn"][ia], b["xo"][ib], b["xn"][ib]
    corr = (T[xn + wn] - T[xn + wo]) - (T[xo + wn] - T[xo + wo])
    np.add.at(out, ((b["n"][ib] * K + a["k"][ia]) * P + b["p"][ib]) * Q + b["q"][ib], corr.astype(out.dtype))


def inject(
    x: np.ndarray,
    prog: LayerProgram,
    acc: np.ndarray,
    sample: FaultSample,
    geom: TileGeometry,
    arrays: _LayerArrays | None = None,
    kernels: FaultKernels | None = None,
) -> np.ndarray:
    """The layer's int32 accumulators under ``sample``, from its fault-free accumulators ``acc``.

    The deltas are added in int32 with wrap-around, which equals the int32 accumulator of the
    whole faulty sum (addition modulo 2^32 is associative). ``kernels``: numpy (default) or the
    compiled :func:`tvm_kernels` (same results).
    """
    if not len(sample.weight) and not len(sample.input):
        return acc
    out = np.array(acc, dtype=np.int32, copy=True)
    _delta_into(
        out.reshape(-1), x, prog, geom, sample, arrays if arrays is not None else _layer_arrays(prog, geom), kernels
    )
    return out


def faulty_products_reference(
    x: np.ndarray, prog: LayerProgram, geom: TileGeometry, sample: FaultSample, path: str | None = None
) -> np.ndarray:
    """``Σ M(x', w')`` executed tile by tile with corrupted tile copies (the specification).

    Every temporal step above the PE level and every PE instance multiplies the PE's stored copies
    — the clean tiles with the XOR masks of their current residency applied — with the kernel and
    accumulates into its output box. Slow; for tests.

    Parameters
    ----------
    path
        Kernel path; default ``exact`` for an exact multiplier, ``table_numpy`` otherwise (corrupted
        bytes may fall outside a low-rank factorisation restricted to the layer's weights).
    """
    sch = prog.schedule
    s, m = sch.shape, sch.mapping
    la = _layer_arrays(prog, geom)
    N, K, C, P, Q, R, S, Hp, Wp = la.dims
    xp = _padded_input(x, prog).reshape(N, C, Hp, Wp)
    wb = la.wflat.reshape(K, C, R, S)
    path = path or ("exact" if prog.multiplier.is_exact else "table_numpy")
    dtype = np.int8 if sch.quant.signed else np.uint8
    n_inst = geom.instances
    wdims, xdims = geom.tile_dims("weight", m), geom.tile_dims("input", m)
    masks: dict[str, dict[int, np.ndarray]] = {}
    for t, dims in (("weight", wdims), ("input", xdims)):
        cw = sample.of(t)
        per: dict[int, np.ndarray] = {}
        for res, wd, mk in zip(cw.residency.tolist(), cw.word.tolist(), cw.mask.tolist(), strict=True):
            arr = per.setdefault(res, np.zeros(math.prod(dims), np.uint8))
            arr[wd] ^= mk
        masks[t] = per
    e = {d: int(geom.ext[_D[d]]) for d in _FDIMS}
    acc = np.zeros((N, K, P, Q), np.int64)
    for step in range(geom.steps):
        jw = int(np.searchsorted(geom.fills["weight"], step, "right")) - 1
        jx = int(np.searchsorted(geom.fills["input"], step, "right")) - 1
        for i in range(n_inst):
            st = {d: int(v) for d, v in zip(_FDIMS, geom.step_start[step] + geom.inst_off[i], strict=True)}
            wt = wb[
                st["K"] : st["K"] + e["K"],
                st["C"] : st["C"] + e["C"],
                st["R"] : st["R"] + e["R"],
                st["S"] : st["S"] + e["S"],
            ].copy()
            h0, w0 = st["P"] * s.stride_h + st["R"] * s.dilation_h, st["Q"] * s.stride_w + st["S"] * s.dilation_w
            xt = xp[
                st["N"] : st["N"] + e["N"], st["C"] : st["C"] + e["C"], h0 : h0 + xdims[2], w0 : w0 + xdims[3]
            ].copy()
            mw = masks["weight"].get(jw * n_inst + i)
            if mw is not None:
                wt ^= mw.reshape(wdims)
            mx = masks["input"].get(jx * n_inst + i)
            if mx is not None:
                xt ^= mx.reshape(xdims)
            part = conv2d_products(
                xt.view(dtype),
                wt.view(dtype),
                prog.multiplier,
                strides=(s.stride_h, s.stride_w),
                dilations=(s.dilation_h, s.dilation_w),
                path=path,
            )
            acc[
                st["N"] : st["N"] + e["N"],
                st["K"] : st["K"] + e["K"],
                st["P"] : st["P"] + e["P"],
                st["Q"] : st["Q"] + e["Q"],
            ] += part
    out = acc.astype(np.int32)
    return out.reshape(s.n, s.k) if s.op == "dense" else out


# ---------------------------------------------------------------------------------------------
# Model-level plumbing
# ---------------------------------------------------------------------------------------------


class ModelFaults:
    """Fault plans of a compiled model, with the per-layer geometry built on first use.

    Parameters
    ----------
    schedules
        Layer id → schedule, in program order (the order gives the generator's layer index).
    spec
        The accelerator.
    options
        Run-wide fault options.
    """

    def __init__(
        self, schedules: MappingABC[str, LayerSchedule], spec: AcceleratorSpec, options: FaultOptions = FaultOptions()
    ) -> None:
        self.spec = spec
        self.options = options
        self.schedules = dict(schedules)
        self.plans = {lid: plan_faults(sch, spec, i, options) for i, (lid, sch) in enumerate(self.schedules.items())}
        self._geometry: dict[str, TileGeometry] = {}
        self._events: dict[str, _Events] = {}
        self._arrays: dict[str, _LayerArrays] = {}
        self._kernels: FaultKernels | None = None

    @property
    def active(self) -> bool:
        """Whether any layer has a fault model to run."""
        return any(not p.trivial for p in self.plans.values())

    def geometry(self, layer_id: str) -> TileGeometry:
        """Tile geometry of a layer (cached)."""
        g = self._geometry.get(layer_id)
        if g is None:
            g = self._geometry[layer_id] = tile_geometry(self.schedules[layer_id].mapping, self.spec)
        return g

    def events(self, layer_id: str) -> _Events:
        """Static fault event table of a layer (cached)."""
        ev = self._events.get(layer_id)
        if ev is None:
            ev = self._events[layer_id] = _events(self.plans[layer_id], self.geometry(layer_id))
        return ev

    def arrays(self, layer_id: str, prog: LayerProgram) -> _LayerArrays:
        """Constants of a layer's delta computation (cached; the program's weights are fixed)."""
        la = self._arrays.get(layer_id)
        if la is None:
            la = self._arrays[layer_id] = _layer_arrays(prog, self.geometry(layer_id))
        return la

    @property
    def kernels(self) -> FaultKernels:
        """The compiled inner loops (:func:`tvm_kernels`), or numpy if TVM cannot build them here."""
        if self._kernels is None:
            try:
                self._kernels = compiled_kernels()
            except Exception as exc:  # no TVM / LLVM failure: same results, slower
                warnings.warn(
                    f"fault injection uses numpy kernels ({type(exc).__name__}: {str(exc)[:200]})",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._kernels = NUMPY_KERNELS
        return self._kernels

    def session(self, seed: int) -> FaultSession | None:
        """A run's injector (``None`` when no layer scales anything)."""
        scaled = self.active or any(p.energy_only_buffers for p in self.plans.values())
        return FaultSession(self, seed) if scaled else None


class FaultSession:
    """Injects the faults of one run and adds up its counters (call :meth:`apply` per layer call)."""

    def __init__(self, faults: ModelFaults, seed: int) -> None:
        _check_seed(seed)  # before anything runs
        self.faults = faults
        self.seed = seed
        self._calls: dict[str, int] = {}
        self._flipped: dict[str, np.ndarray] = {}
        self._words: dict[str, list[int]] = {}
        self._blocks: dict[str, tuple[int, list[FaultSample]]] = {}

    def apply(self, layer_id: str, x: np.ndarray, prog: LayerProgram, acc: np.ndarray) -> np.ndarray:
        """Accumulators of this layer call under its sampled faults (``acc`` unchanged if none)."""
        plan = self.faults.plans.get(layer_id)
        if plan is None or plan.trivial:
            return acc
        call = self._calls.get(layer_id, 0)
        self._calls[layer_id] = call + 1
        f = self.faults
        geom = f.geometry(layer_id)
        ev = f.events(layer_id)
        blk, off = divmod(call, ev.block_calls)
        cached = self._blocks.get(layer_id)
        if cached is None or cached[0] != blk:
            cached = self._blocks[layer_id] = (blk, sample_block(plan, geom, seed=self.seed, block=blk, events=ev))
        sample = cached[1][off]
        if len(sample.flipped):
            fl = self._flipped.get(layer_id)
            self._flipped[layer_id] = sample.flipped if fl is None else fl + sample.flipped
        words = self._words.setdefault(layer_id, [0, 0])
        words[0] += len(sample.weight)
        words[1] += len(sample.input)
        if not len(sample.weight) and not len(sample.input):
            return acc
        return inject(x, prog, acc, sample, geom, f.arrays(layer_id, prog), f.kernels)

    def counters(self) -> dict[str, Any]:
        """``{layer: {tensor: {bits_exposed, bits_flipped, words_corrupted, noc: {...}, sram: {...}}}}``.

        Layers that scale only buffers without a fault model list them under ``energy_only_buffers``.
        """
        out: dict[str, Any] = {}
        for lid, p in self.faults.plans.items():
            if lid in self._calls:
                ev = self.faults.events(lid)
                fl = self._flipped.get(lid, np.zeros(len(ev.streams), np.int64))
                out[lid] = _counters(ev.streams, fl, tuple(self._words[lid]), self._calls[lid])  # type: ignore[arg-type]
            if p.energy_only_buffers:  # scaled without a fault model: say so
                out.setdefault(lid, {})["energy_only_buffers"] = list(p.energy_only_buffers)
        return out
