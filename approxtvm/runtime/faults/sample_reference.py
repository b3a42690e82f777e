"""The sampler's definition, one block at a time in plain Python (what the tests hold the fast paths to)."""

from __future__ import annotations

import numpy as np

from approxtvm.runtime.faults.plan import FaultPlan
from approxtvm.runtime.faults.sampling import CorruptedWords, EventTable, FaultSample, block_generator, uniform_slots

__all__ = ["sample_block_reference"]


def sample_block_reference(
    plan: FaultPlan, ev: EventTable, seed: int, block: int, generator: np.random.Generator | None = None
) -> list[FaultSample]:
    """One block drawn on its own, step by step in plain Python: the definition of the sampling that
    :func:`~approxtvm.runtime.faults.sampling.sample_blocks` vectorises over blocks (the tests
    compare them; nothing here is shared with the vectorised bookkeeping but the generator's draws).

    Draws, in order: the flip count of every (call, event row) of the block; one uniform slot per
    flip, rows in order; then, while a row holds a slot twice, a fresh slot for every later copy
    (in flip order), all such copies of the round drawn in flip order. A slot of a row is
    ``(hop or read) · words · free bits + word · free bits + bit``; flips of one word are merged
    (XOR: a bit flipped twice is intact)."""
    B, E = ev.block_calls, len(ev.slots)
    rng = block_generator(seed, plan.layer_index, block, generator)
    counts = rng.binomial(*ev.block_rows)
    flipped = np.add.reduceat(counts.reshape(B, E), ev.stream_start, axis=1)
    owner = [g for g, c in enumerate(counts.tolist()) for _ in range(c)]  # global row: call · E + event
    nslots = np.array([int(ev.slots[g % E]) for g in owner], np.int64)
    pos = uniform_slots(rng, nslots).tolist()
    several = {g for g, c in enumerate(counts.tolist()) if c > 1}
    while True:
        seen: set[tuple[int, int]] = set()
        again = []
        for i, g in enumerate(owner):
            if g in several:
                if (g, pos[i]) in seen:
                    again.append(i)
                seen.add((g, pos[i]))
        if not again:
            break
        for i, p in zip(again, uniform_slots(rng, nslots[again]).tolist(), strict=True):
            pos[i] = p
    masks: dict[tuple[int, int, int, int], int] = {}  # (call, tensor, residency, word) -> XOR mask
    for g, p in zip(owner, pos, strict=True):
        call, r = divmod(g, E)
        base = int(ev.key_base[r])
        t = 0 if base < ev.tensor_base[1] else 1
        residency = (base - ev.tensor_base[t]) // ev.words[t]
        word, bit = divmod(p % int(ev.tile_slots[r]), int(ev.free_bits[r]))
        key = (call, t, residency, word)
        masks[key] = masks.get(key, 0) ^ (1 << bit)
    out = []
    for c in range(B):
        per_tensor = []
        for t in (0, 1):
            keys = sorted(k for k, m in masks.items() if k[0] == c and k[1] == t and m)
            per_tensor.append(
                CorruptedWords(
                    np.array([k[2] for k in keys], np.int64),
                    np.array([k[3] for k in keys], np.int64),
                    np.array([masks[k] for k in keys], np.uint8),
                )
            )
        out.append(FaultSample(per_tensor[0], per_tensor[1], ev.streams, flipped[c]))
    return out
