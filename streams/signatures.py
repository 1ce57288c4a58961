"""Adobe I/O Events digital signatures: RSA PKCS#1 v1.5 / SHA-256 over the exact raw body.

Two signatures arrive, each with the path of its public key; either one verifying suffices. The key
path must have exactly the documented shape (and at most 128 characters), and is joined to
ADOBE_IO_KEY_BASE_URL: nothing else is ever fetched (no redirects either). Keys are cached in the
process for at most 24 hours, a path the key host has no key for for 5 minutes.

Anyone who knows a source's ingest URL can name key paths, so fetching is bounded: keys already known
are tried first (a correctly signed delivery never waits for a fetch), concurrent requests for one
path share one fetch, and fetches of keys not yet known are limited per source and per process. A
request over a limit gets KeyFetchLimited, a 503 with Retry-After: during a real key rotation the new
key is then fetched on Adobe's retry, where a 401 would have made Adobe drop the event.
"""

import base64
import binascii
import functools
import http.client
import re
import threading
import time
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

from fluxo import metrics
from fluxo.ttlcache import TTLCache

KEY_PATH_RE = re.compile(r"\A/prod/keys/pub-key-[A-Za-z0-9-]+\.pem\Z")
# Adobe's paths name a UUID (59 characters in all); 128 leaves room and refuses a 6,000-character one.
MAX_KEY_PATH_CHARS = 128
SIGNATURE_HEADERS = (
    ("HTTP_X_ADOBE_DIGITAL_SIGNATURE_1", "HTTP_X_ADOBE_PUBLIC_KEY1_PATH"),
    ("HTTP_X_ADOBE_DIGITAL_SIGNATURE_2", "HTTP_X_ADOBE_PUBLIC_KEY2_PATH"),
)
CACHE_SECONDS = 24 * 3600
# A path the key host has no key for (404) is answered 401 from memory this long. Short, because
# the path may be a new key Adobe has not published everywhere yet.
MISSING_KEY_SECONDS = 5 * 60
FETCH_TIMEOUT = 4.0  # Adobe gives the whole delivery 10 s
_MAX_KEY_BYTES = 16 * 1024

# At most this many threads of a process wait for a key it does not know (fetching it, or waiting for
# the fetch of the same path another request started); one more gets a 503 at once. Two of the web
# process's 8 ingest threads (fluxo.asgi.INGEST_THREADS): a flood of unknown paths, each fetch up to
# FETCH_TIMEOUT, leaves the other six to correctly signed traffic, whose keys are known. Two, not one,
# so that both keys of a cold process (or a rotation and a stray path) are fetched side by side.
UNKNOWN_KEY_THREADS = 2
# Per source, a token bucket of new-key fetches: SOURCE_FETCH_BURST at once, then one more every
# SOURCE_FETCH_REFILL_SECONDS (6 a minute). A process starting needs 2 (both keys), a rotation 1;
# an attacker who knows one ingest URL gets no more than 6 fetches a minute out of it.
SOURCE_FETCH_BURST = 6
SOURCE_FETCH_REFILL_SECONDS = 10.0

_keys = TTLCache(CACHE_SECONDS, max_size=1000)  # path -> RSA public key
_missing = TTLCache(MISSING_KEY_SECONDS, max_size=10_000)  # path -> True: the key host has no key there


class KeyUnavailable(Exception):
    """The key host could not be asked (down, slow, 5xx): answer 503 so that Adobe retries."""


class KeyFetchLimited(KeyUnavailable):
    """Too many keys not yet known asked for, at once or lately by this source: 503 so the sender retries."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def has_signature(meta):
    return any(meta.get(sig) for sig, _path in SIGNATURE_HEADERS)


def verify(body, meta, pinned_pems="", source_id=None):
    """True when either signature verifies over ``body``; False when none does.

    Keys known to the process are tried first; only when none verifies are the others fetched, from
    the budget of ``source_id`` (callers without one share a budget). Raises KeyUnavailable when no
    signature verified and a key could not be fetched (KeyFetchLimited: not asked, over a limit).
    """
    signed = _signatures(meta)
    if pinned_pems.strip():
        keys = pinned_keys(pinned_pems)
        return any(_valid(key, signature, body) for signature, _path in signed for key in keys)
    unknown = []
    for signature, path in signed:
        if not _well_shaped(path) or _missing.get(path):
            continue
        key = _keys.get(path)
        if key is None:
            unknown.append((signature, path))
        elif _valid(key, signature, body):
            return True
    return _verify_fetching(body, unknown, source_id)


def _signatures(meta):
    """(decoded signature, key path) for each signature header that holds base64."""
    pairs = [
        (_decode(meta.get(sig_header, "")), meta.get(path_header, "")) for sig_header, path_header in SIGNATURE_HEADERS
    ]
    return [(signature, path) for signature, path in pairs if signature is not None]


def _verify_fetching(body, unknown, source_id):
    """Only when no known key verified: fetch the others (``unknown``: (signature, path) pairs)."""
    unavailable = None
    for signature, path in unknown:
        try:
            key = _fetched(path, source_id)
        except KeyUnavailable as exc:
            unavailable = exc
            continue
        if key is not None and _valid(key, signature, body):
            return True
    if unavailable is not None:
        raise unavailable
    return False


def _well_shaped(path):
    return len(path) <= MAX_KEY_PATH_CHARS and KEY_PATH_RE.match(path) is not None


def _decode(value):
    if not value:
        return None
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _valid(key, signature, body):
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- Fetching keys not yet known, within the limits ----------------------------------------------


class _Slots:
    """A count of threads busy with something, refused past ``limit`` (never waited for)."""

    def __init__(self, limit):
        self.limit, self.in_use = limit, 0
        self._lock = threading.Lock()

    def take(self):
        with self._lock:
            if self.in_use >= self.limit:
                return False
            self.in_use += 1
            return True

    def give_back(self):
        with self._lock:
            self.in_use -= 1


class _Fetch:
    """One fetch of one path in progress; the requests that name the same path wait for its outcome."""

    def __init__(self):
        self.done = threading.Event()
        # Until the fetch ends well: a fetch cut short by anything is never taken for a 404.
        self.key, self.error = None, KeyUnavailable("the key fetch did not end")

    def outcome(self):
        # The fetch's own timeouts apply to connecting and to each read: twice FETCH_TIMEOUT bounds it.
        if not self.done.wait(2 * FETCH_TIMEOUT):
            raise KeyUnavailable("key host too slow")
        if self.error is not None:
            raise self.error
        return self.key


_threads = _Slots(UNKNOWN_KEY_THREADS)
_in_flight = {}  # path -> _Fetch
_in_flight_lock = threading.Lock()
# source id -> (tokens, monotonic time of the last refill); a bucket unused for a whole refill of
# the burst would be full again, so it expires then and a new full one stands in for it.
_budgets = TTLCache(SOURCE_FETCH_BURST * SOURCE_FETCH_REFILL_SECONDS, max_size=10_000)
_budgets_lock = threading.Lock()


def threads_waiting_for_keys():
    """How many threads of this process are fetching a key, or waiting for a fetch (at most UNKNOWN_KEY_THREADS)."""
    return _threads.in_use


def _fetched(path, source_id):
    """The key at ``path``; None when the key host has none. Raises KeyUnavailable, KeyFetchLimited."""
    if not _threads.take():
        raise KeyFetchLimited(f"already {UNKNOWN_KEY_THREADS} threads waiting for keys not yet known")
    try:
        return _shared_fetch(path, source_id)
    finally:
        _threads.give_back()


def _shared_fetch(path, source_id):
    with _in_flight_lock:
        # Asked again under the lock: a fetch may have ended since verify() looked.
        if _missing.get(path):
            return None
        if (key := _keys.get(path)) is not None:
            return key
        fetch = _in_flight.get(path)
        if fetch is None:
            if not _spend(source_id):
                raise KeyFetchLimited(f"source {source_id} fetched {SOURCE_FETCH_BURST} new keys lately")
            fetch = _in_flight[path] = _Fetch()
            leading = True
        else:
            leading = False
    if not leading:
        return fetch.outcome()
    try:
        fetch.key, fetch.error = _download(path), None
    except Exception as exc:  # the requests waiting for this fetch get what this one gets
        fetch.error = exc
    finally:
        _remember(path, fetch)
    return fetch.outcome()


def _remember(path, fetch):
    # Cached before the fetch leaves _in_flight, so that no request in between fetches the path again.
    if fetch.key is not None:
        _keys.set(path, fetch.key)
    elif fetch.error is None:
        _missing.set(path, True)
    with _in_flight_lock:
        _in_flight.pop(path, None)
    fetch.done.set()


def _spend(source_id):
    """Take one fetch from the source's bucket; False when it is empty."""
    now = time.monotonic()
    with _budgets_lock:
        tokens, since = _budgets.get(source_id) or (SOURCE_FETCH_BURST, now)
        tokens = min(SOURCE_FETCH_BURST, tokens + (now - since) / SOURCE_FETCH_REFILL_SECONDS)
        spent = tokens >= 1
        _budgets.set(source_id, (tokens - 1 if spent else tokens, now))
        return spent


def _download(path):
    """The key at ``path``, None when the key host has none; counted by outcome for /metrics."""
    try:
        key = _fetch_key(path)
    except KeyUnavailable:
        metrics.key_fetched("unavailable")
        raise
    metrics.key_fetched("fetched" if key is not None else "refused")
    return key


def _fetch_key(path):
    """The key the host serves at ``path``; None for a 4xx (other than 429) or no RSA key in the answer."""
    url = settings.ADOBE_IO_KEY_BASE_URL.rstrip("/") + path
    try:
        with _opener.open(url, timeout=FETCH_TIMEOUT) as response:
            pem = response.read(_MAX_KEY_BYTES + 1)
            # read(n) returns what came before the host hung up: less than it announced is no answer
            # (and must not be remembered as a path without a key).
            if len(pem) <= _MAX_KEY_BYTES and response.length:
                raise KeyUnavailable("key host answer cut short")
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise KeyUnavailable(f"key host answered {exc.code}") from exc
        return None  # 404 and other refusals: this key does not exist
    except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
        raise KeyUnavailable(f"key host unreachable: {exc.__class__.__name__}") from exc
    keys = _load_pems(pem[:_MAX_KEY_BYTES])
    return keys[0] if keys else None


@functools.lru_cache(maxsize=64)
def pinned_keys(pems):
    return _load_pems(pems.encode())


def _load_pems(data):
    keys = []
    for block in re.findall(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", data, re.S):
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError:
            continue
        if isinstance(key, rsa.RSAPublicKey):
            keys.append(key)
    return keys


def clear_cache():
    """Forget known keys, missing paths and the sources' fetch budgets (tests; a key revoked)."""
    _keys.clear()
    _missing.clear()
    _budgets.clear()
