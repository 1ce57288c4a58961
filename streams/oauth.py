"""OAuth 2 bearer tokens on the legacy push.

Three ways, chosen per source: JWTs from the customer's identity provider checked against its JWKS,
opaque tokens checked by the provider's token introspection (RFC 7662), or Fluxo itself as the
provider (django-oauth-toolkit's client-credentials endpoint; its tokens checked by lookup).

The contract of ``check_bearer``: True for a token that is valid for the source, False for one that
is not (401), and AuthUnavailable when the provider cannot be asked (503, so that Marketo retries).
Everything the provider is asked goes through ``fluxo.urlguard`` (no private addresses, no redirects).
"""

import base64
import hashlib
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt
from django.db import transaction
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_access_token_model, get_application_model

from fluxo import urlguard
from fluxo.ttlcache import TTLCache
from streams.auth import AuthUnavailable
from streams.credentials import replace_credentials
from streams.models import Source

log = logging.getLogger(__name__)

# Marketo gives a push 20 s; the provider gets a few of them.
FETCH_TIMEOUT = 3.0
# Clock skew tolerated on exp / nbf / iat.
LEEWAY_SECONDS = 30
# Longer than any real access token; a bigger one is refused before any work or network call.
MAX_TOKEN_CHARS = 8192
PUSH_SCOPE = "stream:push"

JWKS_TTL = 600
# While the provider cannot be reached, keys fetched before keep working this long past their TTL.
JWKS_STALE_GRACE = 3600
# A token with an unknown kid refreshes the keys at most this often, so a flood of random kids
# cannot hammer the provider (the first unknown kid after a fetch does refresh at once).
UNKNOWN_KID_REFRESH_INTERVAL = 60
# After a failed fetch, the provider is not asked again for this long (requests get 503 or stale keys).
RETRY_AFTER_FAILURE = 5
MAX_JWKS_BYTES = 256 * 1024
MAX_JWKS_KEYS = 50

# Only public-key algorithms: never "none", never HS* (whose "secret" would be the public key).
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA"}
)
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_BY_CURVE = {"P-256": ("ES256",), "P-384": ("ES384",), "P-521": ("ES512",), "secp256k1": ("ES256K",)}

INTROSPECTION_CACHE_SECONDS = 60
MAX_INTROSPECTION_BYTES = 64 * 1024
MAX_CACHED_INTROSPECTIONS = 10_000


def check_bearer(source, token):
    """True when ``token`` authenticates a push to ``source``. Raises AuthUnavailable (503)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return False
    checker = _CHECKERS.get(source.legacy_auth)
    return checker(source, token) if checker else False


# --- Talking to the provider ----------------------------------------------------------------------


def _fetch_json(url, what, data=None, headers=None, max_bytes=MAX_JWKS_BYTES):
    """The JSON of a 2xx answer from the provider; AuthUnavailable for anything else.

    A 4xx is unavailable too: it says the URL or Fluxo's own credentials are wrong (an admin's
    mistake to fix while Marketo retries), not that the token presented is.
    """
    headers = {"Accept": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (urlguard speaks http(s) only)
    try:
        with urlguard.open_url(request, FETCH_TIMEOUT) as response:
            body = response.read(max_bytes + 1)
    except urlguard.UnsafeURL as exc:
        raise AuthUnavailable(f"{what} URL refused: {exc}") from exc
    except urllib.error.HTTPError as exc:
        exc.close()
        raise AuthUnavailable(f"{what} answered {exc.code}") from exc
    except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
        raise AuthUnavailable(f"{what} unreachable: {exc.__class__.__name__}") from exc
    if len(body) > max_bytes:
        raise AuthUnavailable(f"{what} answer over {max_bytes} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise AuthUnavailable(f"{what} answer is not JSON") from exc


# --- JWTs checked against the provider's JWKS -----------------------------------------------------


def _check_jwt(source, token):
    if not (source.oauth_jwks_url and source.oauth_issuer and source.oauth_audience):
        log.warning("source %s: oauth_jwt needs a JWKS URL, an issuer and an audience", source.id)
        return False
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ASYMMETRIC or not isinstance(kid, str | None):
        return False
    keys = _key_set(source.oauth_jwks_url).keys_for(kid, alg)
    return any(_decodes(token, key, alg, source) for key in keys)


def _decodes(token, key, alg, source):
    try:
        jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            issuer=source.oauth_issuer,
            audience=source.oauth_audience,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"], "enforce_minimum_key_length": True},
        )
    except jwt.PyJWTError:
        return False
    return True


class _KeySet:
    """The keys at one JWKS URL, with the times that decide when to fetch them again."""

    def __init__(self, url):
        self.url = url
        self.lock = threading.Lock()
        self.verifiers = []  # (kid, alg, PyJWK), one per algorithm a key may verify
        self.fetched_at = None  # time.monotonic() of the last successful fetch
        self.failed_at = None  # of the last fetch, when it failed; cleared by a success
        self.failure = ""
        self.forced_at = float("-inf")  # the last refresh an unknown kid caused

    def keys_for(self, kid, alg):
        """The keys that may have signed a token with this header: [] means none (401).

        Raises AuthUnavailable when the provider cannot be asked and what is known cannot decide.
        """
        # One fetch at a time per URL: concurrent requests with the same new kid wait for it
        # instead of each fetching.
        with self.lock:
            now = time.monotonic()
            if self._should_fetch(kid, now):
                self._fetch(now)
            return self._matching(kid, alg, now)

    def _should_fetch(self, kid, now):
        if self.failed_at is not None and now - self.failed_at < RETRY_AFTER_FAILURE:
            return False
        if self.fetched_at is None or now - self.fetched_at >= JWKS_TTL:
            return True
        if kid is not None and not self._knows(kid) and now - self.forced_at >= UNKNOWN_KID_REFRESH_INTERVAL:
            self.forced_at = now
            return True
        return False

    def _fetch(self, now):
        try:
            self.verifiers = _verifiers(_fetch_json(self.url, "JWKS"))
        except AuthUnavailable as exc:
            self.failed_at, self.failure = now, str(exc)
            log.warning("JWKS at %s not refreshed: %s", self.url, exc)
            return
        self.fetched_at, self.failed_at = now, None

    def _matching(self, kid, alg, now):
        if self.fetched_at is None or now - self.fetched_at >= JWKS_TTL + JWKS_STALE_GRACE:
            raise AuthUnavailable(self.failure or "JWKS not available")
        if kid is not None and not self._knows(kid) and self.failed_at is not None:
            # Perhaps a key the provider has just added, which it cannot be asked about: retry later.
            raise AuthUnavailable(self.failure)
        return [key for key_kid, key_alg, key in self.verifiers if key_alg == alg and kid in (None, key_kid)]

    def _knows(self, kid):
        return any(key_kid == kid for key_kid, _alg, _key in self.verifiers)


_key_sets = {}
_key_sets_lock = threading.Lock()


def _key_set(url):
    with _key_sets_lock:
        return _key_sets.setdefault(url, _KeySet(url))


def _verifiers(document):
    """(kid, alg, PyJWK) for every usable signing key of a JWKS document; unusable keys are skipped."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise AuthUnavailable("JWKS answer has no 'keys' list")
    verifiers = []
    for jwk in keys[:MAX_JWKS_KEYS]:
        for alg in _algorithms(jwk):
            try:
                verifiers.append((jwk.get("kid"), alg, jwt.PyJWK(jwk, algorithm=alg)))
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
    return verifiers


def _algorithms(jwk):
    """The public-key algorithms a JWK may verify: its own ``alg`` if it names one, else by key type."""
    if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or not isinstance(jwk.get("kid"), str | None):
        return ()
    if "alg" in jwk:
        return (jwk["alg"],) if jwk["alg"] in ASYMMETRIC else ()
    if jwk.get("kty") == "RSA":
        return _RSA
    if jwk.get("kty") == "EC":
        return _BY_CURVE.get(jwk.get("crv"), ())
    if jwk.get("kty") == "OKP" and jwk.get("crv") in ("Ed25519", "Ed448"):
        return ("EdDSA",)
    return ()  # "oct" (a shared secret) among them: never


# --- Opaque tokens checked by token introspection (RFC 7662) --------------------------------------


def _check_introspection(source, token):
    if not (
        source.oauth_introspection_url
        and source.oauth_introspection_client_id
        and source.oauth_introspection_client_secret
    ):
        log.warning("source %s: oauth_introspection needs a URL, a client id and a secret", source.id)
        return False
    key = _introspection_key(source, token)
    if _recently_active(key):
        return True
    answer = _introspect(source, token)
    if not _is_active(answer, source):
        return False
    _remember_active(key, answer.get("exp"))
    return True


def _introspect(source, token):
    client_id = urllib.parse.quote(source.oauth_introspection_client_id, safe="")
    secret = urllib.parse.quote(source.oauth_introspection_client_secret, safe="")
    # RFC 6749 2.3.1: both form-encoded, then HTTP Basic.
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return _fetch_json(
        source.oauth_introspection_url,
        "introspection",
        data=urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"}).encode(),
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        max_bytes=MAX_INTROSPECTION_BYTES,
    )


def _is_active(answer, source):
    """``active`` exactly true, not past ``exp``, and the issuer and audience the source names, if it does."""
    if not isinstance(answer, dict) or answer.get("active") is not True:
        return False
    exp = answer.get("exp")
    if exp is not None and (not _is_number(exp) or exp + LEEWAY_SECONDS <= time.time()):
        return False
    if source.oauth_issuer and answer.get("iss") != source.oauth_issuer:
        return False
    audiences = answer.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else audiences
    return not source.oauth_audience or (isinstance(audiences, list) and source.oauth_audience in audiences)


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


# sha256(source, URL, client id, token) -> True; a flood of valid tokens pushes out the oldest.
_active = TTLCache(INTROSPECTION_CACHE_SECONDS, max_size=MAX_CACHED_INTROSPECTIONS)


def _introspection_key(source, token):
    parts = (str(source.id), source.oauth_introspection_url, source.oauth_introspection_client_id, token)
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _recently_active(key):
    return _active.get(key, False)


def _remember_active(key, exp):
    """Cache a positive answer briefly: at most INTROSPECTION_CACHE_SECONDS, never past ``exp``."""
    seconds = INTROSPECTION_CACHE_SECONDS
    if _is_number(exp):
        seconds = min(seconds, exp - time.time())
    _active.set(key, True, ttl=seconds)  # zero or less: not kept


# --- Fluxo as the identity provider ---------------------------------------------------------------


def _check_fluxo_token(source, token):
    """Look the token up by its SHA-256 checksum, as django-oauth-toolkit 3 itself does.

    The plaintext ``token`` column may be blank (RFC 9700 storage), the checksum never is.
    """
    if source.oauth_application_id is None:
        return False
    checksum = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    access = (
        get_access_token_model()
        .objects.filter(token_checksum=checksum, application_id=source.oauth_application_id)
        .first()
    )
    return access is not None and access.is_valid([PUSH_SCOPE])


class ClientExists(Exception):
    """The source already has a Fluxo OAuth client; replacing it must be asked for."""


def create_fluxo_client(source, replace=False):
    """Make Fluxo the identity provider of ``source``'s legacy push; return ``(client_id, client_secret)``.

    A confidential client-credentials application is created and linked to the source, whose
    legacy auth becomes ``oauth_fluxo``. The secret is stored hashed: this is the only time it
    is seen. ``replace`` replaces a previous application: like the API token or provider settings
    this replaces, it keeps working for the source's grace period (``Source.auth_grace_hours``;
    at once when 0), then it is deleted with every token it issued.
    """
    application_model = get_application_model()
    secret = generate_client_secret()
    with transaction.atomic():
        source = Source.objects.select_for_update().get(pk=source.pk)
        previous = source.oauth_application
        if previous is not None and not replace:
            raise ClientExists(f"source {source.name!r} already has a Fluxo OAuth client")
        application = application_model.objects.create(
            name=f"Fluxo legacy push: {source.name}",
            client_type=application_model.CLIENT_CONFIDENTIAL,
            authorization_grant_type=application_model.GRANT_CLIENT_CREDENTIALS,
            client_secret=secret,
            hash_client_secret=True,
        )
        source.oauth_application = application
        source.legacy_auth = Source.LegacyAuth.OAUTH_FLUXO
        # Keeps what this replaces through the grace period (or deletes a replaced client at once).
        replace_credentials(source, update_fields=["oauth_application", "legacy_auth"])
    return application.client_id, secret


# --- Configuration ---------------------------------------------------------------------------------

_REQUIRED = {
    Source.LegacyAuth.OAUTH_JWT: ("oauth_jwks_url", "oauth_issuer", "oauth_audience"),
    Source.LegacyAuth.OAUTH_INTROSPECTION: (
        "oauth_introspection_url",
        "oauth_introspection_client_id",
        "oauth_introspection_client_secret",
    ),
}
_URL_FIELDS = ("oauth_jwks_url", "oauth_introspection_url")


def configuration_errors(source):
    """``{field: message}`` for what the source's legacy auth needs and lacks, and for refused URLs."""
    errors = {name: "required for this kind of authentication" for name in _REQUIRED.get(source.legacy_auth, ())}
    errors = {name: message for name, message in errors.items() if not getattr(source, name)}
    for name in _URL_FIELDS:
        url = getattr(source, name)
        if url and name not in errors:
            try:
                urlguard.validate_url(url)
            except urlguard.UnsafeURL as exc:
                errors[name] = str(exc)
    if source.legacy_auth == Source.LegacyAuth.OAUTH_FLUXO and source.oauth_application_id is None:
        errors["legacy_auth"] = (
            "Fluxo has no OAuth client for this source yet: save it, then use the action "
            "'Make Fluxo the OAuth provider' (or manage.py create_oauth_client)"
        )
    return errors


def clear_caches():
    """Forget fetched keys and cached introspection answers (tests; a provider's keys revoked)."""
    with _key_sets_lock:
        _key_sets.clear()
    _active.clear()


_CHECKERS = {
    Source.LegacyAuth.OAUTH_JWT: _check_jwt,
    Source.LegacyAuth.OAUTH_INTROSPECTION: _check_introspection,
    Source.LegacyAuth.OAUTH_FLUXO: _check_fluxo_token,
}
