"""QuantizedNet: the compiled model as a torch module (bit-exact forward, trainable parameters).

Parameters: per layer a float *master* weight and bias (quantized in the forward with a
straight-through rounding, so the codes the accelerator sees are always those of the current
weights), and every activation and weight scale (shared initializers stay one parameter). Zero
points stay fixed integers. The forward runs the steps of :class:`~.graph.QdqGraph`; the
accelerator layers call :class:`~.autograd.ApproxLayerFunction` and convert the int32
accumulators as the runtime does: ``float32(acc · (float64(s_x) · float64(s_w))) + bias``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from approxtvm.models.finetune import host_ops
from approxtvm.models.finetune._torch import require_torch
from approxtvm.models.finetune.autograd import LayerKernel, approx_layer
from approxtvm.models.finetune.graph import HostStep, LayerStep, QdqGraph
from approxtvm.runtime.kernels import KernelCache
from approxtvm.runtime.multipliers import Multiplier

torch = require_torch()
F = torch.nn.functional

#: Largest |bias code| kept: the int32 range narrowed to float32-representable integers.
BIAS_CODE_LIMIT = 2147483520.0


def _key(name: str) -> str:
    """ONNX names → valid module attribute names (dots are not allowed in parameter names)."""
    return name.replace(".", "__")


class QuantizedNet(torch.nn.Module):
    """The quantized model with each layer's multiplier emulated bit-exactly.

    Parameters
    ----------
    graph
        The parsed QDQ model.
    multipliers
        Layer id → multiplier.
    grad
        ``ste`` (exact-product gradient) or ``fd`` (finite differences of the table).
    paths
        Layer id → kernel path to force (default: chosen per call).
    """

    def __init__(
        self,
        graph: QdqGraph,
        multipliers: dict[str, Multiplier],
        grad: str = "ste",
        paths: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.graph = graph
        inits = graph.initializers
        self.lo, self.hi = (-128.0, 127.0) if graph.signed else (0.0, 255.0)
        self.scales = torch.nn.ParameterDict()
        self.zero_points: dict[str, Any] = {}
        self.weights = torch.nn.ParameterDict()
        self.biases = torch.nn.ParameterDict()
        cache = KernelCache(table_cache_max_bytes=128 * 2**20)
        self.kernels: dict[str, LayerKernel] = {}
        for step in graph.steps:
            if isinstance(step, HostStep) and step.op in ("QuantizeLinear", "DequantizeLinear"):
                self._scale(step.inputs[1])
                self._zero_point(step.inputs[2])
            if not isinstance(step, LayerStep):
                continue
            self._scale(step.x_scale)
            self._zero_point(step.x_zero_point)
            self._scale(step.w_scale)
            zw = self._zero_point(step.w_zero_point)
            sw = self.scales[_key(step.w_scale)].detach()
            codes = torch.from_numpy(inits[step.weight].astype(np.float32))
            w = host_ops.dequantize(codes, _per_channel(sw, codes), _per_channel(zw, codes))
            self.weights[_key(step.name)] = torch.nn.Parameter(w)
            if step.bias is not None:
                bq = torch.from_numpy(inits[step.bias].astype(np.float64)).to(torch.float32)
                bs = torch.from_numpy(inits[step.b_scale].astype(np.float32)).reshape(-1)  # type: ignore[index]
                bz = torch.from_numpy(inits[step.b_zero_point].astype(np.float32)).reshape(-1)  # type: ignore[index]
                self.biases[_key(step.name)] = torch.nn.Parameter((bq - bz) * bs)
            self.kernels[step.name] = LayerKernel(
                step.op,
                multipliers[step.name],
                cache,
                strides=step.strides,
                dilations=step.dilations,
                grad=grad,
                path=(paths or {}).get(step.name, ""),
            )

    # ------------------------------------------------------------------ parameters
    def _scale(self, name: str) -> None:
        if _key(name) not in self.scales:
            v = torch.from_numpy(np.asarray(self.graph.initializers[name], np.float32).reshape(-1).copy())
            self.scales[_key(name)] = torch.nn.Parameter(v)

    def _zero_point(self, name: str) -> Any:
        if name not in self.zero_points:
            v = np.asarray(self.graph.initializers[name]).reshape(-1).astype(np.float32)
            self.zero_points[name] = torch.from_numpy(v)
        return self.zero_points[name]

    def scale(self, name: str) -> Any:
        """The float32 scale tensor (1 or K entries) of an initializer."""
        return self.scales[_key(name)]

    def weight_codes(self, step: LayerStep) -> Any:
        """Current weight codes (float tensor of integers, stored layout) with STE rounding."""
        w = self.weights[_key(step.name)]
        zw = _per_channel(self.zero_points[step.w_zero_point], w)
        sw = _per_channel(self.scale(step.w_scale), w)
        return host_ops.quantize(w, sw, zw, self.lo, self.hi)

    def bias_scale(self, step: LayerStep) -> Any:
        """float32 ``s_x · s_w`` (per tensor or per channel), the bias quantization scale."""
        return self.scale(step.x_scale) * self.scale(step.w_scale)

    def bias_codes(self, step: LayerStep) -> Any:
        """Current int32 bias codes (as float32) with STE rounding."""
        b = self.biases[_key(step.name)]
        return torch.clamp(host_ops.round_ste(b / self.bias_scale(step)), -BIAS_CODE_LIMIT, BIAS_CODE_LIMIT)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Any) -> Any:
        """Logits (the first graph output) for float32 input ``x``."""
        return self.run(x)[self.graph.output_names[0]]

    def run(self, x: Any) -> dict[str, Any]:
        """Every graph output for float32 input ``x``."""
        env: dict[str, Any] = {self.graph.input_name: x}
        for step in self.graph.steps:
            if isinstance(step, LayerStep):
                env[step.out] = self._layer(step, env[step.codes_in])
            else:
                outs = self._host(step, env)
                for name, v in zip(step.outputs, outs, strict=False):
                    env[name] = v
        return {name: env[name] for name in self.graph.output_names}

    def _const(self, name: str) -> Any:
        return torch.from_numpy(np.asarray(self.graph.initializers[name]).copy())

    def _host(self, step: HostStep, env: dict[str, Any]) -> list[Any]:
        op, a = step.op, step.attrs
        if op == "QuantizeLinear":
            s, z = self.scale(step.inputs[1]), self.zero_points[step.inputs[2]]
            return [host_ops.quantize(env[step.inputs[0]], s, z, self.lo, self.hi)]
        if op == "DequantizeLinear":
            s, z = self.scale(step.inputs[1]), self.zero_points[step.inputs[2]]
            return [host_ops.dequantize(env[step.inputs[0]], s, z)]
        x = env[step.inputs[0]]
        if op == "Relu":
            return [torch.relu(x)]
        if op == "Add":
            return [x + env[step.inputs[1]]]
        if op == "Flatten":
            return [host_ops.flatten(x, int(a.get("axis", 1)))]  # type: ignore[call-overload]
        if op == "GlobalAveragePool":
            return [host_ops.global_average_pool(x)]
        if op == "MaxPool":
            return [host_ops.max_pool(x, a)]
        if op == "Reshape":
            return [host_ops.reshape(x, [int(v) for v in self._const(step.inputs[1]).tolist()])]
        return [x]  # Identity

    def _layer(self, step: LayerStep, x: Any) -> Any:
        kernel = self.kernels[step.name]
        zx = int(self.zero_points[step.x_zero_point][0])
        zw = self.zero_points[step.w_zero_point]
        w = self.weight_codes(step)
        sx, sw = self.scale(step.x_scale), self.scale(step.w_scale)
        if step.op == "dense":
            if step.transpose_weight:
                w = w.t()
            if x.ndim != 2:
                x = x.reshape(x.shape[0], -1)
            zwk = zw.expand(w.shape[0]) if zw.numel() == 1 else zw
            acc = approx_layer(x, w, zx, zwk, kernel)
            bshape: tuple[int, ...] = (1, -1)
        else:
            pt, pl, pb, pr = step.pads
            if any(step.pads):  # padded taps hold z_x and go through the multiplier
                x = F.pad(x, (pl, pr, pt, pb), value=float(zx))
            zwk = zw.expand(w.shape[0]) if zw.numel() == 1 else zw
            acc = approx_layer(x, w, zx, zwk, kernel)
            bshape = (1, -1, 1, 1)
        scale64 = sx.to(torch.float64) * sw.to(torch.float64)
        y = (acc * scale64.reshape(bshape)).to(torch.float32)
        if step.bias is not None:
            y = y + (self.bias_codes(step) * self.bias_scale(step)).reshape(bshape)
        return y


def _per_channel(v: Any, like: Any) -> Any:
    """A (1,) or (K,) tensor broadcast along axis 0 of ``like``."""
    if v.numel() == 1:
        return v.reshape(())
    return v.reshape((-1,) + (1,) * (like.ndim - 1))
