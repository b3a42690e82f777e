"""Fault injection for low-swing NoC links and voltage-scaled SRAM buffers (DESIGN §5).

**Where faults live.** The schedule's PE-level tiles are the unit: a weight tile travels
DRAM → NoC → the PE's weight buffer and stays there while the loops above the PE level leave it
resident (weight-stationary); an input tile travels global buffer → NoC (multicast) → the input
buffer of each receiving PE. A NoC bit error corrupts the copy the receiving PE stores; an SRAM
bit-cell failure corrupts the stored tile. Either way the corrupted copy is used for **every
product computed during its residency** and disappears when the tile is evicted: the next fill
of the same tile is a fresh, independently sampled copy. Faults therefore follow the mapping's
reuse (the walk of :class:`approxtvm.targets.vacc.tilewalk.TileWalk`), not per-MAC noise.
Grouped and depthwise convolutions walk their ``G`` dimension like any other (a tile's words are
in C order over ``(G, K, C, R, S)`` and ``(N, G, C, H, W)``). An activation × activation matmul
(attention ``QKᵀ``, ``AV``) is the grouped dense layer the emulator describes: its second operand
plays the weight role — it streams through the NoC into the weight buffers, is corrupted at the
weight buffer's voltage, and, arriving with each call, is sampled per call like every residency.

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
The inner loops are compiled with TVM once per process (:func:`tvm_kernels`), with a numpy
fallback (:data:`NUMPY_KERNELS`). :func:`approxtvm.runtime.emulator.emulate` executes the same
faults tile by tile with corrupted tile copies (the specification; tests hold :func:`inject` to it).
Where every weight word is stored once per call (one (fill, PE) residency; no multicast copy, no
refill), the corrupted weights ``W'`` of a call are well defined and an exact layer runs its own
fast kernel on them instead (:mod:`.corrupted_weights`): no weight deltas, no cross terms, the same
integers.

**Plumbing.** :class:`ModelFaults` (one per compiled model) holds the per-layer plans, checked
against the spec's model ranges when the model is built; :class:`FaultSession` (one per run)
samples and injects per layer call and adds up the counters reported in
``RunResult.counters["faults"]``. A layer without a scaled component never reaches this module.
When the host runs several batches as one call per layer (:meth:`FaultSession.apply_calls`), each
batch is still its own layer call with its own sample; one kernel call adds the deltas of all.

**Package links.** On a multi-chip package, each receiving chiplet's copy of its part's
operands is corrupted on the package links (``nop_swing_v``, ``nop_protected_msbs``):
:mod:`.package_faults`, applied after the on-chip faults of the same call.

**Modules.** :mod:`.physics` (bit error rates), :mod:`.plan` (options and per-layer plans),
:mod:`.geometry` (tile residencies), :mod:`.sampling` (its compiled bookkeeping :mod:`.sample_pass`,
its numpy fallback's :mod:`.repeats`, its definition :mod:`.sample_reference`), :mod:`.delta_numpy`
and :mod:`.delta_tvm` (the sparse deltas), :mod:`.corrupted_weights` (weight faults inside the
exact kernel), :mod:`.package_faults` (package copies), :mod:`.session` (per
model and per run). The energy side of the same knobs is :mod:`approxtvm.runtime.energy`.
"""

from approxtvm.runtime.faults.corrupted_weights import inject_with_weights, weights_stored_once
from approxtvm.runtime.faults.delta_numpy import (
    NUMPY_KERNELS,
    FaultKernels,
    LayerArrays,
    inject,
    inject_calls,
    layer_arrays,
    products_delta,
    scatter_numpy,
)
from approxtvm.runtime.faults.delta_tvm import KernelArgs, clear_kernel_cache, compiled_kernels, tvm_kernels
from approxtvm.runtime.faults.geometry import TileGeometry, tile_geometry
from approxtvm.runtime.faults.physics import noc_ber, sram_ber
from approxtvm.runtime.faults.plan import FAULT_BUFFERS, SRAM_FAULT_MODES, FaultOptions, FaultPlan, plan_faults
from approxtvm.runtime.faults.sampling import CorruptedWords, EventTable, FaultSample, sample_block, sample_faults
from approxtvm.runtime.faults.session import FaultSession, ModelFaults

__all__ = [
    "FAULT_BUFFERS",
    "NUMPY_KERNELS",
    "SRAM_FAULT_MODES",
    "CorruptedWords",
    "EventTable",
    "FaultKernels",
    "FaultOptions",
    "FaultPlan",
    "FaultSample",
    "FaultSession",
    "KernelArgs",
    "LayerArrays",
    "ModelFaults",
    "TileGeometry",
    "clear_kernel_cache",
    "compiled_kernels",
    "inject",
    "inject_calls",
    "inject_with_weights",
    "layer_arrays",
    "noc_ber",
    "plan_faults",
    "products_delta",
    "sample_block",
    "sample_faults",
    "scatter_numpy",
    "sram_ber",
    "tile_geometry",
    "tvm_kernels",
    "weights_stored_once",
]
