"""Authentication of the legacy Marketo push: an API token, or an OAuth 2 bearer token."""

import hmac
import secrets

from django.utils import timezone

from streams.models import Source, SourceToken, hash_secret


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


def check_api_token(source, token):
    """Constant-time comparison against every live token of the source (two while rotating)."""
    if not token:
        return False
    presented = hash_secret(token)
    live = SourceToken.objects.filter(source=source, revoked_at=None).values_list("token_hash", flat=True)
    # compare_digest on each, no early exit, so timing tells nothing about which one matched.
    results = [hmac.compare_digest(presented, stored) for stored in live]
    return any(results)


def authenticate_push(request, source):
    """True when the push is authenticated for ``source``. Raises AuthUnavailable (503)."""
    token = presented_token(request, source)
    if source.legacy_auth == Source.LegacyAuth.TOKEN:
        return check_api_token(source, token)
    from streams import oauth

    return oauth.check_bearer(source, token)


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
