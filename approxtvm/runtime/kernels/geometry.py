"""Shapes and operand checks shared by every kernel (NCHW activations, OIHW weights)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from approxtvm.errors import MultiplierError


@dataclass(frozen=True)
class ConvGeometry:
    """Geometry of one 2-D convolution with explicit padding.

    Attributes
    ----------
    n, c, h, w
        Batch, input channels, input rows, input columns (before padding).
    k, r, s
        Output channels, filter rows, filter columns.
    stride_h, stride_w, dilation_h, dilation_w
        Strides and dilations, in elements.
    pad_top, pad_left, pad_bottom, pad_right
        Padding, in elements.
    """

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_bottom: int = 0
    pad_right: int = 0

    @property
    def hp(self) -> int:
        """Padded input rows."""
        return self.h + self.pad_top + self.pad_bottom

    @property
    def wp(self) -> int:
        """Padded input columns."""
        return self.w + self.pad_left + self.pad_right

    @property
    def p(self) -> int:
        """Output rows."""
        return (self.hp - self.dilation_h * (self.r - 1) - 1) // self.stride_h + 1

    @property
    def q(self) -> int:
        """Output columns."""
        return (self.wp - self.dilation_w * (self.s - 1) - 1) // self.stride_w + 1

    @property
    def taps(self) -> int:
        """Products summed into one output: ``C·R·S``."""
        return self.c * self.r * self.s

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the whole layer: ``N·K·P·Q·C·R·S``."""
        return self.n * self.k * self.p * self.q * self.taps

    @property
    def strides(self) -> tuple[int, int]:
        """``(stride_h, stride_w)``."""
        return (self.stride_h, self.stride_w)

    @property
    def dilations(self) -> tuple[int, int]:
        """``(dilation_h, dilation_w)``."""
        return (self.dilation_h, self.dilation_w)

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)``."""
        return (self.pad_top, self.pad_left, self.pad_bottom, self.pad_right)

    def unpadded(self) -> ConvGeometry:
        """The same convolution on the already padded input (pads all zero)."""
        return ConvGeometry(
            self.n,
            self.c,
            self.hp,
            self.wp,
            self.k,
            self.r,
            self.s,
            self.stride_h,
            self.stride_w,
            self.dilation_h,
            self.dilation_w,
        )


def _pair(name: str, v: tuple[int, ...] | list[int], n: int) -> tuple[int, ...]:
    t = tuple(int(i) for i in v)
    if len(t) != n:
        raise MultiplierError(
            f"conv2d_products: {name} has the wrong length",
            expected=f"{n} integers",
            found=repr(v),
            fix="pads are (top, left, bottom, right); strides and dilations are (h, w)",
        )
    return t


def conv_geometry(
    x: np.ndarray, w: np.ndarray, strides: tuple[int, ...], dilations: tuple[int, ...], pads: tuple[int, ...]
) -> ConvGeometry:
    """Check NCHW/OIHW operands and return their :class:`ConvGeometry`."""
    if x.ndim != 4 or w.ndim != 4:
        raise MultiplierError(
            "conv2d_products: operands have the wrong rank",
            expected="x NCHW (4-D) and w OIHW (4-D)",
            found=f"x {x.shape}, w {w.shape}",
        )
    if x.shape[1] != w.shape[1]:
        raise MultiplierError(
            "conv2d_products: input channels of x and w differ",
            expected=f"w.shape[1] == x.shape[1] = {x.shape[1]} (groups are not supported)",
            found=f"w.shape[1] = {w.shape[1]}",
            fix="split grouped/depthwise convolutions into one call per group",
        )
    sh, sw = _pair("strides", strides, 2)
    dh, dw = _pair("dilations", dilations, 2)
    pt, pl, pb, pr = _pair("pads", pads, 4)
    if min(sh, sw, dh, dw) < 1 or min(pt, pl, pb, pr) < 0:
        raise MultiplierError(
            "conv2d_products: invalid strides, dilations or pads",
            expected="strides, dilations >= 1 and pads >= 0",
            found=f"strides {strides}, dilations {dilations}, pads {pads}",
        )
    g = ConvGeometry(
        x.shape[0],
        x.shape[1],
        x.shape[2],
        x.shape[3],
        w.shape[0],
        w.shape[2],
        w.shape[3],
        sh,
        sw,
        dh,
        dw,
        pt,
        pl,
        pb,
        pr,
    )
    if g.p < 1 or g.q < 1:
        raise MultiplierError(
            "conv2d_products: the filter does not fit in the padded input",
            expected="a positive output size",
            found=f"output {g.p}×{g.q} for {g}",
        )
    return g


def check_operands(x: np.ndarray, w: np.ndarray, signed: bool, pad_value: int, who: str) -> None:
    """Check dtypes (uint8 for unsigned multipliers, int8 for signed) and the pad value range."""
    want = np.dtype(np.int8 if signed else np.uint8)
    if x.dtype != want or w.dtype != want:
        raise MultiplierError(
            f"{who}: operand dtype does not match the multiplier's signedness",
            expected=f"x and w of dtype {want} ({'signed' if signed else 'unsigned'} multiplier)",
            found=f"x {x.dtype}, w {w.dtype}",
            fix="quantize to the multiplier's signedness, or pick a multiplier of the other signedness",
        )
    lo, hi = (-128, 127) if signed else (0, 255)
    if not lo <= int(pad_value) <= hi:
        raise MultiplierError(
            f"{who}: pad_value out of the operand range",
            expected=f"an integer in [{lo}, {hi}] (the activation zero point)",
            found=str(pad_value),
        )


def pad_input(x: np.ndarray, g: ConvGeometry, pad_value: int) -> np.ndarray:
    """Pad NCHW ``x`` with ``pad_value`` (a copy; no copy when there is no padding)."""
    if not any(g.pads):
        return np.ascontiguousarray(x)
    out = np.full((g.n, g.c, g.hp, g.wp), pad_value, dtype=x.dtype)
    out[:, :, g.pad_top : g.pad_top + g.h, g.pad_left : g.pad_left + g.w] = x
    return out


def tap_view(xp: np.ndarray, g: ConvGeometry, r: int, s: int) -> np.ndarray:
    """View ``xp[:, :, r·dh + p·sh, s·dw + q·sw]`` of the padded input for one filter tap (N, C, P, Q)."""
    r0, s0 = r * g.dilation_h, s * g.dilation_w
    return xp[
        :, :, r0 : r0 + (g.p - 1) * g.stride_h + 1 : g.stride_h, s0 : s0 + (g.q - 1) * g.stride_w + 1 : g.stride_w
    ]
