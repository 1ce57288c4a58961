import hashlib
import re
import secrets

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

MUNCHKIN_ID_RE = re.compile(r"^[0-9]{3}-[A-Z]{3}-[0-9]{3}$")


def validate_munchkin_id(value):
    if not MUNCHKIN_ID_RE.match(value):
        raise ValidationError(f"{value!r} is not a Munchkin ID (like 123-ABC-456)")


def new_ingest_key():
    return secrets.token_urlsafe(12)


def hash_secret(secret):
    """The stored form of a token: its SHA-256 (tokens are long and random, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Stream(models.TextChoices):
    ACTIVITY = "activity", "Lead activity"
    AUDIT = "audit", "User audit"
    NOTIFICATION = "notification", "Notification"
    OTHER = "other", "Other"


class Source(models.Model):
    """One Marketo instance (Munchkin ID) and the credentials its streams arrive with."""

    class LegacyAuth(models.TextChoices):
        TOKEN = "token", "API token in the Authorization header"
        OAUTH_JWT = "oauth_jwt", "OAuth 2: JWTs from your identity provider (JWKS)"
        OAUTH_INTROSPECTION = "oauth_introspection", "OAuth 2: opaque tokens checked by introspection"
        OAUTH_FLUXO = "oauth_fluxo", "OAuth 2: Fluxo is the identity provider"

    name = models.CharField(max_length=100, unique=True)
    munchkin_id = models.CharField(max_length=11, unique=True, validators=[validate_munchkin_id])
    # The unguessable part of this source's receiver URLs.
    ingest_key = models.CharField(max_length=32, unique=True, default=new_ingest_key, editable=False)
    adobe_client_id = models.CharField(
        max_length=200, blank=True, help_text="Checked against recipientclientid on every event; blank: not checked."
    )
    pinned_public_keys = models.TextField(
        blank=True, help_text="PEM public keys to verify Adobe signatures with instead of fetching them."
    )
    legacy_auth = models.CharField(max_length=24, choices=LegacyAuth.choices, default=LegacyAuth.TOKEN)
    allow_query_token = models.BooleanField(
        default=False, help_text="Also accept the API token as ?token=… (URLs end up in logs: avoid)."
    )
    oauth_issuer = models.CharField(max_length=500, blank=True)
    oauth_audience = models.CharField(max_length=500, blank=True)
    oauth_jwks_url = models.URLField(max_length=500, blank=True)
    oauth_introspection_url = models.URLField(max_length=500, blank=True)
    oauth_introspection_client_id = models.CharField(max_length=200, blank=True)
    oauth_introspection_client_secret = models.CharField(max_length=500, blank=True)
    oauth_application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    viewer_groups = models.ManyToManyField(Group, blank=True, related_name="fluxo_sources")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.munchkin_id})"


class SourceToken(models.Model):
    """An API token for the legacy push. Two may be live per source, so a token rotates without downtime."""

    MAX_LIVE = 2

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="The first characters, to tell tokens apart.")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.prefix}… ({'revoked' if self.revoked_at else 'live'})"


class Batch(models.Model):
    """One committed request: the durable, commit-order-safe hand-off to live views and alerts.

    Written in the ingest transaction, so a consumer that records which batches it has processed
    can never miss one that committed late. ``counts`` is a list of
    ``[source_id, stream, type, activity_type_id, n]`` rows for what was newly stored.
    """

    received_at = models.DateTimeField(db_index=True)
    protocol = models.CharField(max_length=8)  # "io" or "legacy"
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    accepted = models.PositiveIntegerField()
    duplicates = models.PositiveIntegerField()
    counts = models.JSONField(default=list)
    meta = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self):
        return f"batch #{self.pk} ({self.protocol}, {self.accepted} new)"


class Event(models.Model):
    """One event of any stream: the raw payload, losslessly, plus normalised, indexed columns."""

    # No index of its own: (source, stream, received_at) below serves every lookup by source.
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="events", db_index=False)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="events")
    munchkin_id = models.CharField(max_length=64, blank=True)
    stream = models.CharField(max_length=12, choices=Stream.choices)
    type = models.CharField(max_length=255)
    # De-duplication keys, both global: the delivery's eventid, and for lead activities
    # "munchkinId|marketoGUID" (the I/O CloudEvent id is the former marketoGUID).
    # NULL (not "") where an event has no such key: unique constraints ignore NULLs. Unique through
    # Meta.constraints, not unique=True, which on PostgreSQL adds a second (LIKE) index to every key.
    event_uid = models.CharField(max_length=255, null=True)  # noqa: DJ001
    activity_key = models.CharField(max_length=300, null=True)  # noqa: DJ001
    received_at = models.DateTimeField()
    occurred_at = models.DateTimeField(null=True)
    activity_type_id = models.IntegerField(null=True)
    activity_type_name = models.CharField(max_length=255, blank=True)
    lead_id = models.CharField(max_length=64, blank=True)
    primary_attribute = models.TextField(blank=True)
    primary_attribute_id = models.CharField(max_length=64, blank=True)
    campaign_id = models.CharField(max_length=64, blank=True)
    campaign_name = models.CharField(max_length=255, blank=True)
    program_id = models.CharField(max_length=64, blank=True)
    program_name = models.CharField(max_length=255, blank=True)
    component_type = models.CharField(max_length=100, blank=True)
    component_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=100, blank=True)
    user_numeric = models.CharField(max_length=64, blank=True)
    user_email = models.CharField(max_length=254, blank=True)
    kind = models.CharField(max_length=100, blank=True)
    subtype = models.CharField(max_length=100, blank=True)
    # JSON text, not jsonb: PostgreSQL's jsonb refuses "\u0000", and an event must never be lost to it.
    details = models.TextField(blank=True, help_text="Notifications: the eventAction object, as JSON.")
    flags = models.JSONField(default=list)
    raw = models.TextField(help_text="The event exactly as delivered, as JSON.")

    class Meta:
        indexes = [
            models.Index(fields=["received_at", "id"]),
            models.Index(fields=["source", "stream", "received_at"]),
            models.Index(fields=["activity_type_id", "received_at"]),
            models.Index(fields=["lead_id", "occurred_at"]),
            models.Index(fields=["type"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["event_uid"], name="streams_event_uid_unique"),
            models.UniqueConstraint(fields=["activity_key"], name="streams_event_activity_key_unique"),
        ]

    def __str__(self):
        return f"{self.stream} {self.type} #{self.pk}"


class ValidationRequest(models.Model):
    """An Adobe asynchronous validation POST, kept so an admin can open its URL within 5 minutes."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="validation_requests")
    url = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)
    opened_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"validation for {self.source} at {self.received_at:%Y-%m-%d %H:%M:%S}"


class ApiToken(models.Model):
    """A personal token for the read API: revocable, optionally expiring, stored hashed."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="fluxo_api_tokens")
    name = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.user} {self.prefix}…"
