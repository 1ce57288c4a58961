"""A small thread-safe cache whose entries expire: what one process keeps for a while of the database or
of a provider (sources by ingest key, Adobe's public keys and the paths it has none for, introspection
answers, activity type names).

A leaf module: it imports no app, so every app may use it. Time is ``time.monotonic()``, looked up at
each call, so a test that stands in for ``time.monotonic`` moves every cache's clock with it.
"""

import threading
import time
from collections import OrderedDict

MISSING = object()


class TTLCache:
    """At most ``max_size`` entries, each kept ``ttl`` seconds (or the ``ttl`` given to ``set``).

    Full, it forgets the entries set longest ago first, expired or not: a flood of new keys costs the
    oldest entries, never unbounded memory. Negative caching is an entry too (a value meaning "there
    is none", e.g. an empty name), or better a second instance with its own, shorter ``ttl`` and size,
    so that absences can never push out what is known. One lock, held only for dictionary work:
    nothing is computed or fetched under it.
    """

    def __init__(self, ttl, max_size):
        if ttl <= 0 or max_size < 1:
            raise ValueError("a TTLCache needs ttl > 0 and max_size >= 1")
        self.ttl, self.max_size = ttl, max_size
        self._entries = OrderedDict()  # key -> (monotonic expiry, value), the one set longest ago first
        self._lock = threading.Lock()

    def get(self, key, default=None):
        """The value set for ``key`` if it has not expired, else ``default``."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return default
            if entry[0] <= now:
                del self._entries[key]
                return default
            return entry[1]

    def set(self, key, value, ttl=None):
        """Keep ``value`` for ``ttl`` seconds (the cache's own by default; zero or less: not kept)."""
        seconds = self.ttl if ttl is None else ttl
        now = time.monotonic()
        with self._lock:
            self._entries.pop(key, None)
            if seconds > 0:
                self._entries[key] = (now + seconds, value)
            self._drop_oldest(now)

    def _drop_oldest(self, now):
        # Entries mostly share one ttl, so the expired ones are mostly at the front: dropping them
        # from there costs O(1) per set, where a scan of all of them would cost O(size).
        entries = self._entries
        while entries and (len(entries) > self.max_size or next(iter(entries.values()))[0] <= now):
            entries.popitem(last=False)

    def pop(self, key):
        with self._lock:
            self._entries.pop(key, None)

    def clear(self):
        with self._lock:
            self._entries.clear()

    def __len__(self):
        """Entries held, some perhaps expired but not yet dropped."""
        with self._lock:
            return len(self._entries)
