"""Host operators with the float32 arithmetic the runtime's host uses, differentiable.

Every function computes the same IEEE float32 operations, in the same order, as the compiled
model's host (TVM legalization of the ONNX ops): ``QuantizeLinear`` is ``clip(round(x / s) + z)``
with a true division and ties to even, ``DequantizeLinear`` is ``(q − z) · s``, pooling sums the
window in row-major order and divides once. Rounding uses a straight-through gradient.
"""

from __future__ import annotations

from typing import Any

from approxtvm.models.finetune._torch import require_torch

torch = require_torch()
F = torch.nn.functional


class _RoundSte(torch.autograd.Function):
    """``round`` (ties to even) forward, identity backward."""

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:  # type: ignore[override]
        return grad


def round_ste(x: Any) -> Any:
    """Round half to even with a straight-through gradient."""
    return _RoundSte.apply(x)


def quantize(x: Any, scale: Any, zero_point: Any, lo: float, hi: float) -> Any:
    """ONNX ``QuantizeLinear`` as float codes: ``clip(round(x / s) + z, lo, hi)`` (float32)."""
    return torch.clamp(round_ste(x / scale) + zero_point, lo, hi)


def dequantize(codes: Any, scale: Any, zero_point: Any) -> Any:
    """ONNX ``DequantizeLinear``: ``(q − z) · s`` (float32; ``q − z`` is exact)."""
    return (codes - zero_point) * scale


def window_sum(x: Any, kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int]) -> Any:
    """Σ over each pooling window, taps added one by one in row-major order (float32)."""
    kh, kw = kernel
    p = (x.shape[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    q = (x.shape[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    acc = None
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dilations[0], j * dilations[1]
            tap = x[
                :, :, h0 : h0 + strides[0] * (p - 1) + 1 : strides[0], w0 : w0 + strides[1] * (q - 1) + 1 : strides[1]
            ]
            acc = tap if acc is None else acc + tap
    return acc


def global_average_pool(x: Any) -> Any:
    """``GlobalAveragePool``: row-major float32 sum over H×W, then one division by H·W."""
    h, w = x.shape[2], x.shape[3]
    return window_sum(x, (h, w), (1, 1), (1, 1)) / torch.tensor(float(h * w), dtype=x.dtype)


def max_pool(x: Any, attrs: dict[str, object]) -> Any:
    """``MaxPool`` (max is exact: any evaluation order gives the same value)."""
    k = tuple(int(v) for v in attrs["kernel_shape"])  # type: ignore[union-attr]
    st = tuple(int(v) for v in attrs.get("strides", [1] * len(k)))  # type: ignore[union-attr]
    di = tuple(int(v) for v in attrs.get("dilations", [1] * len(k)))  # type: ignore[union-attr]
    pads = [int(v) for v in attrs.get("pads", [0] * 2 * len(k))]  # type: ignore[union-attr]
    if any(pads):
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=float("-inf"))
    return F.max_pool2d(x, k, st, 0, di, ceil_mode=bool(attrs.get("ceil_mode", 0)))


def flatten(x: Any, axis: int) -> Any:
    """ONNX ``Flatten``."""
    lead = 1
    for d in x.shape[:axis]:
        lead *= int(d)
    return x.reshape(lead, -1)


def reshape(x: Any, shape: list[int]) -> Any:
    """ONNX ``Reshape`` (0 copies the input dim, -1 is inferred)."""
    dims = [int(x.shape[i]) if d == 0 else int(d) for i, d in enumerate(shape)]
    return x.reshape(dims)
