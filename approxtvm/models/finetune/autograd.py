"""The approximate layer as a torch autograd function: bit-exact forward, straight-through backward.

Forward: the layer's exact int32 accumulators (DESIGN §3) ``acc = Σ M(x_q, w_q) − z_w Σ x_q −
z_x Σ w_q + K z_x z_w`` from the project's kernels (:func:`approxtvm.runtime.kernels.conv2d_products`:
exact, low-rank or table path), on an input already padded with ``z_x`` so that padded taps go
through ``M``. Backward (straight-through estimator): the gradient of the exact product
``(x − z_x)(w − z_w)`` (``grad="ste"``), or of the table itself by central finite differences
``∂M/∂a ≈ (M(a+1, b) − M(a−1, b)) / 2`` (``grad="fd"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from approxtvm.errors import ModelError
from approxtvm.models.finetune._torch import require_torch
from approxtvm.runtime.kernels import KernelCache, conv2d_products, dense_products, tvm_available
from approxtvm.runtime.kernels.dispatch import LOWRANK_MAX_BYTE_TERMS
from approxtvm.runtime.kernels.geometry import conv_geometry
from approxtvm.runtime.kernels.intconv import IntegerFactors, exact_factors, factor_sums, weight_plan
from approxtvm.runtime.multipliers import Multiplier

torch = require_torch()
F = torch.nn.functional

#: Gradient modes of :class:`LayerKernel`.
GRAD_MODES = ("ste", "fd")

#: Batch rows per chunk of the finite-difference gradient (bounds its (N, K, CRS, L) gather).
FD_CHUNK_ELEMENTS = 2**24


@dataclass(eq=False)
class LayerKernel:
    """What one layer's autograd function needs besides tensors.

    Attributes
    ----------
    op
        ``conv2d`` or ``dense``.
    multiplier
        The layer's multiplier (activation = table row, weight = column).
    cache
        Kernel sessions and compiled kernels (one per fine-tuning run).
    strides, dilations
        ``(h, w)`` of a conv2d (the input arrives padded).
    grad
        ``ste`` or ``fd``.
    path
        Kernel path (:data:`approxtvm.runtime.kernels.PATHS`); empty: chosen per call. ``torch``
        (exact multiplier only) computes the exact product with torch's float64 convolution: the
        plain quantization-aware-training reference the benchmark compares the kernels with.
    """

    op: str
    multiplier: Multiplier
    cache: KernelCache
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)
    grad: str = "ste"
    path: str = ""
    _fd: tuple[Any, Any] | None = field(default=None, init=False, repr=False)
    _factors: IntegerFactors | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.path == "torch" and not self.multiplier.is_exact:
            raise ModelError(
                f"path 'torch' computes exact products, but the multiplier is {self.multiplier.name}",
                expected="the exact multiplier",
                found=self.multiplier.name,
                fix="leave the path empty (the project's kernels) for approximate multipliers",
            )
        if self.grad not in GRAD_MODES:
            raise ModelError(
                f"unknown gradient mode {self.grad!r}",
                expected=f"one of {', '.join(GRAD_MODES)}",
                found=repr(self.grad),
                fix="use ste (exact-product gradient) or fd (the table's finite differences)",
            )

    @property
    def signed(self) -> bool:
        """int8 operands."""
        return self.multiplier.signed

    def codes(self, t: Any) -> np.ndarray:
        """float tensor of integer codes → uint8/int8 numpy operands of the kernels."""
        return t.detach().numpy().astype(np.int8 if self.signed else np.uint8)

    def resolve_path(self) -> str:
        """Fix the kernel path once per layer (the weights change at every step, the table does not).

        The runtime restricts a low-rank factorisation to the weight codes a layer uses; during
        training that set changes at every step, so the factorisation is taken over the whole
        table once and the low-rank path is used when it is cheap for every weight.
        """
        if not self.path:
            m = self.multiplier
            f = exact_factors(m.signed) if m.is_exact else self.cache.factors(m, None)
            if f is not None and f.byte_terms() <= LOWRANK_MAX_BYTE_TERMS:
                self.path, self._factors = ("exact" if m.is_exact else "lowrank"), f
            else:
                self.path = "table" if tvm_available() else "table_numpy"
        elif self.path in ("exact", "lowrank") and self._factors is None:
            m = self.multiplier
            self._factors = exact_factors(m.signed) if m.is_exact else self.cache.factors(m, None)
        return self.path

    def products(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``Σ M(x, w)`` (int64) of a padded conv2d or a dense layer on the layer's kernel path."""
        path = self.resolve_path()
        if path in ("exact", "lowrank") and self._factors is not None:
            xb, wb = np.ascontiguousarray(x).view(np.uint8), np.ascontiguousarray(w).view(np.uint8)
            g = None if self.op == "dense" else conv_geometry(x, w, self.strides, self.dilations, (0, 0, 0, 0))
            plan = weight_plan(wb, self._factors)
            return factor_sums(xb, wb, self._factors, g, self.cache.sessions, None, plan).astype(np.int64)
        if self.op == "dense":
            return dense_products(x, w, self.multiplier, path=path, cache=self.cache).astype(np.int64)
        return conv2d_products(
            x, w, self.multiplier, strides=self.strides, dilations=self.dilations, path=path, cache=self.cache
        ).astype(np.int64)

    def accumulate(self, x: np.ndarray, w: np.ndarray, zx: int, zw: np.ndarray) -> np.ndarray:
        """Exact int32 accumulators for padded activation codes ``x`` and weight codes ``w``."""
        raw = self.products(x, w)
        w64 = w.astype(np.int64)
        if self.op == "dense":
            sum_x = x.astype(np.int64).sum(axis=1, keepdims=True)
            sum_w = w64.sum(axis=1)[None, :]
            zwb = zw[None, :]
            taps = w.shape[1]
        else:
            sum_x = _window_sums(x, w.shape[2], w.shape[3], self.strides, self.dilations, raw.shape[2:])
            sum_w = w64.reshape(w.shape[0], -1).sum(axis=1)[None, :, None, None]
            zwb = zw[None, :, None, None]
            taps = int(np.prod(w.shape[1:]))
        acc = raw - zwb * sum_x - zx * sum_w + taps * zx * zwb
        return acc.astype(np.int32)  # int32 accumulator (wraps like the hardware's)

    def fd_tables(self) -> tuple[Any, Any]:
        """``(∂M/∂a, ∂M/∂b)`` as float32 tensors indexed by operand *value offset* (code + 128 if signed)."""
        if self._fd is None:
            t = self.multiplier.table.astype(np.float64)
            if self.signed:  # byte order → value order: row i holds value i − 128
                order = np.r_[128:256, 0:128]
                t = t[np.ix_(order, order)]
            self._fd = (
                torch.from_numpy(np.gradient(t, axis=0).astype(np.float32)),
                torch.from_numpy(np.gradient(t, axis=1).astype(np.float32)),
            )
        return self._fd


def _window_sums(
    x: np.ndarray, r: int, s: int, strides: tuple[int, int], dil: tuple[int, int], out_hw: tuple[int, ...]
) -> np.ndarray:
    """Σ over (C, R, S) of the (already padded) input under each output position: (N, 1, P, Q)."""
    xs = x.astype(np.int64).sum(axis=1)
    p, q = out_hw
    out = np.zeros((x.shape[0], p, q), np.int64)
    for i in range(r):
        for j in range(s):
            h0, w0 = i * dil[0], j * dil[1]
            out += xs[
                :, h0 : h0 + strides[0] * (p - 1) + 1 : strides[0], w0 : w0 + strides[1] * (q - 1) + 1 : strides[1]
            ]
    return out[:, None]


class ApproxLayerFunction(torch.autograd.Function):
    """``acc(x_codes, w_codes)`` as float64 (exact integers); see the module docstring."""

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, zx: int, zw: Any, kernel: LayerKernel) -> Any:  # type: ignore[override]
        ctx.save_for_backward(x, w, zw)
        ctx.zx = int(zx)
        ctx.kernel = kernel
        if kernel.path == "torch":  # float64 holds every partial sum of 8-bit products exactly
            xd, wd = (x - zx).to(torch.float64), (w - zw.reshape((-1,) + (1,) * (w.ndim - 1))).to(torch.float64)
            if kernel.op == "dense":
                return xd @ wd.t()
            return F.conv2d(xd, wd, stride=kernel.strides, dilation=kernel.dilations)
        acc = kernel.accumulate(kernel.codes(x), kernel.codes(w), int(zx), zw.detach().numpy().astype(np.int64))
        return torch.from_numpy(acc.astype(np.float64))

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:  # type: ignore[override]
        x, w, zw = ctx.saved_tensors
        k: LayerKernel = ctx.kernel
        g = grad.to(torch.float32)
        if k.grad == "fd":
            gx, gw = _fd_grads(k, x, w, ctx.zx, zw, g)
        elif k.op == "dense":
            gx = g @ (w - zw[:, None])
            gw = g.t() @ (x - ctx.zx)
        else:
            wc = w - zw.reshape(-1, 1, 1, 1)
            gx = torch.nn.grad.conv2d_input(x.shape, wc, g, stride=k.strides, dilation=k.dilations)
            gw = torch.nn.grad.conv2d_weight(x - ctx.zx, w.shape, g, stride=k.strides, dilation=k.dilations)
        return gx, gw, None, None, None


def _fd_grads(k: LayerKernel, x: Any, w: Any, zx: int, zw: Any, g: Any) -> tuple[Any, Any]:
    """Gradients through the table's finite differences (``∂acc/∂x = Σ (∂M/∂a − z_w) g``)."""
    da, db = k.fd_tables()
    off = 128 if k.signed else 0
    if k.op == "dense":
        xi = (x.long() + off)[:, None, :]  # (N, 1, C)
        wi = (w.long() + off)[None, :, :]  # (1, K, C)
        gx = torch.einsum("nk,nkc->nc", g, da[xi, wi] - zw[None, :, None])
        gw = torch.einsum("nk,nkc->kc", g, db[xi, wi] - zx)
        return gx, gw
    kk, _, r, s = w.shape
    cols = F.unfold(x, (r, s), dilation=k.dilations, stride=k.strides)  # (N, CRS, L)
    gl = g.reshape(g.shape[0], kk, -1)  # (N, K, L)
    wf = (w.reshape(kk, -1).long() + off)[None, :, :, None]  # (1, K, CRS, 1)
    per_row = kk * cols.shape[1] * cols.shape[2]
    step = max(1, FD_CHUNK_ELEMENTS // max(1, per_row))
    gcols = torch.empty_like(cols)
    gw = torch.zeros(kk, cols.shape[1], dtype=torch.float32)
    for n0 in range(0, x.shape[0], step):
        xi = (cols[n0 : n0 + step].long() + off)[:, None, :, :]  # (n, 1, CRS, L)
        gn = gl[n0 : n0 + step]
        gcols[n0 : n0 + step] = torch.einsum("nkl,nkcl->ncl", gn, da[xi, wf] - zw[None, :, None, None])
        gw += torch.einsum("nkl,nkcl->kc", gn, db[xi, wf] - zx)
    gx = F.fold(gcols, x.shape[2:], (r, s), dilation=k.dilations, stride=k.strides)
    return gx, gw.reshape(w.shape)


def approx_layer(x: Any, w: Any, zx: int, zw: Any, kernel: LayerKernel) -> Any:
    """Apply :class:`ApproxLayerFunction` (``x`` padded NCHW or (N, C) codes; ``w`` OIHW or (K, C))."""
    return ApproxLayerFunction.apply(x, w, zx, zw, kernel)
