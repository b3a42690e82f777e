"""The JSON documents of ``approxtvm run|energy|inspect --json`` and the host-coverage lines.

Every document is one JSON object with ``"kind"`` (``run``, ``energy`` or ``inspect``),
``"version"`` (:data:`JSON_VERSION`) and a ``"coverage"`` block saying which MACs the energy
figures leave out. Fields (energies in pJ, MACs per executed batch unless the name says otherwise):

common
    ``model`` (argument given), ``host`` (``onnxruntime`` or ``tvm``: the engine of the layers
    that are not offloaded), ``batch_size``, ``accelerator`` (spec name).
``coverage``
    ``offloaded_macs`` and ``host_macs`` (one batch), ``host_mac_share`` (host ÷ all layer MACs,
    0–1), ``offloaded_layers`` (``[{layer_id, macs}]``), ``host_layers`` (``[{node, op, macs,
    reason}]``; ``macs`` is ``null`` when a shape is unknown), ``note`` (one sentence, empty when
    everything is offloaded).
``inspect``
    ``schedules``: layer id → the schedule's JSON form (:meth:`LayerSchedule.to_dict`).
``energy``
    ``total_pj``, ``pj_per_mac`` (over offloaded MACs), ``by_component`` (component → pJ),
    ``layers`` (``[{layer_id, macs, total_pj, pj_per_mac, by_component}]``), all for one batch.
``run``
    ``data`` (dataset spec), ``samples``, ``top1`` (``null`` without labels),
    ``energy_per_inference_pj``, ``pj_per_mac``, ``by_component_per_inference_pj``,
    ``kernel_layers`` (layers computed by the project's kernels; the others ran exactly inside the
    onnxruntime host), ``calls`` (layer → executions).
"""

from __future__ import annotations

from typing import Any

from approxtvm.runtime.energy import EnergyReport

#: Version of the JSON documents (bump when a field changes meaning or disappears).
JSON_VERSION = 1


def coverage(report: EnergyReport) -> dict[str, Any]:
    """The ``coverage`` block of a report of one batch."""
    offloaded: dict[str, int] = {}
    for le in report.layers:
        offloaded[le.layer_id] = offloaded.get(le.layer_id, 0) + le.macs
    return {
        "offloaded_macs": report.macs,
        "host_macs": report.host_macs,
        "host_mac_share": report.host_mac_share,
        "offloaded_layers": [{"layer_id": k, "macs": v} for k, v in offloaded.items()],
        "host_layers": [u.to_dict() for u in report.uncovered],
        "note": report.coverage_note(),
    }


def _header(kind: str, model_arg: str, model: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "version": JSON_VERSION,
        "model": model_arg,
        "host": model.host,
        "batch_size": model.batch_size,
        "accelerator": model.spec.name,
    }


def _macs_per_cycle(model: Any) -> int:
    from approxtvm.targets.vacc.hierarchy import Hierarchy

    return int(model.spec.pe_array.num_macs * Hierarchy.of(model.spec).chiplets)


def layer_estimates(model: Any) -> dict[str, dict[str, Any]]:
    """Per offloaded layer, one batch: energy, pJ/MAC, estimated cycles and MAC utilisation."""
    per_cycle = _macs_per_cycle(model)
    out: dict[str, dict[str, Any]] = {}
    for le in model.energy_per_batch().layers:
        if le.layer_id in out:  # a layer run twice: one estimate (the schedule is the same)
            continue
        out[le.layer_id] = {
            "total_pj": le.total_pj,
            "pj_per_mac": le.pj_per_mac,
            "latency_cycles": le.latency_cycles,
            "utilisation": le.macs / (le.latency_cycles * per_cycle) if le.latency_cycles else 0.0,
        }
    return out


def inspect_doc(model_arg: str, model: Any, schedules: dict[str, Any]) -> dict[str, Any]:
    """``inspect --json``: the schedules and, per layer, energy beside latency."""
    est = layer_estimates(model)
    return {
        **_header("inspect", model_arg, model),
        "coverage": coverage(model.energy_per_batch()),
        "schedules": {k: s.to_dict() for k, s in schedules.items()},
        "estimates": {k: est[k] for k in schedules if k in est},
    }


def energy_doc(model_arg: str, model: Any) -> dict[str, Any]:
    """``energy --json`` (one batch; energy does not depend on the data).

    Latency is the layers' estimated cycles run one after the other; utilisation is the busy
    MAC-cycles over all MAC-cycles of the accelerator (every chiplet of a package) in that time.
    """
    from approxtvm.targets.vacc.hierarchy import Hierarchy

    rep = model.energy_per_batch()
    macs_per_cycle = _macs_per_cycle(model)
    schedules = model.schedules

    def util(macs: int, cycles: int) -> float:
        return macs / (cycles * macs_per_cycle) if cycles else 0.0

    def split(layer_id: str) -> str | None:
        s = schedules.get(layer_id)
        return None if s is None or s.package is None else s.package.partition.label()

    return {
        **_header("energy", model_arg, model),
        "coverage": coverage(rep),
        "total_pj": rep.total_pj,
        "pj_per_mac": rep.pj_per_mac,
        "latency_cycles": rep.latency_cycles,
        "utilisation": util(rep.macs, rep.latency_cycles),
        "chiplets": Hierarchy.of(model.spec).chiplets,
        "by_component": rep.by_component(),
        "layers": [
            {
                "layer_id": le.layer_id,
                "macs": le.macs,
                "total_pj": le.total_pj,
                "pj_per_mac": le.pj_per_mac,
                "latency_cycles": le.latency_cycles,
                "utilisation": util(le.macs, le.latency_cycles),
                "partition": split(le.layer_id),
                "by_component": le.by_component(),
            }
            for le in rep.layers
        ],
    }


def run_doc(model_arg: str, model: Any, data_name: str, ev: Any) -> dict[str, Any]:
    """``run --json`` (``ev``: :class:`approxtvm.explore.evaluate.Evaluation`)."""
    counters = ev.result.counters
    return {
        **_header("run", model_arg, model),
        "coverage": coverage(model.energy_per_batch()),
        "data": data_name,
        "samples": ev.samples,
        "top1": ev.top1,
        "energy_per_inference_pj": ev.energy_per_inference_pj,
        "pj_per_mac": ev.energy.pj_per_mac,
        # cycles of one compiled batch (the offloaded layers one after the other), beside its energy
        "latency_cycles_per_batch": model.energy_per_batch().latency_cycles,
        "utilisation": _utilisation(model),
        "by_component_per_inference_pj": ev.by_component_per_inference_pj(),
        "kernel_layers": list(counters.get("kernel_layers", model.layer_ids)),
        "calls": dict(counters.get("calls", {})),
    }


def _utilisation(model: Any) -> float:
    rep = model.energy_per_batch()
    return rep.macs / (rep.latency_cycles * _macs_per_cycle(model)) if rep.latency_cycles else 0.0


def print_coverage(console: Any, report: EnergyReport) -> None:
    """The host layers and their MAC share under a table (nothing when all layers are offloaded)."""
    if not report.uncovered:
        console.print("energy covers every layer (all MAC layers offloaded)")
        return
    from rich.table import Table

    t = Table(title="layers on the host (no accelerator energy counted)")
    for col in ("node", "op", "MACs", "share", "why on the host"):
        t.add_column(col, justify="left" if col in ("node", "why on the host") else "right")
    total = report.macs + report.host_macs
    for node, macs in report.host_macs_by_layer().items():
        u = next(x for x in report.uncovered if x.node == node)
        share = "?" if macs is None or not total else f"{100 * macs / total:.1f} %"
        t.add_row(node, u.op, "unknown" if macs is None else f"{macs:,}", share, u.reason)
    console.print(t)
    console.print(f"[bold]{report.coverage_note()}[/bold]")
