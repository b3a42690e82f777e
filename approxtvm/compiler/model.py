"""CompiledModel and RunResult: run a compiled model, get outputs, energy and counters."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tvm
from tvm import relax

from approxtvm.compiler import frontend
from approxtvm.compiler.entry_points import claim_entry_points
from approxtvm.compiler.host_graph import HostMacs, locate_layers, mac_nodes
from approxtvm.compiler.host_ort import OrtHost
from approxtvm.errors import DataError, ModelError
from approxtvm.runtime.energy import EnergyReport, UncoveredLayer, layer_energy
from approxtvm.runtime.executor import CallLog, LayerProgram
from approxtvm.runtime.faults import FaultOptions, ModelFaults
from approxtvm.runtime.kernels import KernelCache
from approxtvm.runtime.kernels.cpu import detect_cpu
from approxtvm.runtime.shared_caches import SharedCaches
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.schedule import LayerSchedule

LOG = logging.getLogger("approxtvm")
#: 2: the accelerator is saved in its spec-file layout (``AcceleratorSpec.to_dict``).
SAVE_FORMAT = 2
#: Engines that can run the host part (everything not offloaded): ``onnxruntime`` runs the QDQ
#: graph itself in segments around the offloaded layers; ``tvm`` is the Relax VM build.
HOSTS = ("onnxruntime", "tvm")


@dataclass(frozen=True)
class RunResult:
    """Outputs of a run, the energy the accelerator spent on it, and per-layer counters.

    Attributes
    ----------
    outputs
        Output name → array (batch first), one row per input sample.
    energy
        Energy of the whole run (all samples); see :attr:`energy_per_inference_pj`.
    counters
        ``{"calls": {layer: n}, "samples": n, "layers": {layer: {counter: value}}}``; when a layer
        scales a NoC swing or SRAM voltage, ``"faults": {layer: {tensor: {bits_exposed, bits_flipped,
        words_corrupted, noc: {...}, sram: {...}}}}`` (see :mod:`approxtvm.runtime.faults`).
    traces
        With ``run(..., trace=True)``: ``(layer_id, x_q, acc)`` per offloaded call, in call order:
        the layer's input codes and its int32 accumulators (after faults), for checks against
        independent references; empty otherwise.
    """

    outputs: dict[str, np.ndarray]
    energy: EnergyReport
    counters: dict[str, Any] = field(default_factory=dict)
    traces: tuple[tuple[str, np.ndarray, np.ndarray], ...] = ()

    @property
    def energy_per_inference_pj(self) -> float:
        """Energy of one sample: total over the executed batches ÷ the samples they held.

        The last batch of a run is padded to the compiled batch size; the accelerator computes
        the padding too (it is in :attr:`energy`), so dividing by the real samples would charge it
        to them. Energy does not depend on the data, so each executed slot costs the same.
        """
        slots = int(self.counters.get("batches", 1)) * int(self.counters.get("batch_size", 1))
        return self.energy.total_pj / max(1, slots)


class CompiledModel:
    """A model compiled for vacc: the host part plus one schedule per offloaded layer.

    Build it with :func:`approxtvm.compile_onnx`; run it with :meth:`run`.

    The host part (everything not offloaded) runs on :attr:`host`: ``"onnxruntime"`` (the QDQ graph
    in onnxruntime segments around the layers our kernels execute, :mod:`approxtvm.compiler.host_ort`)
    or ``"tvm"`` (the Relax VM). On the onnxruntime host, :attr:`exact_layers` says where exact,
    fault-free layers compute: ``"onnxruntime"`` (inside the segments, same exact accumulators) or
    ``"kernels"`` (through the project's kernels like approximate and faulty layers). Energy is
    counted from the schedules either way; :attr:`mac_nodes` and the reports' ``uncovered`` list
    the MAC layers left on the host.
    """

    def __init__(
        self,
        *,
        proto: onnx.ModelProto,
        policy: ApproxPolicy,
        spec: AcceleratorSpec,
        uid: str,
        batch_size: int,
        programs: dict[str, LayerProgram],
        executable: relax.VMExecutable | None,
        vm: relax.VirtualMachine | None,
        log: CallLog,
        host: str = "tvm",
        host_reasons: dict[str, str] | None = None,
        caches: SharedCaches | None = None,
    ) -> None:
        if host not in HOSTS:
            raise ModelError(
                f"unknown host {host!r}",
                expected=" or ".join(HOSTS),
                found=repr(host),
                fix="host='onnxruntime' (fast, onnxruntime's arithmetic) or 'tvm' (the Relax VM)",
            )
        if host == "tvm" and vm is None:
            raise ModelError("host='tvm' needs the built VM", expected="a VirtualMachine", found="None")
        self.proto = proto
        self.policy = policy
        self.spec = spec
        self.uid = uid
        self.batch_size = batch_size
        self.programs = programs
        self.executable = executable
        self._vm = vm
        self._log = log
        #: Conv/dense layers left on the host: ONNX node name → why (see ``vacc.host_reasons``).
        self.host_reasons: dict[str, str] = dict(host_reasons or {})
        specs = frontend.input_specs(proto)
        self.input_name, dims = next(iter(specs.items()))
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in dims[1:] if isinstance(d, int))
        self.output_names = [o.name for o in proto.graph.output]
        # one count simulation per distinct mapping (and fault geometry), shared with the caller's
        # other models when it passes caches
        counts: dict[object, object] = caches.counts_for(spec) if caches is not None else {}
        self._geometry = caches.geometry_for(spec) if caches is not None else {}
        self._layer_energy = {lid: layer_energy(p, spec, counts) for lid, p in programs.items()}
        # range-checks swings/voltages against the spec
        self._faults = ModelFaults(self.schedules, spec, geometry_cache=self._geometry)
        self.host = host
        #: Where exact, fault-free layers compute on the onnxruntime host (see :mod:`approxtvm.compiler.host_ort`).
        self.exact_layers = "onnxruntime"
        located = locate_layers(proto, {lid: p.weight for lid, p in programs.items()})
        self._ort = (
            OrtHost(proto, programs, log, located, detect_cpu().vnni, batch_size) if host == "onnxruntime" else None
        )
        if self._ort is not None:  # build the default plan now: a graph it cannot cut fails at compile time
            self._ort.plan(self._ort.kernel_layers(self.exact_layers, self._faulty(), self.draws_faults))
        if len(located) < len(programs):
            LOG.warning(
                "%d offloaded layer(s) not found in the ONNX graph (%s): the host-MAC figures count them as host",
                len(programs) - len(located),
                ", ".join(sorted(set(programs) - set(located)))[:200],
            )
        #: Every MAC-bearing ONNX node: its MACs per batch and the offloaded layer covering it, if any.
        self.mac_nodes: tuple[HostMacs, ...] = mac_nodes(proto, located, batch_size)
        self._uncovered = tuple(
            # the partitioner's own reason where it has one (e.g. groups, policy), else the graph's guess
            UncoveredLayer(h.node, h.op, h.macs, self.host_reasons.get(h.node, h.reason))
            for h in self.mac_nodes
            if h.layer_id is None
        )
        if self._uncovered:
            share = self.energy_per_batch().host_mac_share
            LOG.warning(
                "energy reports cover the offloaded layers only: %d layer(s) with %.1f %% of the MACs run on "
                "the host and are not counted",
                len(self._uncovered),
                100 * share,
            )
        # last, once nothing here can raise (a failed build leaves the symbols to its fallback):
        # the layers' TVM global functions live as long as this model (they hold its programs)
        claim_entry_points(self, (p.schedule.symbol for p in programs.values()))

    # ------------------------------------------------------------------ views
    @property
    def schedules(self) -> dict[str, LayerSchedule]:
        """Layer id → schedule, in program order."""
        return {lid: p.schedule for lid, p in self.programs.items()}

    @property
    def layer_ids(self) -> list[str]:
        """Offloaded layers in program order."""
        return list(self.programs)

    def energy_per_batch(self) -> EnergyReport:
        """Energy of one batch through every offloaded layer (independent of the data), with the
        MACs of the layers left on the host (:attr:`EnergyReport.uncovered`)."""
        return EnergyReport(tuple(self._layer_energy.values()), self._uncovered)

    def _faulty(self) -> frozenset[str]:
        return frozenset(lid for lid, plan in self._faults.plans.items() if not plan.trivial)

    @property
    def draws_faults(self) -> bool:
        """Whether a run draws faults. Faults are drawn per layer call (batch) of a run, so then a
        sample's outputs depend on its position in the run; without faults every sample's outputs
        are the same in any run that holds it (samples of a batch are computed independently)."""
        return self._faults.scaled

    def set_fault_options(self, options: FaultOptions) -> None:
        """Run-wide fault-model options for later runs (SRAM write/read faults, BER scale)."""
        self._faults = ModelFaults(self.schedules, self.spec, options, self._geometry)

    # ------------------------------------------------------------------ running
    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"input {self.input_name!r} has the wrong shape",
                expected=f"(N, {', '.join(map(str, self.input_shape))})",
                found=str(tuple(x.shape)),
                fix="resize/transpose the data to the model's input layout (NCHW)",
            )
        if not np.issubdtype(x.dtype, np.floating):
            raise DataError(
                f"input {self.input_name!r} must be floating point",
                expected="float32",
                found=str(x.dtype),
                fix="convert and normalise the data as during training",
            )
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(
        self, inputs: dict[str, np.ndarray] | np.ndarray, seed: int = 0, *, trace: bool = False, first_batch: int = 0
    ) -> RunResult:
        """Run the model on a batch of any size (split into compiled-size batches).

        Parameters
        ----------
        inputs
            ``{input_name: array}`` or the array itself, batch first.
        seed
            Seed of the fault generators (runs are deterministic for a given seed).
        trace
            Record every offloaded call's input codes and accumulators in
            :attr:`RunResult.traces` (costs a copy of each layer input).
        first_batch
            Index of this run's first batch in a longer run it continues (faults are drawn per
            batch call): running a whole run's batches from ``first_batch`` on gives the outputs
            the whole run gives them. Only the fault draws depend on it.
        """
        if isinstance(inputs, dict):
            if set(inputs) != {self.input_name}:
                raise DataError(
                    "inputs do not name the model's input",
                    expected=f"{{{self.input_name!r}: array}}",
                    found=str(sorted(inputs)),
                    fix=f"pass {{{self.input_name!r}: x}}",
                )
            x = inputs[self.input_name]
        else:
            x = inputs
        x = self._check_input(x)
        n = len(x)
        b = self.batch_size
        outs: list[list[np.ndarray]] = [[] for _ in self.output_names]
        self._log.clear()
        self._log.trace = trace
        batches = 0
        session = self._faults.session(seed, first_batch)  # replaced at every run
        self._log.faults = session.apply if session is not None else None
        self._log.faults_calls = session.apply_calls if session is not None else None
        self._log.faults_exact = session.apply_exact if session is not None else None
        self._log.faults_kernel = session.apply_kernel if session is not None else None
        kernels = None if self._ort is None else self._ort.kernel_layers(self.exact_layers, self._faulty())
        # batches per call of every layer (same results as one call each; see OrtHost.run_batches)
        group = 0 if self._ort is None or kernels is None else self._ort.group_size(kernels, -(-n // b))
        start = 0
        while start < n:
            grouped = min(max(1, group), -(-(n - start) // b))
            chunk = x[start : start + grouped * b]
            real = len(chunk)
            if real < grouped * b:  # pad the last batch by repeating its last sample; padded rows are dropped
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], grouped * b - real, axis=0)])
            start += real
            if self._ort is not None and kernels is not None and group:
                for i, r in enumerate(self._ort.run_batches(chunk, kernels, grouped)):
                    outs[i].append(r[:real])
                batches += grouped
                continue
            if self._ort is not None and kernels is not None:
                for i, r in enumerate(self._ort.run_batch(chunk, kernels)):
                    outs[i].append(r[:real])
            else:
                assert self._vm is not None
                res = self._vm["main"](tvm.runtime.tensor(chunk))
                res = [res] if hasattr(res, "numpy") else list(res)
                for i, r in enumerate(res):
                    outs[i].append(r.numpy()[:real])
            batches += 1
        calls: dict[str, int] = {}
        for lid in self._log.calls:
            calls[lid] = calls.get(lid, 0) + 1
        report = EnergyReport(tuple(self._layer_energy[lid] for lid in self._log.calls), self._uncovered * batches)
        counters = {"samples": n, "batches": batches, "batch_size": b, "calls": calls}
        if kernels is not None:
            counters["kernel_layers"] = [lid for lid in self.programs if lid in kernels]
        self._log.faults = self._log.faults_calls = self._log.faults_exact = self._log.faults_kernel = None
        self._log.trace = False
        traces = tuple(self._log.traces)
        self._log.traces.clear()
        if session is not None:
            counters["faults"] = session.counters()
        outputs = {
            name: o[0] if len(o) == 1 else np.concatenate(o) for name, o in zip(self.output_names, outs, strict=True)
        }
        return RunResult(outputs, report, counters, traces)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save to a directory: host library, schedules (JSON), weights (npz), QDQ model, manifest."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        if self.executable is not None:
            self.executable.export_library(str(d / "host.so"))
        onnx.save(self.proto, str(d / "model.qdq.onnx"))
        arrays: dict[str, np.ndarray] = {}
        for lid, p in self.programs.items():
            arrays[f"{lid}/weight"] = p.weight
            if p.bias is not None:
                arrays[f"{lid}/bias"] = p.bias
        np.savez(d / "weights.npz", **arrays)
        manifest = {
            "format": SAVE_FORMAT,
            "uid": self.uid,
            "batch_size": self.batch_size,
            "host": self.host,
            "policy": self.policy.to_dict(),
            "accelerator": self.spec.to_dict(),
            "schedules": [p.schedule.to_dict() for p in self.programs.values()],
            "host_reasons": self.host_reasons,
        }
        (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return d

    @staticmethod
    def load(path: Path, resolver_cls: Any) -> CompiledModel:
        """Load a saved model (see :func:`approxtvm.compiler.driver.load_compiled`)."""
        import tvm_ffi

        from approxtvm.runtime.executor import make_runner

        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise ModelError(
                f"{path} is not a saved approxtvm model",
                expected="a directory with manifest.json",
                found="no manifest.json",
                fix="save with CompiledModel.save(path)",
            )
        manifest = json.loads(mpath.read_text())
        if manifest.get("format") != SAVE_FORMAT:
            raise ModelError(
                f"{mpath}: unsupported save format",
                expected=str(SAVE_FORMAT),
                found=str(manifest.get("format")),
                fix="recompile and save with this approxtvm",
            )
        spec = AcceleratorSpec.from_dict(manifest["accelerator"], f"{mpath}: accelerator")
        resolver = resolver_cls(spec)
        weights = np.load(path / "weights.npz")
        log = CallLog()
        cache = KernelCache()
        programs: dict[str, LayerProgram] = {}
        for sd in manifest["schedules"]:
            sch = LayerSchedule.from_dict(sd, f"{mpath}: schedules")
            bias = weights[f"{sch.layer_id}/bias"] if sch.has_bias else None
            prog = LayerProgram.build(
                sch,
                weights[f"{sch.layer_id}/weight"],
                bias,
                resolver.multiplier(sch.config.multiplier, sch.quant.signed),
                cache,
            )
            programs[sch.layer_id] = prog
            tvm_ffi.register_global_func(sch.symbol, make_runner(prog, log), override=True)
        host = str(manifest.get("host", "tvm"))  # saves before the onnxruntime host were VM-only
        lib = vm = None
        if host == "tvm":
            lib = tvm.runtime.load_module(str(path / "host.so"))
            vm = relax.VirtualMachine(lib, tvm.cpu())
        return CompiledModel(
            proto=onnx.load(str(path / "model.qdq.onnx")),
            policy=ApproxPolicy.from_dict(manifest["policy"]),
            spec=spec,
            uid=manifest["uid"],
            batch_size=int(manifest["batch_size"]),
            programs=programs,
            executable=lib,
            vm=vm,
            log=log,
            host=host,
            host_reasons=manifest.get("host_reasons", {}),
        )
