"""fluxo.ttlcache: entries expire, the cache stays within its size, and threads may share it."""

import threading

import pytest

from fluxo.ttlcache import MISSING, TTLCache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("time.monotonic", clock)
    return clock


def test_an_entry_is_kept_for_its_ttl_and_then_forgotten(clock):
    cache = TTLCache(ttl=5, max_size=10)
    cache.set("a", 1)
    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_ttl_given_to_set_replaces_the_caches_own(clock):
    cache = TTLCache(ttl=60, max_size=10)
    cache.set("short", 1, ttl=2)
    cache.set("never", 2, ttl=0)
    clock.now += 2
    assert cache.get("short") is None
    assert cache.get("never", MISSING) is MISSING


def test_a_cached_absence_is_told_apart_from_no_entry(clock):
    cache = TTLCache(ttl=60, max_size=10)
    cache.set("nobody", "")
    assert cache.get("nobody", MISSING) == ""
    assert cache.get("unknown", MISSING) is MISSING


def test_full_it_forgets_what_was_set_longest_ago(clock):
    cache = TTLCache(ttl=60, max_size=3)
    for key in "abc":
        cache.set(key, key)
        clock.now += 1
    cache.set("a", "again")  # set again: now the newest
    cache.set("d", "d")
    assert len(cache) == 3
    assert [cache.get(key) for key in "abcd"] == ["again", None, "c", "d"]


def test_expired_entries_make_room_before_live_ones(clock):
    cache = TTLCache(ttl=10, max_size=100)
    for number in range(50):
        cache.set(number, number)
    clock.now += 10
    cache.set("fresh", 1)
    assert len(cache) == 1


def test_pop_and_clear(clock):
    cache = TTLCache(ttl=10, max_size=10)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.pop("a")
    cache.pop("not there")
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    cache.clear()
    assert len(cache) == 0


def test_threads_setting_and_reading_at_once_never_exceed_the_size():
    cache = TTLCache(ttl=60, max_size=100)
    errors = []

    def hammer(offset):
        try:
            for number in range(2000):
                cache.set((offset, number), number)
                assert cache.get((offset, number)) in (number, None)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == 100


def test_a_senseless_configuration_is_refused():
    with pytest.raises(ValueError):
        TTLCache(ttl=0, max_size=10)
    with pytest.raises(ValueError):
        TTLCache(ttl=10, max_size=0)
