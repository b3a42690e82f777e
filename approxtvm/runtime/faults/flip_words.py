"""The sampler's flips turned into corrupted words by two compiled passes (numpy does the same where
TVM does not build; :func:`approxtvm.runtime.faults.sampling._corrupted_words`).

A flip is a (row, slot) pair; its value ``(call · key span + word key) · 8 + bit`` orders flips by
word. :func:`flip_values` computes the values in one pass (numpy: about ten passes over the flips),
numpy sorts them, and :func:`merge_words` walks the sorted values once: flips of one word are XORed
into one mask (a bit flipped twice is intact), words whose mask is zero are dropped, and each kept
word is split into (call, tensor, residency, word). The results are the numpy path's, element for
element (tested).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["compiled", "flip_values", "merge_words"]


def flip_values(
    owner: np.ndarray,
    pos: np.ndarray,
    rows: int,
    key_span: int,
    key_base: np.ndarray,
    tile_slots: np.ndarray,
    free_bits: np.ndarray,
) -> np.ndarray:
    """``(call · key_span + key_base[row] + word) · 8 + bit`` of every flip, ``call, row =
    divmod(owner, rows)``, ``word, bit = divmod(pos mod tile_slots[row], free_bits[row])``."""
    lib = compiled()
    assert lib is not None
    out = np.empty(len(owner) + 1, np.int64)  # a spare element: DLPack views of 1-element arrays keep odd strides
    args = [_pad(a) for a in (owner, pos, key_base, tile_slots, free_bits)]
    lib["flip_values"](len(owner), rows, key_span, *map(_dl, args), _dl(out))
    return out[: len(owner)]


def merge_words(
    values: np.ndarray, key_span: int, tensor_base: tuple[int, int], words: tuple[int, int]
) -> tuple[np.ndarray, ...]:
    """From ascending flip values: ``call, is_input, residency, word, mask`` of every corrupted word
    (flips of one word XORed, zero masks dropped)."""
    lib = compiled()
    assert lib is not None
    n = len(values)
    out = np.empty((4, n + 1), np.int64)
    mask = np.empty(n + 1, np.uint8)
    count = np.zeros(2, np.int64)
    lib["merge_words"](
        n,
        key_span,
        tensor_base[0],
        tensor_base[1],
        words[0],
        words[1],
        _dl(_pad(values)),
        *map(_dl, out),
        _dl(mask),
        _dl(count),
    )
    m = int(count[0])
    return out[0, :m], out[1, :m].astype(bool), out[2, :m], out[3, :m], mask[:m]


def _pad(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, np.int64)
    return np.append(a, 0) if len(a) < 2 else a


def _dl(a: np.ndarray) -> Any:
    import tvm_ffi

    return tvm_ffi.from_dlpack(a, require_alignment=0)


@functools.lru_cache(maxsize=1)
def compiled() -> Any:
    """The two passes compiled for this CPU (``None`` where TVM cannot build them: numpy then)."""
    try:
        return _build()
    except Exception:  # no TVM / LLVM failure: the numpy path gives the same words
        return None


def _build() -> Any:
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    @T.prim_func(s_tir=True)
    def flip_values(n: T.int64, rows: T.int64, key_span: T.int64, ow_h: T.handle, pos_h: T.handle, kb_h: T.handle,
                    ts_h: T.handle, fb_h: T.handle, out_h: T.handle):  # fmt: skip
        T.func_attr({"global_symbol": "flip_values", "tirx.noalias": True})
        n1, n2, ne, ne2, ne3, no = T.int64(), T.int64(), T.int64(), T.int64(), T.int64(), T.int64()
        owner = T.match_buffer(ow_h, (n1,), "int64", align=1)
        pos = T.match_buffer(pos_h, (n2,), "int64", align=1)
        key_base = T.match_buffer(kb_h, (ne,), "int64", align=1)
        tile_slots = T.match_buffer(ts_h, (ne2,), "int64", align=1)
        free_bits = T.match_buffer(fb_h, (ne3,), "int64", align=1)
        out = T.match_buffer(out_h, (no,), "int64", align=1)
        for j in range(n):
            row = owner[j] % rows
            within = pos[j] % tile_slots[row]
            out[j] = ((owner[j] // rows) * key_span + key_base[row] + within // free_bits[row]) * T.int64(8) + (
                within % free_bits[row]
            )

    @T.prim_func(s_tir=True)
    def merge_words(n: T.int64, key_span: T.int64, base_w: T.int64, base_x: T.int64, words_w: T.int64,
                    words_x: T.int64, v_h: T.handle, call_h: T.handle, isx_h: T.handle, res_h: T.handle,
                    word_h: T.handle, mask_h: T.handle, count_h: T.handle):  # fmt: skip
        # count[0]: words written; count[1]: the mask of the word being merged
        T.func_attr({"global_symbol": "merge_words", "tirx.noalias": True})
        nv, nc, ni, nr, nw, nm = T.int64(), T.int64(), T.int64(), T.int64(), T.int64(), T.int64()
        v = T.match_buffer(v_h, (nv,), "int64", align=1)
        call = T.match_buffer(call_h, (nc,), "int64", align=1)
        isx = T.match_buffer(isx_h, (ni,), "int64", align=1)
        res = T.match_buffer(res_h, (nr,), "int64", align=1)
        word = T.match_buffer(word_h, (nw,), "int64", align=1)
        mask = T.match_buffer(mask_h, (nm,), "uint8", align=1)
        count = T.match_buffer(count_h, (2,), "int64", align=1)
        for j in range(n):
            key = T.shift_right(v[j], T.int64(3))
            bit = T.shift_left(T.int64(1), T.bitwise_and(v[j], T.int64(7)))
            if j == T.int64(0) or key != T.shift_right(v[T.max(j, T.int64(1)) - T.int64(1)], T.int64(3)):
                count[1] = bit
            else:
                count[1] = T.bitwise_xor(count[1], bit)
            nxt = T.shift_right(v[T.min(j + T.int64(1), n - T.int64(1))], T.int64(3))
            # the word's last flip, its mask not zero: keep the word
            if (j == n - T.int64(1) or key != nxt) and count[1] != T.int64(0):
                c = key // key_span
                k = key % key_span
                m = count[0]
                call[m] = c
                mask[m] = T.Cast("uint8", count[1])
                if k >= base_x:
                    isx[m] = T.int64(1)
                    res[m] = (k - base_x) // words_x
                    word[m] = (k - base_x) % words_x
                else:
                    isx[m] = T.int64(0)
                    res[m] = (k - base_w) // words_w
                    word[m] = (k - base_w) % words_w
                count[0] = m + T.int64(1)

    mod = tvm.IRModule({"flip_values": flip_values, "merge_words": merge_words})
    return tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
