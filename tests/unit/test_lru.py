"""The two-generation cache behind the Rank path's caches."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from policies.lru import LRU


@given(st.integers(2, 40), st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=300))
def test_bounded_and_never_wrong(capacity: int, operations: list[tuple[bool, int]]) -> None:
    cache: LRU[int, str] = LRU(capacity)
    for is_put, key in operations:
        if is_put:
            cache.put(key, f"v{key}")
        else:
            assert cache.get(key) in (None, f"v{key}")  # a miss is allowed, a wrong value never
        assert len(cache) <= capacity


def test_entries_in_use_survive_a_stream_of_new_ones() -> None:
    cache: LRU[str, int] = LRU(100)
    cache.put("hot", 1)
    for i in range(10_000):
        cache.put(f"cold-{i}", i)
        assert cache.get("hot") == 1
    assert cache.get("cold-0") is None  # long gone


def test_put_replaces_and_clear_empties() -> None:
    cache: LRU[str, int] = LRU(4)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)
    assert (cache.get("a"), cache.get("b")) == (3, 2)
    cache.clear()
    assert len(cache) == 0 and cache.get("a") is None
