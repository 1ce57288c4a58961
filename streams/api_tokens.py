"""Personal API tokens for the read API: random, shown once, stored hashed, revocable, expiring."""

import hmac
import secrets
from datetime import timedelta

from django.utils import timezone

from streams.models import ApiToken, hash_secret

PREFIX = "fxp_"
# "Last used" is shown to the minute: a client paging through events is not one write a request.
LAST_USED_PRECISION = timedelta(minutes=1)


def assign_new_secret(token):
    """Give an unsaved ApiToken a fresh secret; return the secret (the only time it is seen)."""
    secret = PREFIX + secrets.token_urlsafe(32)
    token.token_hash = hash_secret(secret)
    token.prefix = secret[len(PREFIX) :][:6]
    return secret


def create(user, name="", expires_at=None):
    token = ApiToken(user=user, name=name, expires_at=expires_at)
    secret = assign_new_secret(token)
    token.save()
    return token, secret


def user_for(secret):
    """The active user a live token belongs to, or None. Looked up by hash, then compared in constant time."""
    if not secret:
        return None
    digest = hash_secret(secret)
    token = ApiToken.objects.select_related("user").filter(token_hash=digest, revoked_at=None).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    now = timezone.now()
    if (token.expires_at and token.expires_at <= now) or not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        ApiToken.objects.filter(id=token.id).update(last_used_at=now)
    return token.user
