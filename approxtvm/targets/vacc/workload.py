"""The problem a layer poses to the accelerator: a 7-dimensional conv (dense is the 1×1 case)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Loop dimensions, Timeloop/ZigZag naming: batch, output channels, input channels,
#: output rows, output columns, filter rows, filter columns.
DIMS: tuple[str, ...] = ("N", "K", "C", "P", "Q", "R", "S")

#: Which dimensions index each tensor. Inputs are indexed by (N, C, P+R, Q+S): P/Q/R/S all
#: matter for the input tile size, so none of them gives input reuse on its own.
TENSOR_DIMS: dict[str, frozenset[str]] = {
    "weight": frozenset({"K", "C", "R", "S"}),
    "input": frozenset({"N", "C", "P", "Q", "R", "S"}),
    "output": frozenset({"N", "K", "P", "Q"}),
}


@dataclass(frozen=True, slots=True)
class LayerShape:
    """Shape of one conv2d or dense layer (dense: P = Q = R = S = 1).

    Attributes
    ----------
    op
        ``"conv2d"`` or ``"dense"``.
    n, k, c, p, q, r, s
        Batch, output channels, input channels, output rows/cols, filter rows/cols.
    h, w
        Input rows/cols before padding.
    stride_h, stride_w, dilation_h, dilation_w
        Convolution strides and dilations (1 for dense).
    pad_top, pad_left, pad_bottom, pad_right
        Zero-point padding of the input, in elements.
    """

    op: str
    n: int
    k: int
    c: int
    p: int
    q: int
    r: int
    s: int
    h: int
    w: int
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_bottom: int = 0
    pad_right: int = 0

    @staticmethod
    def dense(n: int, k: int, c: int) -> LayerShape:
        """Shape of ``y[n, k] = Σ_c x[n, c] · w[k, c]``."""
        return LayerShape("dense", n, k, c, 1, 1, 1, 1, 1, 1)

    @staticmethod
    def conv2d(
        n: int,
        k: int,
        c: int,
        h: int,
        w: int,
        r: int,
        s: int,
        *,
        strides: tuple[int, int] = (1, 1),
        dilations: tuple[int, int] = (1, 1),
        pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> LayerShape:
        """Shape of a conv2d; ``pads`` is (top, left, bottom, right) as in Relax."""
        p = (h + pads[0] + pads[2] - dilations[0] * (r - 1) - 1) // strides[0] + 1
        q = (w + pads[1] + pads[3] - dilations[1] * (s - 1) - 1) // strides[1] + 1
        return LayerShape(
            "conv2d", n, k, c, p, q, r, s, h, w, strides[0], strides[1], dilations[0], dilations[1], *pads
        )

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer (padded taps included: the PE array computes them)."""
        return self.n * self.k * self.c * self.p * self.q * self.r * self.s

    @property
    def bounds(self) -> dict[str, int]:
        """Loop bound of each dimension in :data:`DIMS`."""
        return {"N": self.n, "K": self.k, "C": self.c, "P": self.p, "Q": self.q, "R": self.r, "S": self.s}

    def input_extent(self, p_tile: int, r_tile: int, stride: int, dilation: int) -> int:
        """Input rows (or cols) touched by ``p_tile`` outputs and ``r_tile`` filter taps."""
        return (p_tile - 1) * stride + (r_tile - 1) * dilation + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> LayerShape:
        """Inverse of :meth:`to_dict`."""
        return LayerShape(**d)
