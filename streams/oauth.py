"""OAuth 2 bearer tokens on the legacy push.

Three ways, chosen per source: JWTs from the customer's identity provider checked against its JWKS,
opaque tokens checked by the provider's token introspection (RFC 7662), or Fluxo itself as the
provider (django-oauth-toolkit's client-credentials endpoint; its tokens checked by lookup).
"""

from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from streams.models import Source


def check_bearer(source, token):
    if not token:
        return False
    if source.legacy_auth == Source.LegacyAuth.OAUTH_FLUXO:
        return _check_fluxo_token(source, token)
    return False


def _check_fluxo_token(source, token):
    if source.oauth_application_id is None:
        return False
    found = (
        get_access_token_model()
        .objects.filter(token=token, application_id=source.oauth_application_id, expires__gt=timezone.now())
        .exists()
    )
    return found
