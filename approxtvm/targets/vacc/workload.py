"""The problem a layer poses to the accelerator: a grouped 8-dimensional conv.

Dense layers are the 1×1 case (leading dimensions of a rank-3+ MatMul flattened into ``N``);
an activation × activation MatMul (attention ``QKᵀ``, ``AV``) is a grouped dense layer whose
groups are the batch slices (images × heads) and whose "weight" is the second activation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from approxtvm.errors import ScheduleError
from approxtvm.schema import Schema

#: Loop dimensions, Timeloop/ZigZag naming: batch, output channels (per group), input channels
#: (per group), output rows, output columns, filter rows, filter columns, groups. ``G`` comes last
#: so that the seven ungrouped dimensions keep their positions in packed per-dimension arrays.
DIMS: tuple[str, ...] = ("N", "K", "C", "P", "Q", "R", "S", "G")

#: Layer kinds: a convolution (grouped or not), a dense layer with a constant weight, and an
#: activation × activation MatMul (both operands stream in at run time).
OPS: tuple[str, ...] = ("conv2d", "dense", "matmul")

#: Which dimensions index each tensor. Inputs are indexed by (N, C, P+R, Q+S): P/Q/R/S all
#: matter for the input tile size, so none of them gives input reuse on its own.
#: The group dimension indexes every tensor: groups share nothing.
TENSOR_DIMS: dict[str, frozenset[str]] = {
    "weight": frozenset({"G", "K", "C", "R", "S"}),
    "input": frozenset({"N", "G", "C", "P", "Q", "R", "S"}),
    "output": frozenset({"N", "G", "K", "P", "Q"}),
}


@dataclass(frozen=True, slots=True)
class LayerShape:
    """Shape of one conv2d, dense or activation × activation MatMul layer (dense: P = Q = R = S = 1).

    Attributes
    ----------
    op
        One of :data:`OPS`.
    n, k, c, p, q, r, s
        Batch (rows of a MatMul), output channels, input channels (both over all groups: the
        tensors' channel counts), output rows/cols, filter rows/cols.
    h, w
        Input rows/cols before padding.
    stride_h, stride_w, dilation_h, dilation_w
        Convolution strides and dilations (1 for dense).
    pad_top, pad_left, pad_bottom, pad_right
        Zero-point padding of the input, in elements.
    groups
        ``G``: channels split into ``G`` independent groups of ``c / G`` inputs and ``k / G``
        outputs (depthwise: ``G = c``); for ``matmul`` the batch slices.
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
    groups: int = 1

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ScheduleError(
                f"unknown layer kind {self.op!r}", expected=f"one of {OPS}", found=repr(self.op), fix="use conv2d"
            )
        if self.groups < 1 or self.k % self.groups or self.c % self.groups:
            raise ScheduleError(
                "channels do not split into the groups",
                expected=f"K = {self.k} and C = {self.c} divisible by groups",
                found=f"groups = {self.groups}",
                fix="pass the layer's group attribute",
            )

    @staticmethod
    def dense(n: int, k: int, c: int) -> LayerShape:
        """Shape of ``y[n, k] = Σ_c x[n, c] · w[k, c]``."""
        return LayerShape("dense", n, k, c, 1, 1, 1, 1, 1, 1)

    @staticmethod
    def matmul(slices: int, m: int, k: int, c: int) -> LayerShape:
        """Shape of ``y[g, m, k] = Σ_c a[g, m, c] · b[g, c, k]`` over ``slices`` batch slices."""
        return LayerShape("matmul", m, slices * k, slices * c, 1, 1, 1, 1, 1, 1, groups=slices)

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
        groups: int = 1,
    ) -> LayerShape:
        """Shape of a conv2d (``c``: all input channels); ``pads`` is (top, left, bottom, right)."""
        p = (h + pads[0] + pads[2] - dilations[0] * (r - 1) - 1) // strides[0] + 1
        q = (w + pads[1] + pads[3] - dilations[1] * (s - 1) - 1) // strides[1] + 1
        return LayerShape(
            "conv2d", n, k, c, p, q, r, s, h, w, strides[0], strides[1], dilations[0], dilations[1], *pads, groups
        )

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer (padded taps included: the PE array computes them)."""
        return self.n * self.k * (self.c // self.groups) * self.p * self.q * self.r * self.s

    @property
    def k_per_group(self) -> int:
        """Output channels of one group."""
        return self.k // self.groups

    @property
    def c_per_group(self) -> int:
        """Input channels of one group (1 for a depthwise convolution)."""
        return self.c // self.groups

    @property
    def bounds(self) -> dict[str, int]:
        """Loop bound of each dimension in :data:`DIMS` (``K`` and ``C`` per group)."""
        g = self.groups
        return {
            "N": self.n,
            "G": g,
            "K": self.k // g,
            "C": self.c // g,
            "P": self.p,
            "Q": self.q,
            "R": self.r,
            "S": self.s,
        }

    def input_extent(self, p_tile: int, r_tile: int, stride: int, dilation: int) -> int:
        """Input rows (or cols) touched by ``p_tile`` outputs and ``r_tile`` filter taps."""
        return (p_tile - 1) * stride + (r_tile - 1) * dilation + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (:data:`SHAPE_SCHEMA`)."""
        return SHAPE_SCHEMA.unstructure(self)

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "layer shape") -> LayerShape:
        """Inverse of :meth:`to_dict` (strict: errors name ``source`` and the key)."""
        return SHAPE_SCHEMA.structure(d, LayerShape, source=source)


#: Layer shapes ↔ plain JSON (one field per key, strict types).
SHAPE_SCHEMA = Schema(ScheduleError)
