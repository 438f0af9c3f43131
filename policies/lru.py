"""A small bounded map that keeps recently used entries: a two-generation cache.

New and used entries live in the young generation; when it is full it becomes
the old one and the previous old generation is dropped. An entry found in the
old generation moves back to the young one, so whatever is used at least once
per generation stays. A hit costs one dict lookup: the Rank path makes about
a hundred of them per call, where an ``OrderedDict`` LRU's ``move_to_end``
per hit was a measurable share of its time. At most ``capacity`` entries are
held.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self._generation = capacity // 2
        self._young: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        value = self._young.get(key)
        if value is None:
            value = self._old.pop(key, None)
            if value is not None:
                self._store(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        self._old.pop(key, None)
        self._store(key, value)

    def _store(self, key: K, value: V) -> None:
        self._young[key] = value
        if len(self._young) >= self._generation:
            self._old, self._young = self._young, {}

    def clear(self) -> None:
        self._young.clear()
        self._old.clear()

    def __len__(self) -> int:
        return len(self._young) + len(self._old)
