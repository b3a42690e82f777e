"""Model-level plumbing: the fault plans of a compiled model and the injector of one run."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from typing import TYPE_CHECKING, Any

import numpy as np

from approxtvm.runtime.faults.corrupted_weights import (
    deltas_s,
    inject_with_weights,
    weight_offsets,
    weights_stored_once,
)
from approxtvm.runtime.faults.delta_numpy import (
    NUMPY_KERNELS,
    FaultKernels,
    LayerArrays,
    inject,
    inject_calls,
    layer_arrays,
)
from approxtvm.runtime.faults.delta_tvm import compiled_kernels
from approxtvm.runtime.faults.geometry import TileGeometry, tile_geometry
from approxtvm.runtime.faults.kernel_weights import batch_copies, inject_through_copies, inject_through_kernel
from approxtvm.runtime.faults.package_faults import (
    ChipletPart,
    chiplet_parts,
    package_delta,
    package_rng,
    received_words,
    sample_package_faults,
)
from approxtvm.runtime.faults.physics import WORD_BITS
from approxtvm.runtime.faults.plan import FaultOptions, plan_faults
from approxtvm.runtime.faults.sampling import (
    EventTable,
    FaultSample,
    SampleBlock,
    check_seed,
    event_table,
    fault_counters,
    sample_blocks_stacked,
)
from approxtvm.runtime.faults.weight_copies import (
    WeightCopies,
    copies_pay,
    inject_calls_with_copies,
    inject_with_copies,
    stacked_copies_pay,
    weight_copies,
)
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.schedule import LayerSchedule

if TYPE_CHECKING:
    from approxtvm.runtime.exact_layer import ExactLayer, RowsAccumulators
    from approxtvm.runtime.executor import LayerProgram

__all__ = ["FaultSession", "ModelFaults"]


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
    geometry_cache
        Mapping → tile geometry shared with other models on ``spec`` (the geometry depends on the
        mapping and the spec only); ``None``: this model's own.
    """

    def __init__(
        self,
        schedules: MappingABC[str, LayerSchedule],
        spec: AcceleratorSpec,
        options: FaultOptions | None = None,
        geometry_cache: dict[object, TileGeometry] | None = None,
    ) -> None:
        self.spec = spec
        self._shared_geometry = geometry_cache
        self.options = options = options or FaultOptions()
        self.schedules = dict(schedules)
        self.plans = {lid: plan_faults(sch, spec, i, options) for i, (lid, sch) in enumerate(self.schedules.items())}
        self._geometry: dict[str, TileGeometry] = {}
        self._events: dict[str, EventTable] = {}
        self._arrays: dict[str, LayerArrays] = {}
        self._prepared: dict[str, object] = {}
        self._kernels: FaultKernels | None = None
        self._parts: dict[str, tuple[ChipletPart, ...]] = {}
        self._once: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        self._copies: dict[str, WeightCopies | None] = {}

    @property
    def active(self) -> bool:
        """Whether any layer has a fault model to run."""
        return any(not p.trivial for p in self.plans.values())

    def geometry(self, layer_id: str) -> TileGeometry:
        """Tile geometry of a layer (cached)."""
        g = self._geometry.get(layer_id)
        if g is None:
            mapping = self.schedules[layer_id].mapping
            shared = self._shared_geometry
            g = shared.get(mapping) if shared is not None else None
            if g is None:
                g = tile_geometry(mapping, self.spec)
                if shared is not None:
                    shared[mapping] = g
            self._geometry[layer_id] = g
        return g

    def events(self, layer_id: str) -> EventTable:
        """Static fault event table of a layer (cached)."""
        ev = self._events.get(layer_id)
        if ev is None:
            ev = self._events[layer_id] = event_table(self.plans[layer_id], self.geometry(layer_id))
        return ev

    def arrays(self, layer_id: str, prog: LayerProgram) -> LayerArrays:
        """Constants of a layer's delta computation (cached; the program's weights are fixed)."""
        la = self._arrays.get(layer_id)
        if la is None:
            la = self._arrays[layer_id] = layer_arrays(prog, self.geometry(layer_id))
        return la

    def prepared(self, layer_id: str, prog: LayerProgram) -> object:
        """The kernels' constant arguments of a layer (cached)."""
        if layer_id not in self._prepared:
            self._prepared[layer_id] = self.kernels.prepare(prog, self.geometry(layer_id), self.arrays(layer_id, prog))
        return self._prepared[layer_id]

    def weight_offsets(self, layer_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Where each stored weight word sits in the layer's weights (:func:`weight_offsets`), if
        every weight word of a call is stored once (:func:`weights_stored_once`); else ``None`` (cached)."""
        if layer_id not in self._once:
            geom, mapping = self.geometry(layer_id), self.schedules[layer_id].mapping
            self._once[layer_id] = weight_offsets(geom, mapping) if weights_stored_once(geom, mapping) else None
        return self._once[layer_id]

    def weight_copies(self, layer_id: str) -> WeightCopies | None:
        """The layer's stored weight copies in the deltas' geometry (:func:`.weight_copies.weight_copies`),
        or ``None`` where they cannot be formed (cached)."""
        if layer_id not in self._copies:
            geom, mapping = self.geometry(layer_id), self.schedules[layer_id].mapping
            self._copies[layer_id] = weight_copies(geom.compute or geom, mapping)
        return self._copies[layer_id]

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

    def parts(self, layer_id: str) -> tuple[ChipletPart, ...]:
        """The chiplet parts of a layer split across the package (cached)."""
        pp = self._parts.get(layer_id)
        if pp is None:
            sch = self.schedules[layer_id]
            assert sch.package is not None  # plan_faults gives nop_ber > 0 only to package layers
            pp = self._parts[layer_id] = chiplet_parts(sch.shape, sch.package, self.spec)
        return pp

    def package_exposed(self, layer_id: str) -> dict[str, int]:
        """Per tensor, free bits × hops of every chiplet copy of one layer call."""
        plan = self.plans[layer_id]
        shape = self.schedules[layer_id].shape
        free = WORD_BITS - plan.nop_protected_msbs
        return {
            t: sum(int(received_words(shape, p, t).size) * free * p.hops for p in self.parts(layer_id))
            for t in ("weight", "input")
        }

    @property
    def scaled(self) -> bool:
        """Whether a run needs an injector: some layer scales a swing or a voltage."""
        return self.active or any(p.energy_only_buffers for p in self.plans.values())

    def session(self, seed: int, first_call: int = 0) -> FaultSession | None:
        """A run's injector (``None`` when no layer scales anything); ``first_call``: see
        :class:`FaultSession`."""
        return FaultSession(self, seed, first_call) if self.scaled else None


class FaultSession:
    """Injects the faults of one run and adds up its counters (call :meth:`apply` per layer call).

    ``first_call``: index of the run's first layer call (0 = a whole run). A run that continues
    an earlier one (the later images of a fixed order, from batch ``first_call`` on) draws the
    faults of the same global calls as the whole run would; its counters count its own calls.
    """

    def __init__(self, faults: ModelFaults, seed: int, first_call: int = 0) -> None:
        check_seed(seed)  # before anything runs
        if first_call < 0:
            raise ValueError(f"first_call must be >= 0, found {first_call}")
        self.faults = faults
        self.seed = seed
        self._first = first_call
        self._calls: dict[str, int] = {}
        self._flipped: dict[str, np.ndarray] = {}
        self._words: dict[str, list[int]] = {}
        self._blocks: dict[str, tuple[int, SampleBlock]] = {}
        self._package_tally: dict[str, dict[str, list[int]]] = {}
        self._rng = np.random.Generator(np.random.Philox(key=0))  # state reset per block (sample_block)

    def apply(
        self, layer_id: str, x: np.ndarray, prog: LayerProgram, acc: np.ndarray, *operands: np.ndarray
    ) -> np.ndarray:
        """Accumulators of this layer call under its sampled faults (``acc`` unchanged if none).

        ``operands``: the second operand of an activation × activation matmul (its weight role)."""
        plan = self.faults.plans.get(layer_id)
        if plan is None or plan.trivial:
            return acc
        call = self._calls.get(layer_id, self._first)
        self._calls[layer_id] = call + 1
        if not plan.onchip_trivial:
            acc = self._onchip(layer_id, call, x, prog, acc, *operands)
        if plan.nop_ber > 0.0 and not operands:  # no package faults on activation × activation matmuls
            acc = self._package(layer_id, call, x, prog, acc)
        return acc

    def apply_calls(self, layer_id: str, x: np.ndarray, prog: LayerProgram, acc: np.ndarray, calls: int) -> np.ndarray:
        """:meth:`apply` for ``calls`` consecutive calls of a conv/dense layer stacked along ``N``
        (call ``c`` = the ``c``-th block of rows of ``x`` and ``acc``), in place into ``acc``
        (C-contiguous int32); the same faults and counters as ``calls`` calls of :meth:`apply`."""
        plan = self.faults.plans.get(layer_id)
        if plan is None or plan.trivial:
            return acc
        if plan.nop_ber > 0.0 or plan.onchip_trivial or prog.schedule.shape.op == "matmul":
            rows, xrows = len(acc) // calls, len(x) // calls
            for c in range(calls):  # package faults follow each call's on-chip faults: one call at a time
                part = acc[c * rows : (c + 1) * rows]
                faulty = self.apply(layer_id, x[c * xrows : (c + 1) * xrows], prog, part)
                if faulty is not part:
                    part[...] = faulty
            return acc
        first = self._calls.get(layer_id, self._first)
        c0, block = self._block(layer_id, first, calls)
        self._calls[layer_id] = first + calls
        weight_words, input_words = block.word_counts(first - c0, calls)
        flipped = block.flipped[first - c0 : first - c0 + calls].sum(axis=0)
        self._count(layer_id, flipped, int(weight_words.sum()), int(input_words.sum()))
        f = self.faults
        if (
            copies_pay(weight_words, input_words)
            and f.kernels.input_copies is not None
            and (copies := f.weight_copies(layer_id)) is not None
        ):  # call by call, in place: weight deltas box by box, input deltas against the weights as stored
            geom, arrays, prepared = f.geometry(layer_id), f.arrays(layer_id, prog), f.prepared(layer_id, prog)
            rows, xrows = len(acc) // calls, len(x) // calls
            for c in range(calls):
                sample = block.sample(first + c - c0)
                if len(sample.weight) or len(sample.input):
                    xc, part = x[c * xrows : (c + 1) * xrows], acc[c * rows : (c + 1) * rows]
                    inject_with_copies(xc, prog, part, sample, geom, arrays, f.kernels, prepared, copies, in_place=True)
            return acc
        stacked = block.stacked(first - c0, calls)  # no per-call objects: one kernel call takes them all
        geom, arrays = f.geometry(layer_id), f.arrays(layer_id, prog)
        if (
            len(stacked.weight)
            and len(stacked.input)
            and geom.compute is None
            and f.kernels.input_copies is not None
            and (copies := f.weight_copies(layer_id)) is not None
            and stacked_copies_pay(
                (1 + int(np.count_nonzero(weight_words))) * copies.copies * arrays.wflat.size, len(stacked.input)
            )
        ):  # input deltas against each call's corrupted weights: no cross term (its records and search)
            prepared = f.prepared(layer_id, prog)
            return inject_calls_with_copies(x, prog, acc, stacked, geom, arrays, f.kernels, prepared, copies)
        return inject_calls(x, prog, acc, stacked, geom, arrays, f.kernels, f.prepared(layer_id, prog))

    def apply_exact(
        self,
        layer_id: str,
        x: np.ndarray,
        prog: LayerProgram,
        exact: ExactLayer,
        rows: np.ndarray,
        calls: int,
        *,
        gemm_rows: bool = False,
    ) -> np.ndarray | RowsAccumulators:
        """The accumulators of ``calls`` consecutive calls of an exact conv/dense layer under their
        faults, ``exact(rows)`` being the fault-free ones (``rows``: ``x`` as ``exact`` reads it): the
        same faults, counters and results as :meth:`apply_calls` on ``exact(rows)``.

        A single call of a layer whose weight words are each stored once per call
        (:func:`~.corrupted_weights.weights_stored_once`) runs ``exact`` on its corrupted weights
        instead: no weight deltas, no cross terms (see :mod:`.corrupted_weights`). ``gemm_rows``:
        that path may return its accumulators in the GEMM's layout
        (:class:`~approxtvm.runtime.exact_layer.RowsAccumulators`, for a requantizer that reads them).
        """
        plan = self.faults.plans.get(layer_id)
        if (
            calls != 1
            or plan is None
            or plan.trivial
            or plan.nop_ber > 0.0
            or not exact.has_gemm
            or (offsets := self.faults.weight_offsets(layer_id)) is None
        ):
            acc = exact(rows)
            if calls == 1 and not (acc.dtype == np.int32 and acc.flags.c_contiguous and acc.flags.writeable):
                return self.apply(layer_id, x, prog, acc)
            return self.apply_calls(layer_id, x, prog, acc, calls)
        call = self._calls.get(layer_id, self._first)
        self._calls[layer_id] = call + 1
        sample = self._sample(layer_id, call)
        if exact.gemm_extra_s > deltas_s(prog.schedule.shape, sample):
            # the layer's own (faster) formulation and the delta kernels: the GEMM on the corrupted
            # weights would cost more than the deltas it saves (digits' first conv: 0.33 ms a call)
            return self._inject(layer_id, x, prog, exact(rows), sample)
        f = self.faults
        geom, arrays = f.geometry(layer_id), f.arrays(layer_id, prog)
        prepared = f.prepared(layer_id, prog)
        return inject_with_weights(
            x, rows, prog, exact, sample, geom, arrays, f.kernels, prepared, offsets, gemm_rows=gemm_rows
        )

    def apply_kernel(
        self, layer_id: str, x: np.ndarray, prog: LayerProgram, kernel: Callable[..., np.ndarray]
    ) -> np.ndarray | None:
        """The accumulators of one call of a layer whose kernel can run on other weights
        (``kernel``: :meth:`~approxtvm.runtime.executor.LayerProgram.weight_kernel`), under its
        faults, or ``None`` (nothing drawn, nothing counted) where this does not apply.

        Where every weight word of a call is stored once (:func:`~.corrupted_weights.weights_stored_once`)
        the call's corrupted weights ``W'`` are well defined: the kernel runs on them, and the
        input faults' deltas are taken against them (:func:`~.kernel_weights.inject_through_kernel`):
        no weight deltas, no cross terms. Where its copies split only the batch
        (:func:`~.kernel_weights.batch_copies`), the kernel runs per copy on its rows. The same
        faults, counters and accumulators as :meth:`apply` on the fault-free ones (int32
        wrap-around in both).
        """
        plan, f = self.faults.plans.get(layer_id), self.faults
        if plan is None or plan.trivial or plan.onchip_trivial or plan.nop_ber > 0.0:
            return None
        offsets, copies, rows = f.weight_offsets(layer_id), None, None
        if offsets is None:  # several copies: the path where they split only the batch
            s = prog.schedule.shape
            copies = f.weight_copies(layer_id) if f.kernels.input_copies is not None else None
            rows = None if copies is None else batch_copies(copies, s.n, s.p, s.q)
            if rows is None:
                return None
        call = self._calls.get(layer_id, self._first)
        self._calls[layer_id] = call + 1
        sample = self._sample(layer_id, call)
        if not len(sample.weight):
            return self._inject(layer_id, x, prog, kernel(None), sample)
        geom, arrays, prepared = f.geometry(layer_id), f.arrays(layer_id, prog), f.prepared(layer_id, prog)
        if offsets is not None:
            return inject_through_kernel(x, prog, kernel, sample, geom, arrays, f.kernels, prepared, offsets)
        assert copies is not None and rows is not None
        return inject_through_copies(x, prog, kernel, sample, geom, arrays, f.kernels, prepared, copies, rows)

    def _block(self, layer_id: str, first: int, calls: int) -> tuple[int, SampleBlock]:
        """The cached samples (first call, block) holding calls ``first … first + calls − 1``; the
        blocks that hold them are sampled now (at once, :func:`sample_blocks_stacked`) if not cached."""
        cached = self._blocks.get(layer_id)
        if cached is not None and cached[0] <= first and first + calls <= cached[0] + len(cached[1]):
            return cached
        ev = self.faults.events(layer_id)
        b0, b1 = first // ev.block_calls, (first + calls - 1) // ev.block_calls + 1
        plan, geom = self.faults.plans[layer_id], self.faults.geometry(layer_id)
        block = sample_blocks_stacked(plan, geom, seed=self.seed, blocks=range(b0, b1), events=ev, generator=self._rng)
        cached = self._blocks[layer_id] = (b0 * ev.block_calls, block)
        return cached

    def _count(self, layer_id: str, flipped: np.ndarray, weight_words: int, input_words: int) -> None:
        """Add calls' flipped bits (per stream) and corrupted words to the run's counters."""
        if len(flipped):
            fl = self._flipped.get(layer_id)
            self._flipped[layer_id] = flipped if fl is None else fl + flipped
        words = self._words.setdefault(layer_id, [0, 0])
        words[0] += weight_words
        words[1] += input_words

    def _sample(self, layer_id: str, call: int) -> FaultSample:
        """The on-chip sample of one layer call, added to the run's counters."""
        c0, block = self._block(layer_id, call, 1)
        sample = block.sample(call - c0)
        self._count(layer_id, sample.flipped, len(sample.weight), len(sample.input))
        return sample

    def _onchip(
        self, layer_id: str, call: int, x: np.ndarray, prog: LayerProgram, acc: np.ndarray, *operands: np.ndarray
    ) -> np.ndarray:
        return self._inject(layer_id, x, prog, acc, self._sample(layer_id, call), *operands)

    def _inject(
        self,
        layer_id: str,
        x: np.ndarray,
        prog: LayerProgram,
        acc: np.ndarray,
        sample: FaultSample,
        *operands: np.ndarray,
    ) -> np.ndarray:
        """``acc`` (not changed) under one call's on-chip ``sample``, by the delta kernels."""
        if not len(sample.weight) and not len(sample.input):
            return acc
        f = self.faults
        if (
            not operands
            and copies_pay(len(sample.weight), len(sample.input))
            and f.kernels.input_copies is not None
            and (copies := f.weight_copies(layer_id)) is not None
        ):  # weight deltas box by box, input deltas against the weights as stored: no cross term
            geom, arrays = f.geometry(layer_id), f.arrays(layer_id, prog)
            return inject_with_copies(x, prog, acc, sample, geom, arrays, f.kernels, f.prepared(layer_id, prog), copies)
        second = operands[0] if operands else None
        return inject(
            x,
            prog,
            acc,
            sample,
            f.geometry(layer_id),
            f.arrays(layer_id, prog),
            f.kernels,
            f.prepared(layer_id, prog),
            second,
        )

    def _package(self, layer_id: str, call: int, x: np.ndarray, prog: LayerProgram, acc: np.ndarray) -> np.ndarray:
        plan = self.faults.plans[layer_id]
        parts = self.faults.parts(layer_id)
        rng = package_rng(self.seed, plan.layer_index, call)
        faults = sample_package_faults(prog.schedule.shape, parts, plan.nop_ber, plan.nop_protected_msbs, rng)
        tally = self._package_tally.setdefault(layer_id, {t: [0, 0, 0] for t in ("weight", "input")})
        exposed = self.faults.package_exposed(layer_id)
        for t in tally:
            tally[t][0] += exposed[t]
        for cf in faults:
            tally[cf.tensor][1] += cf.bits_flipped
            tally[cf.tensor][2] += len(cf.index)
        return package_delta(x, prog, acc, parts, faults)

    def counters(self) -> dict[str, Any]:
        """``{layer: {tensor: {bits_exposed, bits_flipped, words_corrupted, noc: {...}, sram: {...}}}}``.

        Layers that scale only buffers without a fault model list them under ``energy_only_buffers``.
        """
        out: dict[str, Any] = {}
        for lid, p in self.faults.plans.items():
            if lid in self._package_tally:
                out.setdefault(lid, {})["package"] = {
                    t: {"bits_exposed": e, "bits_flipped": fl, "words_corrupted": w}
                    for t, (e, fl, w) in self._package_tally[lid].items()
                }
            if lid in self._calls and not p.onchip_trivial:
                ev = self.faults.events(lid)
                fl = self._flipped.get(lid, np.zeros(len(ev.streams), np.int64))
                out[lid] = out.get(lid, {}) | fault_counters(
                    ev.streams, fl, tuple(self._words[lid]), self._calls[lid] - self._first
                )  # type: ignore[arg-type]
            if p.energy_only_buffers:  # scaled without a fault model: say so
                out.setdefault(lid, {})["energy_only_buffers"] = list(p.energy_only_buffers)
        return out
