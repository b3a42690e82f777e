"""The byte-bounded LRU shared by the weight-table and weight-session caches."""

from __future__ import annotations

from approxtvm.runtime.byte_lru import ByteLru


def test_evicts_least_recently_used_to_fit_and_refuses_oversized_entries():
    lru = ByteLru(100)
    assert lru.put("a", 1, 40) and lru.put("b", 2, 40)
    assert lru.get("a") == 1  # a is now the most recent
    assert lru.put("c", 3, 40)  # 120 > 100: b, the least recent, goes
    assert list(lru) == ["a", "c"] and lru.total_bytes == 80 and lru.sizes() == [40, 40]
    assert lru.get("b") is None
    assert not lru.put("big", 4, 101)  # larger than the whole budget: neither kept nor evicting
    assert list(lru) == ["a", "c"] and lru.total_bytes == 80
    assert lru.put("d", 5, 100)  # exactly the budget: everything else goes
    assert list(lru) == ["d"] and lru.total_bytes == 100 and len(lru) == 1 and "d" in lru
