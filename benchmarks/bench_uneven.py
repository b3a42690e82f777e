"""What uneven mappings (a buffer boundary per tensor, ZigZag style) save on unseen layers; ONE JSON line.

The mapper places every PE buffer's tile boundary at the same point of the loop nest. An uneven
mapping lets each tensor's buffer cut the nest elsewhere (e.g. the accumulation buffer above a
reduction loop while the weight and input buffers stay below it). This script measures, on seeded
random conv/dense shapes outside the ResNet-18/50 catalogue:

* ``local``: from the mapper's (even) optimum, each tensor's PE boundary moves by up to three
  temporal loops, independently, within that buffer's capacity; a tensor's counts depend only on
  where its own buffers cut the nest, so each comes from the closed form of its shifted nest.
* ``bound``: every tensor takes its cheapest traffic over *all* candidates of the mapper's search
  family (spatial unrollings, factorisations, loop orders), each within its own capacities only,
  ignoring that an uneven mapping still shares one loop order. No uneven mapping of that family
  can beat it, so it bounds what implementing them would buy there.

* ``realised``: what the mapper's opt-in uneven refinement (``mapper: {uneven: true}``,
  :mod:`approxtvm.targets.vacc.uneven`) actually saves over its even optimum, per unseen layer and
  over the whole of ResNet-18 / ResNet-50 (energy objective).

Also reported: the cold :func:`map_layer` time per unique shape (the mapper's ≤ 50 ms goal), even
and with the uneven refinement (the same process, alternating).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import time
from typing import Any

import numpy as np

from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.targets.vacc import mapper as mp
from approxtvm.targets.vacc.closed_form import _nest_of, closed_form, input_tile_elements, views_of
from approxtvm.targets.vacc.counts import CountTable
from approxtvm.targets.vacc.hardware import AcceleratorSpec, MapperOptions
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import LevelNest, Mapping
from approxtvm.targets.vacc.pricing import energy_terms, total_energy
from approxtvm.targets.vacc.workload import DIMS, LayerShape

OWNER = {"weight": "weight", "input": "input", "output": "output", "psum": "output", "compute": "mac"}
PE_BUFFER = {"weight": "weight_buffer", "input": "input_buffer", "output": "accum_buffer"}
TENSORS = ("weight", "input", "output")


def unseen_shapes(n: int = 30, seed: int = 14) -> list[LayerShape]:
    """Seeded conv shapes (plus two dense layers) that are not ResNet-18/50 layers."""
    known = {s for net in ("resnet18", "resnet50") for _, s in resnet_layer_shapes(net)}
    rng = random.Random(seed)
    out: list[LayerShape] = []
    while len(out) < n:
        k = rng.choice([24, 40, 48, 72, 96, 120, 160, 240, 320, 480])
        c = rng.choice([16, 24, 32, 48, 72, 96, 144, 192, 288, 576])
        p = rng.choice([7, 10, 14, 20, 28, 40, 56])
        r = rng.choice([1, 3, 3, 5])
        st = rng.choice([1, 1, 2]) if p >= 14 else 1
        h = (p - 1) * st + r - 2 * (r // 2)
        sh = LayerShape.conv2d(1, k, c, h, h, r, r, strides=(st, st), pads=(r // 2,) * 4)
        if sh not in out and sh not in known:
            out.append(sh)
    return [*out, LayerShape.dense(1, 1000, 1280), LayerShape.dense(8, 4096, 1024)]


def _per_tensor_pj(table: CountTable, spec: AcceleratorSpec) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys((*TENSORS, "mac"), 0)
    for (_, t), v in energy_terms(table, spec, None).items():
        out[OWNER[t]] = out[OWNER[t]] + v
    return out


def _shifted(m: Mapping, j: int) -> Mapping | None:
    """Move ``j > 0`` innermost GlobalBuffer temporal loops into the PE tile, ``j < 0`` PE loops out."""
    gb, pe = m.level("GlobalBuffer"), m.level("PE")
    gt, pt = list(gb.temporal), list(pe.temporal)
    if j > len(gt) or -j > len(pt):
        return None
    if j > 0:
        gt, pt = gt[: len(gt) - j], gt[len(gt) - j :] + pt
    elif j < 0:
        gt, pt = gt + pt[:-j], pt[-j:]
    levels = list(m.levels)
    levels[1] = LevelNest("GlobalBuffer", (*gt, *gb.spatial))
    levels[2] = LevelNest("PE", (*pt, *pe.spatial))
    return Mapping(m.shape, tuple(levels))


def local_saving(m: Mapping, spec: AcceleratorSpec) -> float:
    """% energy saved by the best per-tensor PE-boundary shift (±3 loops) of mapping ``m``."""
    prec = spec.precision
    even = _per_tensor_pj(closed_form(_nest_of(m), m.shape, spec), spec)
    best = dict(even)
    for j in range(-3, 4):
        s = _shifted(m, j)
        if s is None:
            continue
        per = _per_tensor_pj(closed_form(_nest_of(s), s.shape, spec), spec)
        for t in TENSORS:
            bits = s.tile_size("PE", t) * (prec.psum_bits if t == "output" else prec.bits(t))
            if bits <= spec.memory(PE_BUFFER[t]).capacity_bits:
                best[t] = min(best[t], float(per[t]))
    return 100 * (1 - sum(best.values()) / sum(even.values()))


def _fits_per_tensor(shape: LayerShape, spec: AcceleratorSpec, sp: Any, f: Any) -> dict[str, np.ndarray]:
    """Each tensor's own capacities: its PE buffer and its share of the global buffer."""
    prec = spec.precision
    sp_pe, sp_below = dict.fromkeys(DIMS, 1), dict.fromkeys(DIMS, 1)
    for j, (d, n) in enumerate(sp):
        sp_below[d] *= n if j > 0 else 1
        sp_pe[d] *= n
    b = shape.bounds
    e_pe = {d: f(d, 0) * sp_below[d] if d not in ("R", "S") else b[d] * sp_below[d] for d in DIMS}
    e_gb = {d: e_pe[d] * f(d, 1) * (sp_pe[d] // sp_below[d]) if d not in ("R", "S") else e_pe[d] for d in DIMS}

    def cap(buf: str) -> int:
        return spec.memory(buf).capacity_bits

    w = e_pe["G"] * e_pe["K"] * e_pe["C"] * e_pe["R"] * e_pe["S"] * prec.weight_bits <= cap("weight_buffer")
    i = input_tile_elements(e_pe, shape) * prec.input_bits <= cap("input_buffer")
    i &= input_tile_elements(e_gb, shape) * prec.input_bits <= cap("global_buffer")
    out_bits = np.where(f("C", 1) * f("C", 2) > 1, prec.psum_bits, prec.output_bits)
    o = e_pe["N"] * e_pe["G"] * e_pe["K"] * e_pe["P"] * e_pe["Q"] * prec.psum_bits <= cap("accum_buffer")
    o &= e_gb["N"] * e_gb["G"] * e_gb["K"] * e_gb["P"] * e_gb["Q"] * out_bits <= cap("global_buffer")
    return {"weight": np.asarray(w), "input": np.asarray(i), "output": np.asarray(o)}


def bound_saving(shape: LayerShape, spec: AcceleratorSpec) -> float:
    """% energy an uneven mapping of the mapper's search family could save at most (see the docstring)."""
    hier = Hierarchy.of(spec)
    best_even = np.inf
    best = dict.fromkeys(TENSORS, np.inf)
    mac = 0.0
    for sp in mp._spatial_choices(shape, spec):
        rest = dict(shape.bounds)
        for d, n in sp:
            rest[d] //= n
        dims = [d for d in ("N", "G", "K", "C", "P", "Q") if rest[d] > 1]
        table = {d: mp._factor_table(rest[d], hier.pe + 1, d == "Q") for d in dims}
        idx = [g.ravel() for g in np.meshgrid(*[np.arange(len(table[d])) for d in dims], indexing="ij")]
        fac = {d: table[d][i] for d, i in zip(dims, idx, strict=True)}
        one = np.ones(idx[0].size if idx else 1, dtype=np.int64)

        def f(d: str, col: int, fac: dict[str, np.ndarray] = fac, one: np.ndarray = one) -> np.ndarray:
            return fac[d][:, col] if d in fac else one

        ok = mp._fits(shape, spec, sp, f)
        own = _fits_per_tensor(shape, spec, sp, f)
        sel = np.nonzero(own["weight"] | own["input"] | own["output"])[0]
        if sel.size == 0:
            continue
        ok, own = ok[sel], {t: v[sel] for t, v in own.items()}
        fac = {d: v[sel] for d, v in fac.items()}
        one = np.ones(sel.size, dtype=np.int64)

        def g(d: str, col: int, fac: dict[str, np.ndarray] = fac, one: np.ndarray = one) -> np.ndarray:
            return fac[d][:, col] if d in fac else one

        across = [(d, n, True) for d, n in sp[:1] if n > 1]
        in_pe = [(d, n, True) for d, n in sp[1:] if n > 1]
        for orders in itertools.product(mp._level_orders(), repeat=hier.pe):
            nest = [
                [(d, g(d, hier.pe - li), False) for d in order] + (across if li == hier.network_source else [])
                for li, order in enumerate(orders)
            ]
            nest.append(
                [(d, g(d, 0), False) for d in ("G", "K", "C")] + [(d, rest[d], False) for d in ("R", "S")] + in_pe
            )
            nest.append([(d, g(d, 0), False) for d in ("N", "P", "Q")])
            per = {
                t: np.broadcast_to(v, (sel.size,))
                for t, v in _per_tensor_pj(closed_form(nest, shape, spec), spec).items()
            }
            mac = float(per["mac"].max())
            if ok.any():
                best_even = min(best_even, float(np.where(ok, sum(per.values()), np.inf).min()))
            for t in TENSORS:
                if own[t].any():
                    best[t] = min(best[t], float(np.where(own[t], per[t], np.inf).min()))
    return 100 * (1 - (sum(best.values()) + mac) / best_even)


def _pj(m: Mapping, spec: AcceleratorSpec) -> float:
    return float(total_energy(closed_form(_nest_of(m), m.shape, spec, views_of(m)), spec))


def _cold(shape: LayerShape, spec: AcceleratorSpec) -> tuple[Mapping, float]:
    mp.clear_mapper_cache()
    t0 = time.perf_counter()
    m = mp.map_layer(shape, spec)
    return m, 1e3 * (time.perf_counter() - t0)


def main() -> None:
    spec = AcceleratorSpec.load("simba_like")
    uneven = dataclasses.replace(spec, mapper=MapperOptions(uneven=True))
    shapes = unseen_shapes()
    local, bound, realised, map_ms, map_ms_uneven = [], [], [], [], []
    for sh in shapes:
        m, ms = _cold(sh, spec)
        u, ms_u = _cold(sh, uneven)
        map_ms.append(ms)
        map_ms_uneven.append(ms_u)
        realised.append(100 * (1 - _pj(u, spec) / _pj(m, spec)))
        local.append(local_saving(m, spec))
        bound.append(bound_saving(sh, spec))
    nets = {}
    for net in ("resnet18", "resnet50"):
        layers = [s for _, s in resnet_layer_shapes(net)]
        even_pj = sum(_pj(mp.map_layer(s, spec), spec) for s in layers)
        uneven_pj = sum(_pj(mp.map_layer(s, uneven), spec) for s in layers)
        nets[net] = {
            "even_pj": even_pj,
            "uneven_pj": uneven_pj,
            "saving_pct": 100 * (1 - uneven_pj / even_pj),
            "uneven_layers": sum(bool(mp.map_layer(s, uneven).boundaries) for s in set(layers)),
            "unique_layers": len(set(layers)),
        }
    lo, bd, ms, rl, mu = (np.array(v) for v in (local, bound, map_ms, realised, map_ms_uneven))
    print(
        json.dumps(
            {
                "bench": "uneven",
                "spec": spec.name,
                "layers": len(shapes),
                "local_saving_pct": {"median": float(np.median(lo)), "max": float(lo.max())},
                "bound_saving_pct": {
                    "median": float(np.median(bd)),
                    "max": float(bd.max()),
                    "layers_over_5": int((bd > 5).sum()),
                    "layers_over_19": int((bd > 19).sum()),
                },
                "realised_saving_pct": {
                    "median": float(np.median(rl)),
                    "mean": float(rl.mean()),
                    "max": float(rl.max()),
                    "min": float(rl.min()),
                    "layers_improved": int((rl > 0).sum()),
                    "layers_over_5": int((rl > 5).sum()),
                },
                "realised_nets": nets,
                "map_layer_ms_cold": {"median": float(np.median(ms)), "max": float(ms.max())},
                "map_layer_ms_cold_uneven": {"median": float(np.median(mu)), "max": float(mu.max())},
                "map_time_ratio_uneven_vs_even": {"median": float(np.median(mu / ms)), "max": float((mu / ms).max())},
                "goals": {"issue_claim_saving_pct": [19, 30], "map_ms_per_shape": 50},
            },
            separators=(",", ":"),
        )
    )


if __name__ == "__main__":
    main()
