"""Package link faults: each receiving chiplet's copy of its operands, corrupted on the way.

**Model.** A layer split across chiplets (:class:`~approxtvm.targets.vacc.package.PackageMapping`)
gives every busy chiplet ``c`` a part: ranges of the batch, groups, output channels, input
channels, output rows and columns. The operands that part reads — its weight slice and its input
slice (P/Q splits: its rows with the halo, the padding included as the package counts send it;
unsplit rows: the real rows only, the chiplet pads locally) — cross the package from the memory
node's router to ``c`` on the XY route, ``hops`` links (a chiplet at the memory node: none). Each
receiving chiplet's copy is corrupted independently (multicast delivers one copy per receiver),
per bit and per link traversal with the package links' ``BER = Q(V_sw / 2σ)``
(:func:`~approxtvm.runtime.faults.physics.nop_ber`); a bit hit on an even number of hops arrives
intact, so a free bit arrives flipped with probability ``(1 − (1 − 2·BER)^hops) / 2``. The
``nop_protected_msbs`` top bits of every 8-bit word travel at full swing and never flip. The
corrupted copy is what chiplet ``c`` multiplies for its whole part.

**Granularity.** One copy per receiving chiplet per layer call: a chiplet that re-fetches a tile
from memory during the layer (its own DRAM re-reads) reuses the same corrupted copy instead of
an independently corrupted one; outputs and partial sums (C-split reductions) are not corrupted.
The package delta is computed from the fault-free operands and added to the on-chip faults'
delta: the product of an on-chip corrupted byte and a package corrupted byte in the same MAC
(second order in the two rates) is not modelled. Activation × activation matmuls get no package
faults.

**Arithmetic.** As on-chip (:mod:`.delta_numpy`): ``Δ = Σ_MAC [M(x', w') − M(x, w)]`` over the MACs
of each chiplet's part that read a corrupted byte, split exactly as
``[M(x', w') − M(x', w)]`` (corrupted weights) ``+ [M(x', w) − M(x, w)]`` (corrupted inputs),
added to the int32 accumulators with wrap-around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.faults.physics import WORD_BITS
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.package import PackageMapping, Partition
from approxtvm.targets.vacc.workload import LayerShape

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = [
    "ChipletPart",
    "CopyFaults",
    "arrival_flip_probability",
    "chiplet_parts",
    "package_delta",
    "package_rng",
    "received_words",
    "sample_package_faults",
]

_PACKAGE_STREAM = 0x5041434B  # "PACK": keeps the package draws apart from the on-chip generator
_CHUNK = 1 << 20  # gathered products per vectorised chunk


@dataclass(frozen=True, slots=True)
class ChipletPart:
    """The part of a layer one busy chiplet computes, and what it receives over the package.

    Attributes
    ----------
    chiplet
        Busy-chiplet index (mixed radix over the partition, placed row-major on the mesh).
    hops
        Package links from the memory node's router to the chiplet (XY route).
    ranges
        ``dim → (start, stop)`` for ``N``, ``G``, ``K``, ``C`` (per group), ``P``, ``Q``.
    rows, cols
        Padded input rows / columns the chiplet receives (ascending).
    """

    chiplet: int
    hops: int
    ranges: dict[str, tuple[int, int]]
    rows: np.ndarray
    cols: np.ndarray

    def channels(self, shape: LayerShape) -> np.ndarray:
        """Absolute input channels of the part (its groups × its per-group channel range)."""
        cg = shape.c_per_group
        g0, g1 = self.ranges["G"]
        c0, c1 = self.ranges["C"]
        return (np.arange(g0, g1)[:, None] * cg + np.arange(c0, c1)[None, :]).ravel()

    def out_channels(self, shape: LayerShape) -> np.ndarray:
        """Absolute output channels of the part."""
        kg = shape.k_per_group
        g0, g1 = self.ranges["G"]
        k0, k1 = self.ranges["K"]
        return (np.arange(g0, g1)[:, None] * kg + np.arange(k0, k1)[None, :]).ravel()


@dataclass(frozen=True, eq=False)
class CopyFaults:
    """Corrupted words of one chiplet's copy of one tensor.

    Attributes
    ----------
    chiplet
        Busy-chiplet index.
    tensor
        ``weight`` (index into the flat ``(K, C/G, R, S)`` weights) or ``input`` (index into the
        flat padded ``(N, C, Hp, Wp)`` input).
    index
        Flat indices of the corrupted words (distinct, ascending).
    mask
        uint8 XOR masks (never 0).
    bits_exposed
        Free bits × hops of the copy (the exposed slots).
    """

    chiplet: int
    tensor: str
    index: np.ndarray
    mask: np.ndarray
    bits_exposed: int

    @property
    def bits_flipped(self) -> int:
        """Bits that arrive flipped."""
        return int(np.unpackbits(self.mask).sum()) if len(self.mask) else 0


def _padded(shape: LayerShape) -> tuple[int, int]:
    if shape.op == "dense":
        return 1, 1
    return shape.h + shape.pad_top + shape.pad_bottom, shape.w + shape.pad_left + shape.pad_right


def chiplet_parts(shape: LayerShape, pm: PackageMapping, spec: AcceleratorSpec) -> tuple[ChipletPart, ...]:
    """Every busy chiplet's part of ``shape`` under ``pm`` (its ranges, received rows/cols, hops)."""
    pkg = spec.package
    if pkg is None:
        raise ValueError("chiplet_parts needs a package spec")
    part: Partition = pm.partition
    b = shape.bounds
    hp, wp = _padded(shape)
    out = []
    for i in range(part.chiplets):
        co = part.coords(i)
        rng = {}
        for d in ("N", "G", "K", "C", "P", "Q"):
            n = part.ways(d)
            step = b[d] // n
            j = co.get(d, 0)
            rng[d] = (j * step, (j + 1) * step)
        if part.ways("P") > 1:
            p0, p1 = rng["P"]
            rows = np.arange(p0 * shape.stride_h, (p1 - 1) * shape.stride_h + (shape.r - 1) * shape.dilation_h + 1)
        else:
            rows = np.arange(shape.pad_top, hp - shape.pad_bottom) if shape.op != "dense" else np.arange(1)
        if part.ways("Q") > 1:
            q0, q1 = rng["Q"]
            cols = np.arange(q0 * shape.stride_w, (q1 - 1) * shape.stride_w + (shape.s - 1) * shape.dilation_w + 1)
        else:
            cols = np.arange(shape.pad_left, wp - shape.pad_right) if shape.op != "dense" else np.arange(1)
        (x, y), (mx, my) = pkg.chiplet_xy(i), pkg.memory_node
        out.append(ChipletPart(i, abs(x - mx) + abs(y - my), rng, rows, cols))
    return tuple(out)


def arrival_flip_probability(ber: float, hops: int) -> float:
    """Probability that a free bit arrives flipped after ``hops`` independent traversals."""
    return 0.5 * (1.0 - (1.0 - 2.0 * ber) ** hops) if hops else 0.0


def package_rng(seed: int, layer_index: int, call: int) -> np.random.Generator:
    """The generator of one layer call's package faults (a pure function of its key)."""
    return np.random.default_rng([seed, _PACKAGE_STREAM, layer_index, call])


def received_words(shape: LayerShape, part: ChipletPart, tensor: str) -> np.ndarray:
    """Flat indices (weights, or the padded input) of the words ``part`` receives, C order."""
    if tensor == "weight":
        cg, rs = shape.c_per_group, shape.r * shape.s
        c0, c1 = part.ranges["C"]
        k = part.out_channels(shape)
        c = np.arange(c0, c1)
        base = (k[:, None] * cg + c[None, :]) * rs
        return (base[:, :, None] + np.arange(rs)[None, None, :]).ravel()
    hp, wp = _padded(shape)
    n0, n1 = part.ranges["N"]
    c = part.channels(shape)
    nc = np.arange(n0, n1)[:, None] * shape.c + c[None, :]
    hw = part.rows[:, None] * wp + part.cols[None, :]
    return (nc.ravel()[:, None] * (hp * wp) + hw.ravel()[None, :]).ravel()


def sample_package_faults(
    shape: LayerShape,
    parts: tuple[ChipletPart, ...],
    ber: float,
    protected_msbs: int,
    rng: np.random.Generator,
) -> list[CopyFaults]:
    """Corrupted words of every chiplet's weight and input copy (exact per bit).

    The number of arriving flips of a copy is ``Binomial(words · free bits, p_arrive)``, the flipped
    bits uniform without replacement among the copy's free bits. Draw order: chiplet, then weight
    and input.
    """
    free = WORD_BITS - protected_msbs
    out: list[CopyFaults] = []
    for part in parts:
        p = arrival_flip_probability(ber, part.hops)
        for tensor in ("weight", "input"):
            idx = received_words(shape, part, tensor)
            slots = len(idx) * free
            flips = int(rng.binomial(slots, p)) if slots and p > 0 else 0
            if flips == 0:
                continue
            pos = np.sort(rng.choice(slots, size=flips, replace=False))
            word, bit = np.divmod(pos, free)
            uniq, inv = np.unique(word, return_inverse=True)
            mask = np.zeros(len(uniq), np.uint8)
            np.bitwise_or.at(mask, inv, (1 << bit).astype(np.uint8))
            out.append(CopyFaults(part.chiplet, tensor, idx[uniq], mask, len(idx) * free * part.hops))
    return out


def _chunks(n: int, per: int) -> range:
    return range(0, n, max(1, _CHUNK // max(1, per)))


def package_delta(
    x: np.ndarray,
    prog: LayerProgram,
    acc: np.ndarray,
    parts: tuple[ChipletPart, ...],
    faults: list[CopyFaults],
) -> np.ndarray:
    """The layer's int32 accumulators with every chiplet's corrupted copies (``acc``: fault-free)."""
    if not faults:
        return acc
    s = prog.schedule.shape
    hp, wp = _padded(s)
    table = np.asarray(prog.multiplier.table, dtype=np.int64).ravel()
    wflat = np.asarray(prog.weight).view(np.uint8).ravel().astype(np.int64)
    xb = np.ascontiguousarray(x).view(np.uint8).reshape(s.n, s.c, s.h if s.op != "dense" else 1, -1)
    zx = np.array(prog.schedule.quant.input_zero_point).astype(x.dtype).view(np.uint8)
    xp = np.full((s.n, s.c, hp, wp), zx, np.uint8)
    if s.op == "dense":
        xp[:, :, 0, 0] = xb[:, :, 0, 0]
    else:
        xp[:, :, s.pad_top : s.pad_top + s.h, s.pad_left : s.pad_left + s.w] = xb
    xp_flat = xp.ravel().astype(np.int64)
    cg, kg, rr, ss = s.c_per_group, s.k_per_group, s.r, s.s
    delta = np.zeros(s.n * s.k * s.p * s.q, np.int64)
    by_chiplet: dict[int, dict[str, CopyFaults]] = {}
    for f in faults:
        by_chiplet.setdefault(f.chiplet, {})[f.tensor] = f
    for chiplet, fs in by_chiplet.items():
        part = parts[chiplet]
        (n0, n1), (p0, p1), (q0, q1) = part.ranges["N"], part.ranges["P"], part.ranges["Q"]
        xc = xp_flat
        if "input" in fs:
            xc = xp_flat.copy()
            xc[fs["input"].index] ^= fs["input"].mask
        if "weight" in fs:  # [M(x', w') − M(x', w)] over the part's outputs
            wf = fs["weight"]
            k, rest = np.divmod(wf.index, cg * rr * ss)
            c_l, rest = np.divmod(rest, rr * ss)
            r, t = np.divmod(rest, ss)
            c = (k // kg) * cg + c_l
            w = wflat[wf.index]
            w2 = w ^ wf.mask.astype(np.int64)
            grid = np.meshgrid(np.arange(n0, n1), np.arange(p0, p1), np.arange(q0, q1), indexing="ij")
            n, p, q = (a.ravel() for a in grid)
            for a in _chunks(len(k), len(n)):
                sl = slice(a, a + max(1, _CHUNK // max(1, len(n))))
                hh = p[None, :] * s.stride_h + r[sl, None] * s.dilation_h
                ww = q[None, :] * s.stride_w + t[sl, None] * s.dilation_w
                xv = xc[((n[None, :] * s.c + c[sl, None]) * hp + hh) * wp + ww]
                d = table[xv * 256 + w2[sl, None]] - table[xv * 256 + w[sl, None]]
                o = ((n[None, :] * s.k + k[sl, None]) * s.p + p[None, :]) * s.q + q[None, :]
                np.add.at(delta, o.ravel(), d.ravel())
        if "input" in fs:  # [M(x', w) − M(x, w)] over the outputs each corrupted input feeds
            xf = fs["input"]
            nc, hw = np.divmod(xf.index, hp * wp)
            n, c = np.divmod(nc, s.c)
            hh, ww = np.divmod(hw, wp)
            xv, xv2 = xp_flat[xf.index], xp_flat[xf.index] ^ xf.mask.astype(np.int64)
            g, c_l = np.divmod(c, cg)
            k0, k1 = part.ranges["K"]
            kl = np.arange(k0, k1)
            for r in range(rr):
                ph, mh = np.divmod(hh - r * s.dilation_h, s.stride_h)
                for t in range(ss):
                    qw, mw = np.divmod(ww - t * s.dilation_w, s.stride_w)
                    ok = (mh == 0) & (mw == 0) & (ph >= p0) & (ph < p1) & (qw >= q0) & (qw < q1)
                    ok &= hh - r * s.dilation_h >= 0
                    ok &= ww - t * s.dilation_w >= 0
                    if not ok.any():
                        continue
                    sel = np.flatnonzero(ok)
                    for a in _chunks(len(sel), len(kl)):
                        e = sel[a : a + max(1, _CHUNK // max(1, len(kl)))]
                        k = g[e, None] * kg + kl[None, :]
                        w = wflat[((k * cg + c_l[e, None]) * rr + r) * ss + t]
                        d = table[xv2[e, None] * 256 + w] - table[xv[e, None] * 256 + w]
                        o = ((n[e, None] * s.k + k) * s.p + ph[e, None]) * s.q + qw[e, None]
                        np.add.at(delta, o.ravel(), d.ravel())
    out = np.asarray(acc).reshape(-1).astype(np.int64) + delta
    return out.astype(np.int32).reshape(np.shape(acc))
