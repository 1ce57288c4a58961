"""Adobe I/O Events digital signatures: RSA PKCS#1 v1.5 / SHA-256 over the exact raw body.

Two signatures arrive, each with the path of its public key; either one verifying suffices. The key
path must have exactly the documented shape, and is joined to ADOBE_IO_KEY_BASE_URL: nothing else
is ever fetched (no redirects either). Keys are cached in the process for at most 24 hours.
"""

import base64
import binascii
import functools
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

KEY_PATH_RE = re.compile(r"\A/prod/keys/pub-key-[A-Za-z0-9-]+\.pem\Z")
SIGNATURE_HEADERS = (
    ("HTTP_X_ADOBE_DIGITAL_SIGNATURE_1", "HTTP_X_ADOBE_PUBLIC_KEY1_PATH"),
    ("HTTP_X_ADOBE_DIGITAL_SIGNATURE_2", "HTTP_X_ADOBE_PUBLIC_KEY2_PATH"),
)
CACHE_SECONDS = 24 * 3600
FETCH_TIMEOUT = 4.0  # Adobe gives the whole delivery 10 s
_MAX_KEY_BYTES = 16 * 1024

_cache = {}
_cache_lock = threading.Lock()


class KeyUnavailable(Exception):
    """The key host could not be asked (down, slow, 5xx): answer 503 so that Adobe retries."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def has_signature(meta):
    return any(meta.get(sig) for sig, _path in SIGNATURE_HEADERS)


def verify(body, meta, pinned_pems=""):
    """True when either signature verifies over ``body``; False when none does.

    Raises KeyUnavailable when no signature verified and a key could not be fetched.
    """
    unavailable = None
    for sig_header, path_header in SIGNATURE_HEADERS:
        signature = _decode(meta.get(sig_header, ""))
        if signature is None:
            continue
        try:
            keys = pinned_keys(pinned_pems) if pinned_pems.strip() else _fetched(meta.get(path_header, ""))
        except KeyUnavailable as exc:
            unavailable = exc
            continue
        if any(_valid(key, signature, body) for key in keys):
            return True
    if unavailable is not None:
        raise unavailable
    return False


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


def _fetched(path):
    """The key at ``path`` as a one-element list; empty for a path of the wrong shape or a 4xx."""
    if not KEY_PATH_RE.match(path):
        return []
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(path)
    if cached and cached[0] > now:
        return [cached[1]]
    key = _download(path)
    if key is None:
        return []
    with _cache_lock:
        _cache[path] = (now + CACHE_SECONDS, key)
    return [key]


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
    url = settings.ADOBE_IO_KEY_BASE_URL.rstrip("/") + path
    try:
        with _opener.open(url, timeout=FETCH_TIMEOUT) as response:
            pem = response.read(_MAX_KEY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise KeyUnavailable(f"key host answered {exc.code}") from exc
        return None  # 404 and other refusals: this key does not exist
    except (urllib.error.URLError, OSError) as exc:
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
    with _cache_lock:
        _cache.clear()
