import hashlib
import re
import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
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


# What the legacy push checks, per kind of legacy auth; API tokens are the live SourceToken rows.
CREDENTIAL_FIELDS = {
    "token": (),
    "oauth_jwt": ("oauth_jwks_url", "oauth_issuer", "oauth_audience"),
    "oauth_introspection": (
        "oauth_introspection_url",
        "oauth_introspection_client_id",
        "oauth_introspection_client_secret",
        "oauth_issuer",
        "oauth_audience",
    ),
    "oauth_fluxo": ("oauth_application_id",),
}
# The columns of the legacy push's credentials, as update_fields may name them (a foreign key by its
# name or its attname). Changed only through streams.credentials.replace_credentials (Source.save).
CREDENTIAL_COLUMNS = frozenset(
    {"legacy_auth", "oauth_application"} | {f for fields in CREDENTIAL_FIELDS.values() for f in fields}
)
DEFAULT_AUTH_GRACE_HOURS = 24
MAX_AUTH_GRACE_HOURS = 24 * 30


def grace_ends(entry):
    """When a kept credential set (an element of Source.previous_auth) stops being accepted."""
    return datetime.fromisoformat(entry["until"])


_UNKNOWN = object()  # a credential column this instance has not read (Source._refuse_unkept_credentials)


class SourceQuerySet(models.QuerySet):
    def live(self):
        """The sources not being deleted: what the receivers, pages, the API and sockets see."""
        return self.filter(deleting_since__isnull=True)

    def delete(self):
        """Mark the sources for deletion in the background (streams.deletion), never a cascade through
        Django's collector over their events. Returns (sources newly marked, {})."""
        from streams import deletion  # streams.deletion imports this module

        return deletion.schedule(self), {}


class Source(models.Model):
    """One Marketo instance (Munchkin ID) and the credentials its streams arrive with.

    Changing the legacy push's credentials (the kind of legacy auth, its provider settings, Fluxo's
    OAuth client) keeps the replaced ones accepted for ``auth_grace_hours`` (``previous_auth``), as
    two live API tokens do for a rotation: a sender mid-migration keeps delivering. That change is
    saved with streams.credentials.replace_credentials; save() refuses it (see save()).
    """

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
    # The tenant boundary: an event carrying another source's Munchkin ID is filed under that source
    # only when an admin said this one delivers for it (one Adobe I/O registration for several
    # instances of one company); otherwise it stays here, flagged munchkin_foreign.
    delivers_for = models.ManyToManyField(
        "self",
        symmetrical=False,
        blank=True,
        related_name="delivered_by",
        help_text="Sources whose events this source's credentials may deliver (their Munchkin IDs are filed "
        "under them). Without a link, an event carrying another Munchkin ID stays with this source, flagged.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    auth_grace_hours = models.PositiveIntegerField(
        default=DEFAULT_AUTH_GRACE_HOURS,
        validators=[MaxValueValidator(MAX_AUTH_GRACE_HOURS)],
        verbose_name="grace period (hours)",
        help_text="When the legacy auth or its OAuth client changes, the replaced credentials keep working "
        "this many hours, so a sender mid-migration loses nothing. 0: they stop at once.",
    )
    # The replaced credential sets still accepted, newest first: credentials() dicts, each with its
    # "until" (ISO 8601). Secrets in them are as sensitive as the columns they were copied from.
    previous_auth = models.JSONField(default=list, blank=True, editable=False)
    # The latest "until" of previous_auth, or null: the receivers' cheap test for "any grace running".
    previous_auth_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when the source was deleted: it is gone for senders, pages and the API at once, and its
    # rows are removed in bounded background steps (streams.deletion), then this row.
    deleting_since = models.DateTimeField(null=True, blank=True, editable=False)

    objects = SourceQuerySet.as_manager()

    _filing = None
    # {attname: value} of the credential columns as this instance last read or wrote them: what save()
    # compares with. Always replaced, never updated in place (copy.copy of an instance shares it).
    _stored_credentials = None

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.munchkin_id})"

    def save(self, *args, replacing_credentials=False, **kwargs):
        """Write the row, and nothing else. Raises ValueError when that would change a credential
        column of a stored source: streams.credentials.replace_credentials saves such a change (it
        alone passes ``replacing_credentials``, once it has kept the replaced set)."""
        update_fields = kwargs.get("update_fields")
        if not replacing_credentials:
            self._refuse_unkept_credentials(update_fields)
        super().save(*args, **kwargs)
        self._note_stored_credentials(update_fields)

    def _refuse_unkept_credentials(self, update_fields):
        # A plain save of new credentials would drop the replaced ones at once, cutting off a sender
        # mid-migration without a word. The test compares with the values this instance read or wrote
        # (from_db, save, refresh_from_db), not with the row: no query on any save. It covers the
        # whole-row save (the admin's, most code's), which a test of update_fields alone would miss.
        # Not covered: QuerySet.update() and an instance built by hand with an existing pk.
        if self._state.adding:
            return  # a new source replaces nothing
        stored = self._stored_credentials or {}
        written = self._written_credentials(update_fields)
        changed = sorted(name for name in written if stored.get(name, _UNKNOWN) != getattr(self, name))
        if changed:
            raise ValueError(
                f"Source.save() would change {', '.join(changed)} of source {self.pk} without keeping the "
                "replaced credentials for the grace period: save it with "
                "streams.credentials.replace_credentials(source)"
            )

    def _written_credentials(self, update_fields):
        """The attnames of the credential columns among ``update_fields`` (None: every loaded one, as
        a whole-row save writes no deferred column)."""
        fields = [field for field in self._meta.concrete_fields if field.name in CREDENTIAL_COLUMNS]
        if update_fields is None:
            return [field.attname for field in fields if field.attname in self.__dict__]
        named = set(update_fields)
        return [field.attname for field in fields if field.name in named or field.attname in named]

    def _note_stored_credentials(self, fields):
        """Remember the credential columns among ``fields`` (None: every loaded one) as stored now."""
        loaded = {name: self.__dict__[name] for name in self._written_credentials(fields) if name in self.__dict__}
        self._stored_credentials = {**(self._stored_credentials or {}), **loaded}

    def delete(self, *args, **kwargs):
        """Mark for deletion in the background (streams.deletion); returns (1 or 0, {})."""
        return type(self).objects.filter(pk=self.pk).delete()

    def filing_map(self):
        """{Munchkin ID: source id} for the sources this one may file events under: itself and those it
        delivers for. Kept on the instance (the receivers reuse an instance for a few seconds)."""
        if self._filing is None:
            self._filing = {self.munchkin_id: self.id}
            for munchkin_id, source_id in self.delivers_for.values_list("munchkin_id", "id"):
                self._filing[munchkin_id] = source_id
        return self._filing

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._note_stored_credentials(None)
        return instance

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        self._filing = None
        super().refresh_from_db(using, fields, from_queryset)
        self._note_stored_credentials(fields)

    def credentials(self):
        """What the legacy push accepts now: the kind of auth and the settings it checks (secrets too).

        For API tokens, the ids of the live tokens (one query).
        """
        found = {"legacy_auth": self.legacy_auth}
        found.update({name: getattr(self, name) for name in CREDENTIAL_FIELDS.get(self.legacy_auth, ())})
        if self.legacy_auth == self.LegacyAuth.TOKEN:
            live = SourceToken.objects.filter(source_id=self.pk, revoked_at=None).values_list("id", flat=True)
            found["token_ids"] = sorted(live) if self.pk else []
        return found

    def previous_credentials(self, now=None):
        """The replaced credential sets still accepted at ``now``, newest first."""
        now = now or timezone.now()
        if self.previous_auth_until is None or self.previous_auth_until <= now:
            return []
        return [entry for entry in self.previous_auth if grace_ends(entry) > now]

    def set_previous_credentials(self, entries):
        self.previous_auth = entries
        self.previous_auth_until = max((grace_ends(entry) for entry in entries), default=None)


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
    # DO_NOTHING: a source's rows go in bounded background steps, never through Django's collector.
    source = models.ForeignKey(Source, on_delete=models.DO_NOTHING, related_name="+")
    accepted = models.PositiveIntegerField()
    duplicates = models.PositiveIntegerField()
    counts = models.JSONField(default=list)
    meta = models.JSONField(default=dict, blank=True)
    # The lowest id among the events this batch stored (they all have its received_at): the read API
    # finds where a window of received time starts in the ids from the window's batches, a few hundred
    # rows an hour, instead of from every event in it (streams.api._since_floor). NULL on batches
    # stored before the column existed; a window holding one of those is read from its events.
    first_event_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self):
        return f"batch #{self.pk} ({self.protocol}, {self.accepted} new)"


def received_window(batch_ids):
    """(first, last) received time of these batches, or (None, None) when none of them exists. An
    event has its batch's received time, so this bounds the events they stored: on PostgreSQL, a read
    that names it looks only into the partitions that can hold them, not into every one's index."""
    found = Batch.objects.filter(id__in=batch_ids).aggregate(
        first=models.Min("received_at"), last=models.Max("received_at")
    )
    return found["first"], found["last"]


class EventQuerySet(models.QuerySet):
    def of_batches(self, batch_ids):
        """The events these batches stored, bounded by the batches' received times (received_window)."""
        first, last = received_window(batch_ids)
        if first is None:
            return self.none()
        return self.filter(batch_id__in=batch_ids, received_at__gte=first, received_at__lte=last)


class Event(models.Model):
    """One event of any stream: the raw payload, losslessly, plus normalised, indexed columns."""

    # No index of its own: (source, stream, received_at) below serves every lookup by source.
    # DO_NOTHING: a source's events go in bounded background steps, never through Django's collector.
    # No database constraint on PostgreSQL (migration 0013): its check was a trigger and a locking query
    # per stored event; the store's statement takes the same lock once per source and refuses a source
    # that is gone (streams.store, _STORE_SQL). SQLite keeps the constraint.
    source = models.ForeignKey(
        Source, on_delete=models.DO_NOTHING, related_name="events", db_index=False, db_constraint=False
    )
    # No database constraint: on PostgreSQL both tables are partitioned, and a foreign key can only
    # point at a partitioned table's full primary key (id, received_at). Retention drops a batch's
    # partition together with its events' (the same received_at, the same range).
    batch = models.ForeignKey(Batch, on_delete=models.DO_NOTHING, db_constraint=False, related_name="events")
    munchkin_id = models.CharField(max_length=64, blank=True)
    stream = models.CharField(max_length=12, choices=Stream.choices)
    type = models.CharField(max_length=255)
    # De-duplication keys, each unique within the source an event is filed under (so one tenant can
    # never shadow another's events by sending their ids first): the delivery's eventid, and for lead
    # activities "munchkinId|marketoGUID" (the I/O CloudEvent id is the former marketoGUID).
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

    objects = EventQuerySet.as_manager()

    class Meta:
        # On PostgreSQL the table is partitioned on received_at (streams.partitions) and the two
        # unique constraints below do not exist there: de-duplication is EventKey's. SQLite keeps a
        # plain table with them.
        indexes = [
            models.Index(fields=["received_at", "id"]),
            models.Index(fields=["source", "stream", "received_at"]),
            models.Index(fields=["activity_type_id", "received_at"]),
            models.Index(fields=["lead_id", "occurred_at"]),
            models.Index(fields=["type"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["source", "event_uid"], name="streams_event_source_uid_unique"),
            models.UniqueConstraint(fields=["source", "activity_key"], name="streams_event_source_activity_key_unique"),
        ]

    def __str__(self):
        return f"{self.stream} {self.type} #{self.pk}"


class EventKey(models.Model):
    """A de-duplication key of a stored event, on PostgreSQL: the MD5 of ``a<activity key>`` for a lead
    activity, else of ``e<eventid>`` (streams.store), unique within the source the event is filed under
    and the UTC day it occurred.

    Partitioned on ``day`` (streams.partitions): every redelivery of an event carries the same
    occurred time, so it meets its key in one partition, and the partition being written stays small
    however many events are stored. Kept for streams.partitions.dedup_horizon(). Unused on SQLite,
    which de-duplicates on the events table's own unique constraints.
    """

    pk = models.CompositePrimaryKey("source_id", "hash", "day")
    source = models.ForeignKey(Source, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    hash = models.UUIDField()
    day = models.DateField()
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"key {self.hash} of source {self.source_id} ({self.day})"


class ForeignMunchkin(models.Model):
    """A Munchkin ID that a source's credentials delivered events for without a link to its source.

    The events themselves stay with the receiving source, flagged munchkin_foreign; this short list
    (at most MAX_PER_SOURCE per source) tells an admin which ones to link on the Setup page.
    """

    MAX_PER_SOURCE = 50

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="foreign_munchkins")
    munchkin_id = models.CharField(max_length=64)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["source", "munchkin_id"], name="streams_foreign_munchkin_unique"),
        ]
        verbose_name = "foreign Munchkin ID"
        verbose_name_plural = "foreign Munchkin IDs"

    def __str__(self):
        return f"{self.munchkin_id} via {self.source}"


class ValidationRequest(models.Model):
    """An Adobe asynchronous validation POST, kept so an admin can open its URL within 5 minutes."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="validation_requests")
    url = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)
    opened_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]
        # Serves the per-source bound: the newest rows of one source, and deleting those below them.
        indexes = [models.Index(fields=["source", "id"], name="streams_validation_source_id")]

    def __str__(self):
        return f"validation for {self.source} at {self.received_at:%Y-%m-%d %H:%M:%S}"

    @property
    def from_adobe(self):
        """True when the URL is Adobe's validation address: only then do pages show it as a link."""
        from streams.validation import is_adobe_validation_url  # streams.validation imports this module

        return is_adobe_validation_url(self.url)


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
        verbose_name = "API token"
        verbose_name_plural = "API tokens"

    def __str__(self):
        return f"{self.user} {self.prefix}…"


class ArchivedDay(models.Model):
    """One source's events of one UTC day (received time) written to the archive, or the attempt to.

    ``checked_at`` is set only once the file was re-read and agreed with the database (row count,
    size), so retention may drop a day when, and only when, its row here is checked (streams.archive).
    """

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="archived_days")
    day = models.DateField()
    rows = models.PositiveBigIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    location = models.TextField(blank=True, help_text="A path or s3://bucket/key; empty for a day without events.")
    checked_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the last attempt failed; empty once archived.")
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day", "source"]
        constraints = [models.UniqueConstraint(fields=["source", "day"], name="streams_archived_day_unique")]

    def __str__(self):
        return f"{self.source_id} {self.day}: {'archived' if self.checked_at else 'not archived'}"


class ErasureRecord(models.Model):
    """One lead's personal data erased on request (streams.erasure): who, what and when.

    Kept after the data and after its source (hence the name copied): the proof that a request was
    carried out. Holds no personal data beyond Marketo's lead id.
    """

    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_name = models.CharField(max_length=100)
    lead_id = models.CharField(max_length=64)
    erased_by = models.CharField(max_length=150, help_text='The admin\'s username, or "command".')
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    erased_at = models.DateTimeField(default=timezone.now)
    events_removed = models.PositiveIntegerField(default=0)
    samples_scrubbed = models.PositiveIntegerField(default=0, help_text="Alert samples and timeline lines changed.")

    class Meta:
        ordering = ["-erased_at", "-id"]

    def __str__(self):
        return f"lead {self.lead_id} of {self.source_name} erased by {self.erased_by} ({self.erased_at:%Y-%m-%d %H:%M})"


class AdobeRegistration(models.Model):
    """An Adobe I/O Events registration: a webhook Adobe delivers to, and the journal that keeps its events 7 days.

    Its events are filed as the receiving ``source``'s webhook events are: under the source, or a source it
    delivers for (``Source.delivers_for``). A customer may have one registration per stream.
    """

    class Mode(models.TextChoices):
        ON_DEMAND = "on_demand", "backfills only, when started"
        SAFETY_NET = "safety_net", "polled continuously next to the webhook"
        ONLY = "only", "polled continuously, the only transport"

    class Journal(models.TextChoices):
        IDLE = "idle", "idle"
        RUNNING = "running", "running"
        STOPPED = "stopped", "stopped"

    name = models.CharField(max_length=100, unique=True)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="adobe_registrations")
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.ON_DEMAND)
    journal_url = models.URLField(
        max_length=500, blank=True, help_text="Shown in Adobe's Developer Console, e.g. https://events-va6.adobe.io/…"
    )
    registration_path = models.CharField(
        max_length=300,
        blank=True,
        help_text="consumerOrgId/projectId/workspaceId/registrationId (the project JSON's ids), to poll its state.",
    )
    ims_client_id = models.CharField("IMS client id", max_length=200, blank=True)
    ims_org_id = models.CharField("IMS org id", max_length=200, blank=True, help_text="…@AdobeOrg")
    scopes = models.CharField(max_length=500, blank=True, help_text="Comma-separated, as in the Developer Console.")
    # Fernet-encrypted with FLUXO_SECRETS_KEY (streams.secretbox): it must be recoverable to get tokens.
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    journal_state = models.CharField(max_length=8, choices=Journal.choices, default=Journal.IDLE, editable=False)
    stopped_reason = models.TextField(blank=True, editable=False)
    stopped_at = models.DateTimeField(null=True, blank=True, editable=False)
    # One journal job per registration at a time: a lease, taken by a conditional update, renewed per page.
    leased_until = models.DateTimeField(null=True, blank=True, editable=False)
    lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    # The registration API's answer (webhook_status, enabled), when credentials allow asking.
    adobe_webhook_status = models.CharField(max_length=32, blank=True, editable=False)
    adobe_enabled = models.BooleanField(null=True, editable=False)
    adobe_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    adobe_check_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "Adobe registration"

    def __str__(self):
        return self.name

    @property
    def has_credentials(self):
        return bool(self.ims_client_id and self.client_secret_encrypted and self.journal_url)


class JournalCursor(models.Model):
    """Where a registration's journal reading stands: saved in the transaction that stores its page's events.

    The continuous poller and backfills each have their own (``kind``), so a backfill never moves the
    poller's position, nor the other way round.
    """

    class Kind(models.TextChoices):
        CONTINUOUS = "continuous", "continuous"
        BACKFILL = "backfill", "backfill"

    registration = models.ForeignKey(AdobeRegistration, on_delete=models.CASCADE, related_name="cursors")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    position = models.TextField(blank=True, help_text="The last position read (since=…); empty: not started.")
    next_url = models.TextField(blank=True, help_text="Adobe's Link rel=next, followed as Adobe asks.")
    start = models.CharField(max_length=40, blank=True, help_text="How it began: oldest, latest or seek=-PT…")
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(null=True, blank=True)
    caught_up_at = models.DateTimeField(null=True, blank=True, help_text="The last time the journal's end was reached.")
    finished_at = models.DateTimeField(null=True, blank=True)
    entries_read = models.BigIntegerField(default=0)
    events_stored = models.BigIntegerField(default=0)
    malformed = models.BigIntegerField(default=0)
    newest_event_at = models.DateTimeField(null=True, blank=True)
    # After a 204 at the journal's end, Adobe's retry-after: the poller waits until then.
    not_before = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registration", "kind"], name="streams_journal_cursor_unique")]

    def __str__(self):
        return f"{self.registration} {self.kind} at {self.position or 'the start'}"


class JournalGap(models.Model):
    """A stretch of a registration's events that may be lost: its position expired (410) before it was read."""

    registration = models.ForeignKey(AdobeRegistration, on_delete=models.CASCADE, related_name="gaps")
    kind = models.CharField(max_length=10)
    found_at = models.DateTimeField(default=timezone.now)
    expired_position = models.TextField(blank=True)
    last_read_at = models.DateTimeField(null=True, blank=True, help_text="When the expired position was read.")
    resumed_position = models.TextField(blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-found_at"]

    def __str__(self):
        return f"gap in {self.registration} found {self.found_at:%Y-%m-%d %H:%M}"
