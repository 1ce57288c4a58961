"""Replacing a source's legacy-push credentials, with the grace period of the ones replaced.

Source.save() writes a row and nothing else (it refuses to change a credential column); a change of
credentials is saved here, with what it implies: the replaced set stays accepted in
Source.previous_auth until its deadline, and a Fluxo OAuth client nothing names any more is deleted.
Ending a grace period early, or when it has passed, is streams.auth's (end_grace, retire_expired_grace).
"""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_application_model

from streams.models import CREDENTIAL_COLUMNS, Source

# Without these a set of credentials accepts nothing (and is not worth keeping through a grace period).
_REQUIRED_CREDENTIALS = {
    "token": ("token_ids",),
    "oauth_jwt": ("oauth_jwks_url", "oauth_issuer", "oauth_audience"),
    "oauth_introspection": (
        "oauth_introspection_url",
        "oauth_introspection_client_id",
        "oauth_introspection_client_secret",
    ),
    "oauth_fluxo": ("oauth_application_id",),
}
# Replaced credential sets kept at once (besides the current one): bounds what a failing push costs.
MAX_PREVIOUS_CREDENTIALS = 2


def replace_credentials(source, update_fields=None):
    """Save ``source``, whose legacy-push credentials may have changed, keeping the replaced ones.

    In one transaction: the stored row is locked and read; when its credentials differ from the
    instance's, they are kept in ``previous_auth`` until ``auth_grace_hours`` from now (and
    ``previous_auth_until`` follows); the instance is saved (``update_fields``, when given, gains those
    two); then the Fluxo OAuth clients no kept set names any more are deleted. A new source, or
    ``update_fields`` naming no credential column, is saved as a plain save would.
    """
    if source.pk is None or (update_fields is not None and not CREDENTIAL_COLUMNS.intersection(update_fields)):
        source.save(update_fields=update_fields)
        return
    with transaction.atomic():
        retired = _keep_replaced(source)
        if update_fields is not None:
            update_fields = {*update_fields, "previous_auth", "previous_auth_until"}
        source.save(update_fields=update_fields, replacing_credentials=True)
        retire_fluxo_clients(retired, source.oauth_application_id)


def _keep_replaced(source):
    """Move the stored credentials into ``source.previous_auth`` when ``source`` replaces them.

    Returns the ids of Fluxo OAuth clients no longer accepted (to delete). A change while a grace
    period runs keeps the older set too (the sender may still be on either), up to
    MAX_PREVIOUS_CREDENTIALS; a set that becomes current again leaves the list.
    """
    stored = Source.objects.select_for_update().filter(pk=source.pk).first()
    if stored is None:
        return []
    before, after = stored.credentials(), source.credentials()
    if before == after:
        return []
    now = timezone.now()
    kept = [entry for entry in source.previous_credentials(now) if _without_deadline(entry) != after]
    if source.auth_grace_hours and _accepts_something(before):
        until = now + timedelta(hours=source.auth_grace_hours)
        kept.insert(0, {**before, "until": until.isoformat()})
    kept = kept[:MAX_PREVIOUS_CREDENTIALS]
    source.set_previous_credentials(kept)
    still = {entry.get("oauth_application_id") for entry in kept}
    replaced = {entry.get("oauth_application_id") for entry in [before, *stored.previous_auth]}
    return sorted(replaced - still - {None})


def _without_deadline(entry):
    return {name: value for name, value in entry.items() if name != "until"}


def _accepts_something(credentials):
    return all(credentials.get(name) for name in _REQUIRED_CREDENTIALS.get(credentials["legacy_auth"], ("-",)))


def retire_fluxo_clients(application_ids, keep=None):
    """Delete Fluxo OAuth clients (and so every token they issued), except the one still linked."""
    doomed = {pk for pk in application_ids if pk is not None and pk != keep}
    if doomed:
        get_application_model().objects.filter(pk__in=doomed).exclude(
            pk__in=Source.objects.filter(oauth_application_id__in=doomed).values("oauth_application_id")
        ).delete()
