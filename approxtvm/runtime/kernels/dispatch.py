"""Public kernel API: products of a conv/dense layer through a multiplier, on the fastest exact path.

Paths (all bit-exact against :mod:`approxtvm.runtime.kernels.reference`):

``exact``
    ``M = a·b``: onnxruntime ``ConvInteger``/``MatMulInteger`` on uint8×uint8 (signed operands are
    shifted by 128 and corrected exactly).
``lowrank``
    ``M`` has an exact integer factorisation of small rank (over all activations and the weights
    that occur): integer products of byte maps on onnxruntime (:mod:`.lowrank`, :mod:`.intconv`);
    ungrouped convs as one u8×s8 GEMM per call group (:mod:`.lowrank_gemm`).
``table``
    Any table on TVM: the register-LUT kernel of :mod:`.table_perm` (AVX-512 BW, 16-bit tables;
    no per-weight tables) or weight-stationary per-weight tables (:mod:`.table_tvm`, when they
    fit the cache; it picks a direct LUT gather by a cost model), the faster of the two measured
    once per layer shape when both apply (:mod:`.table_choice`).
``table_perm``
    Any 16-bit table, forcing the register-LUT kernel (AVX-512 BW hosts only).
``table_gather``
    Any table, forcing TVM's direct gather kernel.
``table_numpy``
    Any table, pure numpy (used when TVM is missing).
``reference``
    The specification itself (slow).

:func:`choose_path` picks one per layer; every entry point takes ``path=`` to override it.
All state (onnxruntime sessions, compiled kernels, factorisations, weight tables) lives in an
explicit :class:`KernelCache` passed by the caller; without one, a fresh cache is used for the call
(correct, but compiles/creates sessions every time).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.byte_lru import ByteLru
from approxtvm.runtime.kernels import reference
from approxtvm.runtime.kernels.cpu import CpuInfo, detect_cpu
from approxtvm.runtime.kernels.geometry import ConvGeometry, check_operands, conv_geometry, pad_input
from approxtvm.runtime.kernels.intconv import (
    IntegerFactors,
    OrtSessionCache,
    WeightPlan,
    exact_factors,
    factor_sums,
    weight_plan,
)
from approxtvm.runtime.kernels.lowrank import DEFAULT_MAX_RANK, find_factors
from approxtvm.runtime.kernels.lowrank_gemm import GemmPlan, gemm_plan, gemm_sums, s8_gemm_exact
from approxtvm.runtime.kernels.table_numpy import conv2d_table_numpy, dense_table_numpy
from approxtvm.runtime.multipliers.multiplier import Multiplier

if TYPE_CHECKING:
    from approxtvm.runtime.kernels.table_tvm import TvmKernelCache

#: Valid values of ``path=``.
PATHS: tuple[str, ...] = ("exact", "lowrank", "table", "table_perm", "table_gather", "table_numpy", "reference")

#: The low-rank path is chosen while it needs at most this many uint8 product terms (one term
#: costs about one exact integer conv; the table path costs about ten).
LOWRANK_MAX_BYTE_TERMS: int = 6

#: Batch rows per image row when a dense layer runs on the TVM conv kernels.
DENSE_ROW_TILE: int = 4

#: Weight tables of a layer are kept in the cache only if they take at most this many bytes.
LAYER_TABLE_CACHE_MAX_BYTES: int = 64 * 2**20


def tvm_available() -> bool:
    """``True`` when TVM (and LLVM codegen) can be imported."""
    try:
        import tvm  # noqa: F401
    except Exception:
        return False
    return True


@dataclass
class KernelCache:
    """Everything the kernels reuse between calls, owned by the caller (one per model/runtime).

    Attributes
    ----------
    sessions
        onnxruntime sessions per shape.
    table_cache_max_bytes
        Total bytes of prebuilt weight tables kept (least recently used evicted first).
    max_rank
        Largest error rank the low-rank path accepts.
    host_cpu
        The CPU to compile TVM kernels for; ``None`` detects the host (the normal case). Set it to
        test another instruction-set tiling on a compatible host.
    """

    sessions: OrtSessionCache = field(default_factory=OrtSessionCache)
    table_cache_max_bytes: int = 512 * 2**20
    max_rank: int = DEFAULT_MAX_RANK
    host_cpu: CpuInfo | None = None
    _tvm: TvmKernelCache | None = field(default=None, init=False, repr=False)
    _cpu: CpuInfo | None = field(default=None, init=False, repr=False)
    _factors: dict[tuple[str, bytes], IntegerFactors | None] = field(default_factory=dict, init=False, repr=False)
    _tables: ByteLru = field(init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._tables = ByteLru(self.table_cache_max_bytes)

    def __getstate__(self) -> dict[str, object]:
        """Pickle the settings only (sessions and compiled kernels are per process)."""
        return {
            "table_cache_max_bytes": self.table_cache_max_bytes,
            "max_rank": self.max_rank,
            "host_cpu": self.host_cpu,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        fresh = KernelCache(**state)  # type: ignore[arg-type]
        self.__dict__.update(fresh.__dict__)

    @property
    def cpu(self) -> CpuInfo:
        """The detected host CPU."""
        with self._lock:
            if self._cpu is None:
                self._cpu = self.host_cpu or detect_cpu()
            return self._cpu

    def tvm_kernels(self) -> TvmKernelCache:
        """Compiled TVM table kernels for this host."""
        with self._lock:
            if self._tvm is None:
                from approxtvm.runtime.kernels.table_tvm import TvmKernelCache

                self._tvm = TvmKernelCache(cpu=self.cpu)
            return self._tvm

    def factors(self, mult: Multiplier, weight_bytes_mask: np.ndarray | None) -> IntegerFactors | None:
        """Cached exact factorisation of ``mult`` restricted to the weights in the mask."""
        mkey = b"" if weight_bytes_mask is None else np.packbits(weight_bytes_mask).tobytes()
        key = (mult.table_hash, mkey)
        with self._lock:
            if key in self._factors:
                return self._factors[key]
        if mult.is_exact:
            f: IntegerFactors | None = exact_factors(mult.signed)
        else:
            cols = None if weight_bytes_mask is None else np.flatnonzero(weight_bytes_mask)
            f = find_factors(mult.table, mult.signed, cols, self.max_rank)
        with self._lock:
            self._factors[key] = f
        return f

    def layer_tables(self, key: tuple, nbytes: int) -> dict | None:
        """Dict to keep a layer's weight-derived data in (TVM weight tables, low-rank weight plans),
        LRU-evicted by size; ``None`` if the entry (``nbytes``) is too big to cache."""
        if nbytes > min(LAYER_TABLE_CACHE_MAX_BYTES, self.table_cache_max_bytes):
            return None
        with self._lock:
            hit = self._tables.get(key)
            if hit is not None:
                return hit
            d: dict = {}
            self._tables.max_bytes = self.table_cache_max_bytes
            self._tables.put(key, d, nbytes)
            return d


@dataclass(frozen=True)
class PathChoice:
    """Which kernel runs a layer, and why.

    Attributes
    ----------
    path
        One of :data:`PATHS`.
    byte_terms
        uint8 product terms of the low-rank path (``None`` if no factorisation of rank ≤ max).
    reason
        One sentence.
    """

    path: str
    byte_terms: int | None
    reason: str


def choose_path(
    mult: Multiplier, shape: object = None, *, weights: np.ndarray | None = None, cache: KernelCache | None = None
) -> PathChoice:
    """Pick the fastest exact kernel for ``mult`` (and, if given, the layer's weights).

    Parameters
    ----------
    mult
        The multiplier.
    shape
        The layer's shape (any object; reserved for shape-dependent choices, currently unused).
    weights
        The layer's weight codes; restricting the factorisation to the weights that occur can
        lower the rank.
    cache
        Where factorisations are memoised.
    """
    del shape
    cache = cache or KernelCache()
    if mult.is_exact:
        return PathChoice("exact", 1, "the table equals a·b")
    mask = None
    if weights is not None:
        mask = np.bincount(np.asarray(weights).view(np.uint8).ravel(), minlength=256) > 0
    f = cache.factors(mult, mask)
    if f is not None and f.byte_terms() <= LOWRANK_MAX_BYTE_TERMS:
        return PathChoice(
            "lowrank", f.byte_terms(), f"exact integer factorisation with {f.rank} terms ({f.byte_terms()} uint8 convs)"
        )
    bt = None if f is None else f.byte_terms()
    if tvm_available():
        return PathChoice("table", bt, "no cheap exact factorisation: TVM weight-stationary tables")
    return PathChoice("table_numpy", bt, "no cheap exact factorisation and no TVM: numpy tables")


def _check_path(path: str) -> None:
    if path not in PATHS:
        raise MultiplierError(
            f"unknown kernel path {path!r}",
            expected=f"one of {', '.join(PATHS)}",
            found=repr(path),
        )


def _factors_for(mult: Multiplier, wb: np.ndarray, cache: KernelCache, path: str) -> IntegerFactors:
    if path == "exact":
        if not mult.is_exact:
            raise MultiplierError(
                f"path='exact' requested for the approximate multiplier {mult.name!r}",
                expected="a multiplier whose table equals a·b",
                found=f"MAE {mult.metrics.mae:g}",
                fix="use path=None (automatic), 'lowrank' or 'table'",
            )
        return exact_factors(mult.signed)
    mask = np.bincount(wb.ravel(), minlength=256) > 0
    f = cache.factors(mult, mask)
    if f is None:
        raise MultiplierError(
            f"path='lowrank' requested but {mult.name!r} has no exact factorisation of rank ≤ {cache.max_rank}",
            expected=f"error rank ≤ {cache.max_rank} over the weights used",
            found="higher rank",
            fix="use path=None (automatic) or 'table'",
        )
    return f


@dataclass
class LayerStore:
    """Weight-derived data of one layer, owned by the caller that owns the weights.

    A caller whose weights never change (a compiled layer) passes one per layer: the weights'
    digest, the multiplier's factorisation over them and the weight-side plan are then computed
    once, whatever their size, instead of on every call (or on every call of a layer too big for
    the shared :class:`KernelCache` LRU).

    Attributes
    ----------
    weight_key
        Digest of the weight bytes (the key of the cache's table store).
    entries
        ``(kind, path) → object`` (factorisation, weight plan).
    """

    weight_key: str = ""
    entries: dict[tuple[str, str], object] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, object]:
        """Pickle the numpy-only entries (factorisations, weight plans); prepared TVM kernels are
        per process and are rebuilt on first use."""
        keep = {k: v for k, v in self.entries.items() if k[0] in ("factors", "plan")}
        return {"weight_key": self.weight_key, "entries": keep}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.weight_key = state["weight_key"]  # type: ignore[assignment]
        self.entries = dict(state["entries"])  # type: ignore[call-overload]

    @staticmethod
    def for_weights(w: np.ndarray) -> LayerStore:
        """A store for fixed weights ``w`` (hashes them once)."""
        return LayerStore(hashlib.sha1(np.ascontiguousarray(w).view(np.uint8).tobytes()).hexdigest())


def _weight_key(wb: np.ndarray, store: LayerStore | None) -> str:
    return store.weight_key if store is not None and store.weight_key else hashlib.sha1(wb.tobytes()).hexdigest()


def _plan(
    cache: KernelCache, mult: Multiplier, wb: np.ndarray, f: IntegerFactors, store: LayerStore | None = None
) -> WeightPlan:
    """The layer's weight-side plan: in the layer's own store when given, else in the cache's layer
    store (rebuilt per call if it does not fit there)."""
    if store is not None:
        key = ("plan", mult.table_hash)
        plan = store.entries.get(key)
        if plan is None:
            plan = store.entries[key] = weight_plan(wb, f)
        return plan  # type: ignore[return-value]
    est = f.byte_terms() * wb.nbytes + 16 * wb.shape[0]
    ckey = ("plan", mult.table_hash, _weight_key(wb, None), wb.shape)
    tables = cache.layer_tables(ckey, est)
    if tables is None:
        return weight_plan(wb, f)
    plan = tables.get("plan")
    if plan is None:
        plan = tables["plan"] = weight_plan(wb, f)
    return plan


def _gemm_plan(
    cache: KernelCache,
    mult: Multiplier,
    wb: np.ndarray,
    f: IntegerFactors,
    plan: WeightPlan,
    store: LayerStore | None,
) -> GemmPlan | None:
    """The layer's GEMM plan (:mod:`.lowrank_gemm`), kept like its weight plan; ``None`` when the
    layer must stay on ``ConvInteger`` (an int32 partial sum could overflow)."""
    signed_exact = s8_gemm_exact(cache.sessions, cache.cpu.vnni)
    key = ("plan", f"gemm:{mult.table_hash}:{signed_exact}")
    if store is not None:
        if key not in store.entries:
            store.entries[key] = gemm_plan(wb, plan, f.divisor, signed_exact)
        return store.entries[key]  # type: ignore[return-value]
    est = f.byte_terms() * wb.nbytes + 16 * wb.shape[0]
    tables = cache.layer_tables((*key, _weight_key(wb, None), wb.shape), est)
    if tables is None:
        return gemm_plan(wb, plan, f.divisor, signed_exact)
    if "gemm" not in tables:
        tables["gemm"] = gemm_plan(wb, plan, f.divisor, signed_exact)
    return tables["gemm"]


def lowrank_gemm_plan(
    mult: Multiplier, w: np.ndarray, cache: KernelCache, store: LayerStore | None = None
) -> tuple[GemmPlan | None, int]:
    """The GEMM plan of a conv layer on the low-rank path and its factorisation's divisor (the plan
    is ``None`` when the layer stays on ``ConvInteger``); kept in ``store`` like the kernels keep it."""
    wb = np.ascontiguousarray(w).view(np.uint8)
    f = _factors_stored(mult, wb, cache, "lowrank", store)
    plan = _plan(cache, mult, wb, f, store)
    return _gemm_plan(cache, mult, wb, f, plan, store), int(f.divisor)


def _factors_stored(
    mult: Multiplier, wb: np.ndarray, cache: KernelCache, path: str, store: LayerStore | None
) -> IntegerFactors:
    if store is None:
        return _factors_for(mult, wb, cache, path)
    key = ("factors", f"{path}:{mult.table_hash}")
    f = store.entries.get(key)
    if f is None:
        f = store.entries[key] = _factors_for(mult, wb, cache, path)
    return f  # type: ignore[return-value]


def conv2d_products(
    x: np.ndarray,
    w: np.ndarray,
    mult: Multiplier,
    *,
    strides: tuple[int, int] = (1, 1),
    dilations: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    pad_value: int = 0,
    threads: int | None = None,
    path: str | None = None,
    cache: KernelCache | None = None,
    store: LayerStore | None = None,
) -> np.ndarray:
    """``y[n,k,p,q] = Σ_{c,r,s} M(x_pad[n, c, p·sh + r·dh, q·sw + s·dw], w[k, c, r, s])`` (int32).

    Parameters
    ----------
    x
        Activation codes, NCHW, uint8 (unsigned multiplier) or int8 (signed).
    w
        Weight codes, OIHW, same dtype as ``x``.
    mult
        The multiplier; activation = table row, weight = column.
    strides, dilations
        ``(h, w)``.
    pads
        ``(top, left, bottom, right)``. Padded taps hold ``pad_value`` and go through ``M``.
    pad_value
        Activation code used for padding (the activation zero point).
    threads
        Worker threads (``None``: onnxruntime on all cores; TVM kernels by size, :mod:`.threads`).
    path
        Force a kernel (:data:`PATHS`); ``None`` = :func:`choose_path`.
    cache
        Sessions, compiled kernels and weight tables to reuse (pass one per model).
    store
        Weight-derived data of this layer (:class:`LayerStore`), when ``w`` never changes.

    Returns
    -------
    numpy.ndarray
        int32 (N, K, P, Q); sums wrap modulo 2^32 like an int32 accumulator.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    g = conv_geometry(x, w, strides, dilations, pads)
    check_operands(x, w, mult.signed, pad_value, "conv2d_products")
    cache = cache or KernelCache()
    auto = path is None
    if path is None:
        path = choose_path(mult, g, weights=w, cache=cache).path
    _check_path(path)
    if path == "reference":
        return reference.conv2d_products_reference(
            x, w, mult, strides=strides, dilations=dilations, pads=pads, pad_value=pad_value
        )
    xp = pad_input(x, g, pad_value).view(np.uint8)
    wb = np.ascontiguousarray(w).view(np.uint8)
    gp = g.unpadded()
    if path in ("exact", "lowrank"):
        f = _factors_stored(mult, wb, cache, path, store)
        plan = _plan(cache, mult, wb, f, store)
        gplan = _gemm_plan(cache, mult, wb, f, plan, store) if path == "lowrank" else None
        if gplan is not None:
            return gemm_sums(xp, gp, gplan, f.divisor, cache.sessions, threads).astype(np.int32, copy=False)
        return factor_sums(xp, wb, f, gp, cache.sessions, threads, plan).astype(np.int32)
    if path == "table_numpy":
        return conv2d_table_numpy(xp, wb, mult.table, gp)
    try:
        return _conv2d_tvm(xp, wb, mult, gp, cache, threads, path, store)
    except MultiplierError:
        raise
    except Exception as exc:  # TVM/LLVM failure on this host
        if not auto:
            raise MultiplierError(
                f"the TVM {path} kernel failed on this host ({cache.cpu.llvm_cpu})",
                expected="a compiled kernel",
                found=f"{type(exc).__name__}: {str(exc)[:300]}",
                fix="use path='table_numpy' (slower, same results) and report the failure",
            ) from exc
        warnings.warn(
            f"TVM table kernel failed on {cache.cpu.llvm_cpu} ({type(exc).__name__}); "
            "using the numpy table kernel (same results, slower)",
            RuntimeWarning,
            stacklevel=2,
        )
        return conv2d_table_numpy(xp, wb, mult.table, gp)


def prepared_key(path: str, mult: Multiplier, gp: ConvGeometry) -> tuple[str, str]:
    """Key of a layer's prepared TVM table kernel (or plan) in its :class:`LayerStore`."""
    return ("tvm_table", f"{path}:{mult.table_hash}:{gp}")


def _conv2d_tvm(
    xp: np.ndarray,
    wb: np.ndarray,
    mult: Multiplier,
    gp: ConvGeometry,
    cache: KernelCache,
    threads: int | None,
    path: str,
    store: LayerStore | None = None,
) -> np.ndarray:
    from approxtvm.runtime.kernels.table_choice import measured_kernel
    from approxtvm.runtime.kernels.table_perm import PermConv, perm_available, perm_dtype
    from approxtvm.runtime.kernels.table_tvm import TablePlan, conv2d_table_tvm, plan_tables

    kernels = cache.tvm_kernels()

    def _tables(plan: TablePlan) -> np.ndarray:
        tables = cache.layer_tables((mult.table_hash, _weight_key(wb, store), wb.shape, plan), plan.table_bytes(gp))
        return conv2d_table_tvm(xp, wb, mult.table, gp, kernels, tables, threads=threads)

    if path == "table_gather":
        return conv2d_table_tvm(xp, wb, mult.table, gp, kernels, None, kernel="gather", threads=threads)
    # the layer's kernel choice and prepared register-LUT kernel live in its store (weights fixed)
    skey = prepared_key(path, mult, gp)
    prepared = store.entries.get(skey) if store is not None else None
    if prepared is None:
        perm_ok = perm_available(kernels.cpu) and perm_dtype(mult.table) is not None
        if path == "table_perm" and not perm_ok:
            raise MultiplierError(
                "path='table_perm' needs an AVX-512 BW host and a table whose values fit 16 bits",
                expected="avx512 and int16/uint16 table values",
                found=f"{kernels.cpu.llvm_cpu} (avx512={kernels.cpu.avx512}), values "
                f"{int(mult.table.min())}..{int(mult.table.max())}",
                fix="use path='table'",
            )
        plan = plan_tables(gp, mult.table, kernels.config)
        fits = plan.table_bytes(gp) <= min(LAYER_TABLE_CACHE_MAX_BYTES, cache.table_cache_max_bytes)
        first = None
        if path == "table_perm" or (perm_ok and not fits):
            prepared = PermConv(wb, mult.table, gp, kernels, mult.table_hash)
        elif perm_ok:  # both kernels apply: the faster for this shape, measured (.table_choice)
            perm = PermConv(wb, mult.table, gp, kernels, mult.table_hash)
            candidates = {"perm": lambda: perm(xp, threads), "tables": lambda: _tables(plan)}
            shape = ("table", gp, perm_dtype(mult.table), threads)
            choice, first = measured_kernel(shape, candidates, kernels.choices, kernels.lock)
            prepared = perm if choice == "perm" else plan
        else:
            prepared = plan
        if store is not None:
            store.entries[skey] = prepared
        if first is not None:
            return first
    if isinstance(prepared, PermConv):
        return prepared(xp, threads)
    return _tables(prepared)


def dense_products(
    x: np.ndarray,
    w: np.ndarray,
    mult: Multiplier,
    *,
    threads: int | None = None,
    path: str | None = None,
    cache: KernelCache | None = None,
    store: LayerStore | None = None,
) -> np.ndarray:
    """``y[n, k] = Σ_c M(x[n, c], w[k, c])`` (int32, (N, K)); x (N, C), w (K, C).

    Same paths and parameters as :func:`conv2d_products`. The TVM table path runs the dense layer
    as a 1×1 convolution whose pixels are the batch rows.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise MultiplierError(
            "dense_products: operands have the wrong shapes",
            expected="x (N, C) and w (K, C) with the same C",
            found=f"x {x.shape}, w {w.shape}",
        )
    check_operands(x, w, mult.signed, 0, "dense_products")
    cache = cache or KernelCache()
    if path is None:
        path = choose_path(mult, None, weights=w, cache=cache).path
    _check_path(path)
    if path == "reference":
        return reference.dense_products_reference(x, w, mult)
    xb = np.ascontiguousarray(x).view(np.uint8)
    wb = np.ascontiguousarray(w).view(np.uint8)
    if path in ("exact", "lowrank"):
        f = _factors_stored(mult, wb, cache, path, store)
        plan = _plan(cache, mult, wb, f, store)
        return factor_sums(xb, wb, f, None, cache.sessions, threads, plan).astype(np.int32)
    if path == "table_numpy":
        return dense_table_numpy(xb, wb, mult.table)
    # dense as a 1×1 conv whose pixels are the batch rows, laid out as a ⌈N/4⌉ × 4 image so the
    # kernel's parallel loop (over image rows) has work for every core; padded rows are dropped
    n, c = x.shape
    q = min(n, DENSE_ROW_TILE)
    p = -(-n // q)
    xi = np.zeros((p * q, c), dtype=x.dtype)
    xi[:n] = x
    img = np.ascontiguousarray(xi.reshape(p, q, c).transpose(2, 0, 1)[None])
    y = conv2d_products(img, w[:, :, None, None], mult, threads=threads, path=path, cache=cache, store=store)
    return np.ascontiguousarray(y[0].reshape(w.shape[0], p * q)[:, :n].T)


__all__ = [
    "PATHS",
    "ConvGeometry",
    "KernelCache",
    "LayerStore",
    "PathChoice",
    "choose_path",
    "conv2d_products",
    "dense_products",
    "tvm_available",
]
