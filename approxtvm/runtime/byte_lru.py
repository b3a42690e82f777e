"""A least-recently-used map bounded by the bytes its entries hold (not thread-safe: callers lock)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any

__all__ = ["ByteLru"]


class ByteLru:
    """Entries with a size in bytes; adding one evicts the least recently used until all fit.

    Parameters
    ----------
    max_bytes
        Total bytes the kept entries may hold; an entry larger than that alone is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> Any | None:
        """The value under ``key`` (now the most recently used), or ``None``."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        self._entries.move_to_end(key)
        return hit[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> bool:
        """Keep ``value`` under ``key`` (a new key), evicting least recently used entries to make
        room; ``False`` (nothing kept, nothing evicted) if ``nbytes`` exceeds :attr:`max_bytes`."""
        if nbytes > self.max_bytes:
            return False
        while self._entries and self._bytes + nbytes > self.max_bytes:
            _, (_, nb) = self._entries.popitem(last=False)
            self._bytes -= nb
        self._entries[key] = (value, int(nbytes))
        self._bytes += int(nbytes)
        return True

    @property
    def total_bytes(self) -> int:
        """Bytes held by the kept entries."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Hashable]:
        """The kept keys, least recently used first."""
        return iter(self._entries)

    def sizes(self) -> list[int]:
        """Bytes of every kept entry, least recently used first."""
        return [nb for _, nb in self._entries.values()]
