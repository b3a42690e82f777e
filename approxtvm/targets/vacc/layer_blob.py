"""One offloaded layer as a self-describing byte string: what a compiled library embeds per layer.

Written by the BYOC codegen (:mod:`approxtvm.targets.vacc.byoc`), read by the runtime
(:mod:`approxtvm.runtime.vacc_calls`).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.codegen import LoweredLayer
from approxtvm.targets.vacc.hardware import AcceleratorSpec


def pack_layer(lowered: LoweredLayer, spec: AcceleratorSpec, layer_index: int) -> bytes:
    """Everything the runtime needs to execute a layer, as one self-describing byte string (npz).

    ``layer_index`` is the layer's position among the module's offloaded functions: the fault
    generators are keyed by it, as in :class:`approxtvm.CompiledModel`.

    The weight is stored decoded: compressed tiles are decoded at the PE, so execution uses the
    decoded codes while the schedule's weight layout keeps the compressed sizes for energy.
    """
    from approxtvm.targets.vacc.compression import decompress_layer

    weight = lowered.weight if lowered.compressed is None else decompress_layer(lowered.compressed)
    arrays: dict[str, np.ndarray] = {
        "schedule": np.frombuffer(lowered.schedule.to_json().encode(), np.uint8),
        "spec": np.frombuffer(json.dumps(spec.to_dict()).encode(), np.uint8),
        "weight": np.ascontiguousarray(weight),
        "layer_index": np.asarray(layer_index, np.int64),
    }
    if lowered.bias is not None:
        arrays["bias"] = np.ascontiguousarray(lowered.bias)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack_layer(blob: bytes) -> tuple[Any, AcceleratorSpec, np.ndarray, np.ndarray | None, int]:
    """Inverse of :func:`pack_layer`: ``(LayerSchedule, AcceleratorSpec, weight, bias or None, index)``."""
    from approxtvm.targets.vacc.schedule import LayerSchedule

    try:
        z = np.load(io.BytesIO(blob), allow_pickle=False)
        schedule = LayerSchedule.from_dict(json.loads(z["schedule"].tobytes().decode()))
        spec = AcceleratorSpec.from_dict(json.loads(z["spec"].tobytes().decode()), "layer blob")
        weight = z["weight"]
        bias = z["bias"] if "bias" in z.files else None
        index = int(z["layer_index"])
    except (OSError, ValueError, KeyError) as exc:
        raise ScheduleError(
            "an offloaded layer's embedded data cannot be read",
            expected="a layer blob written by this approxtvm version",
            found=f"{type(exc).__name__}: {exc}",
            fix="rebuild and re-export the module with the installed approxtvm",
        ) from None
    return schedule, spec, weight, bias, index
