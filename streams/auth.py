"""Authentication of the legacy Marketo push: an API token, or an OAuth 2 bearer token.

A source accepts its current credentials and, for a grace period after they changed, the ones they
replaced (Source.previous_auth, kept by streams.credentials.replace_credentials): switching from an API
token to OAuth, or replacing an OAuth client, never cuts off a sender that has not been reconfigured yet.
"""

import hmac
import logging
import secrets

import redis
from django.db import transaction
from django.utils import timezone

from streams import announce
from streams.credentials import retire_fluxo_clients
from streams.models import CREDENTIAL_FIELDS, MAX_AUTH_GRACE_HOURS, Source, SourceToken, hash_secret

log = logging.getLogger(__name__)

# Cheapest check first: a local comparison, a local lookup, a cached JWKS, then a provider round trip.
_COST = {"token": 0, "oauth_fluxo": 1, "oauth_jwt": 2, "oauth_introspection": 3}


class AuthUnavailable(Exception):
    """The identity provider could not be asked: 503, so that Marketo retries."""


def presented_token(request, source):
    """The token a push carries: ``Authorization: Bearer <t>`` or a bare ``<t>``; ``?token=`` if allowed."""
    header = request.META.get("HTTP_AUTHORIZATION", "").strip()
    if header:
        scheme, _, rest = header.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest.strip() else header
    if source.allow_query_token:
        return request.GET.get("token", "").strip()
    return ""


def check_api_token(source, token, only_ids=None):
    """Constant-time comparison against every live token of the source (two while rotating).

    ``only_ids``: compare with these of them only (the tokens a replaced configuration accepted).
    """
    if not token:
        return False
    presented = hash_secret(token)
    live = SourceToken.objects.filter(source=source, revoked_at=None)
    if only_ids is not None:
        live = live.filter(id__in=only_ids)
    # compare_digest on each, no early exit, so timing tells nothing about which one matched.
    results = [hmac.compare_digest(presented, stored) for stored in live.values_list("token_hash", flat=True)]
    return any(results)


def authenticate_push(request, source):
    """True when the push is authenticated for ``source``. Raises AuthUnavailable (503).

    The current credentials and those still in their grace period are tried cheapest first; a
    provider that cannot be asked gives a 503 only when nothing else accepted the token.
    """
    token = presented_token(request, source)
    unavailable = None
    for entry, settings_of in _candidates(source):
        try:
            accepted = _accepts(settings_of, entry, token)
        except AuthUnavailable as exc:
            unavailable = unavailable or exc
            continue
        if accepted:
            if entry is not None:
                _note_previous_used(source, entry)
            return True
    if unavailable is not None:
        raise unavailable
    return False


def _candidates(source):
    """(previous_auth entry or None for the current credentials, a Source with their settings), cheapest first."""
    found = [(None, source)]
    for entry in source.previous_credentials():
        mode = entry["legacy_auth"]
        fields = {name: entry.get(name) for name in CREDENTIAL_FIELDS.get(mode, ())}
        found.append((entry, Source(pk=source.pk, legacy_auth=mode, **fields)))
    return sorted(found, key=lambda candidate: _COST.get(candidate[1].legacy_auth, 9))  # stable: current first


def _accepts(settings_of, entry, token):
    if settings_of.legacy_auth == Source.LegacyAuth.TOKEN:
        return check_api_token(settings_of, token, None if entry is None else entry.get("token_ids", []))
    from streams import oauth

    return oauth.check_bearer(settings_of, token)


def issue_api_token(source, token=None):
    """Make ``token`` (or a new random one) a live token of ``source``; return it (stored hashed).

    At most two are live: issuing a third revokes the oldest, which is how a token is rotated
    without downtime (the sender moves to the new one while the previous one still works).
    """
    token = token or secrets.token_urlsafe(32)
    SourceToken.objects.create(source=source, token_hash=hash_secret(token), prefix=token[:6])
    live = SourceToken.objects.filter(source=source, revoked_at=None).order_by("-created_at", "-id")
    stale = [old.id for old in live[SourceToken.MAX_LIVE :]]
    SourceToken.objects.filter(id__in=stale).update(revoked_at=timezone.now())
    return token


# --- The grace period of replaced credentials --------------------------------------------------------


def end_grace(source):
    """Stop accepting the replaced credentials of ``source`` now; a replaced Fluxo client is deleted."""
    with transaction.atomic():
        locked = Source.objects.select_for_update().get(pk=source.pk)
        replaced = [entry.get("oauth_application_id") for entry in locked.previous_auth]
        locked.set_previous_credentials([])
        locked.save(update_fields=["previous_auth", "previous_auth_until"])
        retire_fluxo_clients(replaced, locked.oauth_application_id)
    source.previous_auth, source.previous_auth_until = locked.previous_auth, locked.previous_auth_until


def retire_expired_grace(now=None):
    """Forget replaced credentials whose grace has ended, on every source; returns how many sources.

    Expired credentials are refused anyway; this deletes the Fluxo OAuth clients they name, so the
    token endpoint stops issuing tokens to them. Meant for a periodic task.
    """
    now = now or timezone.now()
    done = 0
    for source_id in Source.objects.filter(previous_auth_until__isnull=False).values_list("id", flat=True):
        with transaction.atomic():
            source = Source.objects.select_for_update().get(pk=source_id)
            live = source.previous_credentials(now)
            if live == source.previous_auth:
                continue
            gone = [e.get("oauth_application_id") for e in source.previous_auth if e not in live]
            source.set_previous_credentials(live)
            source.save(update_fields=["previous_auth", "previous_auth_until"])
            retire_fluxo_clients(gone, source.oauth_application_id)
            done += 1
    return done


def grace_summary(source, now=None):
    """The replaced credentials still accepted, for the admin and the setup pages; no secret in it.

    ``[{"legacy_auth", "label", "detail", "until", "last_used_at"}]``, newest first; ``last_used_at``
    is when a push last got in with them (ISO 8601, from Redis; None when never or unknown).
    """
    from oauth2_provider.models import get_application_model

    used = _previous_used(source.pk)
    summary = []
    for entry in source.previous_credentials(now):
        mode = entry["legacy_auth"]
        summary.append(
            {
                "legacy_auth": mode,
                "label": Source.LegacyAuth(mode).label if mode in Source.LegacyAuth.values else mode,
                "detail": _describe(entry, get_application_model()),
                "until": entry["until"],
                "last_used_at": used.get(_used_field(entry)),
            }
        )
    return summary


def _describe(entry, application_model):
    mode = entry["legacy_auth"]
    if mode == Source.LegacyAuth.TOKEN:
        prefixes = SourceToken.objects.filter(id__in=entry.get("token_ids", []), revoked_at=None)
        return "tokens " + ", ".join(f"{t.prefix}…" for t in prefixes) if prefixes else "no live token left"
    if mode == Source.LegacyAuth.OAUTH_FLUXO:
        client = application_model.objects.filter(pk=entry.get("oauth_application_id")).first()
        return f"client id {client.client_id}" if client else "client deleted"
    if mode == Source.LegacyAuth.OAUTH_JWT:
        return f"JWKS {entry.get('oauth_jwks_url')}, issuer {entry.get('oauth_issuer')}"
    return f"introspection {entry.get('oauth_introspection_url')}, client {entry.get('oauth_introspection_client_id')}"


def _previous_used_key(source_id):
    return f"fluxo:previous-auth-used:{source_id}"


def _used_field(entry):
    # One field per kept set (its kind and deadline), so an earlier grace's use never shows on a new one.
    return f"{entry['legacy_auth']}|{entry['until']}"


def _note_previous_used(source, entry):
    """Best effort, like the other counters: tells the admin whether the sender has moved over yet."""
    key, field, at = _previous_used_key(source.pk), _used_field(entry), timezone.now().isoformat()

    def build(pipe):
        pipe.hset(key, field, at)
        pipe.expire(key, 3600 * (MAX_AUTH_GRACE_HOURS + 24))

    announce._run("note a push on replaced credentials", build)


def _previous_used(source_id):
    try:
        raw = announce.client().hgetall(_previous_used_key(source_id))
    except (redis.RedisError, OSError):
        return {}  # Redis down: the page shows "unknown", never fails
    return {key.decode(): value.decode() for key, value in raw.items()}
