"""Secrets Fluxo must be able to read back (Adobe client secrets, to get IMS tokens), encrypted at rest.

Fernet (AES-128-CBC + HMAC-SHA256) with the key in FLUXO_SECRETS_KEY. Without a key, no secret can be
stored: a clear error, never a plaintext fallback. A rotated key makes old secrets unreadable
(``Unreadable``): they are entered again.
"""

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class NoKey(Exception):
    """FLUXO_SECRETS_KEY is not set (or not a Fernet key)."""


class Unreadable(Exception):
    """A stored secret that this key cannot decrypt."""


def _fernet():
    key = settings.FLUXO_SECRETS_KEY
    if not key:
        raise NoKey("set FLUXO_SECRETS_KEY (a Fernet key) to store Adobe client secrets")
    try:
        return Fernet(key.encode())
    except ValueError as exc:
        raise NoKey("FLUXO_SECRETS_KEY is not a Fernet key (32 bytes, URL-safe base64)") from exc


def seal(secret):
    return _fernet().encrypt(secret.encode()).decode()


def unseal(sealed):
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise Unreadable("the stored secret cannot be decrypted with FLUXO_SECRETS_KEY: enter it again") from exc


def new_key():
    return Fernet.generate_key().decode()
