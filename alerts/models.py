"""Alert rules, their alerts, and the deliveries that tell people about them.

The evaluator (alerts.evaluate) reads the receivers' batch rows and writes alert state, window counts,
absence deadlines and the deliveries to make in the same transaction as its own progress
(EvaluatedBatch, EvaluatorFloor). Delivery tasks (alerts.delivery) claim Delivery rows with a
conditional update and record every attempt.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from streams.models import Source


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


class WatchList(models.Model):
    """A named list of values a rule can refer to: lead ids, e-mail addresses or Marketo list names."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    entries = models.TextField(blank=True, help_text="One value per line: a lead id, an e-mail address or a list name.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def values(self):
        """The entries as a set; e-mail addresses compare case-insensitively."""
        return {_fold(line) for line in self.entries.splitlines() if line.strip()}


def _fold(value):
    value = value.strip()
    return value.lower() if "@" in value else value


class Destination(models.Model):
    """Where alert messages go: an e-mail list, a Slack channel or a generic JSON webhook."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        SLACK = "slack", "Slack"
        WEBHOOK = "webhook", "Webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    email_to = models.TextField(blank=True, help_text="E-mail: the recipients, one per line or comma-separated.")
    url = models.URLField(
        max_length=500, blank=True, help_text="Slack: the incoming-webhook URL. Webhook: the URL Fluxo POSTs JSON to."
    )
    slack_bot_token = models.CharField(
        max_length=200, blank=True, help_text="Optional: a Slack bot token; messages are then edited when resolved."
    )
    slack_channel = models.CharField(max_length=100, blank=True, help_text="With a bot token: the channel id.")
    send_resolved = models.BooleanField(default=True, help_text="Also send a message when an alert resolves.")
    rate_limit_per_minute = models.PositiveIntegerField(
        default=30, help_text="At most this many messages a minute; the rest wait."
    )
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True, help_text="Set when Fluxo turned it off after a permanent error.")
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.get_kind_display()})"

    def recipients(self):
        return [a.strip() for a in self.email_to.replace(",", "\n").splitlines() if a.strip()]


class MuteWindow(models.Model):
    """A recurring time when a rule's messages wait (nights, a weekly maintenance slot), in a stated zone."""

    name = models.CharField(max_length=100, unique=True)
    time_zone = models.CharField(max_length=64, default="UTC", help_text="An IANA zone, e.g. Europe/Paris.")
    weekdays = models.JSONField(default=list, blank=True, help_text="0 = Monday … 6 = Sunday; empty means every day.")
    start_time = models.TimeField(help_text="Local time the window opens.")
    end_time = models.TimeField(help_text="Local time it closes; earlier than the start means the next day.")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Rule(models.Model):
    """An admin's rule. ``version`` goes up on every change: compiled rules are cached by (id, version)."""

    class Kind(models.TextChoices):
        MATCH = "match", "Match: an event matching conditions"
        WATCH = "watch", "Watch list: any activity of a watched lead"
        THRESHOLD = "threshold", "Threshold: more than N matching events in W minutes"
        ABSENCE = "absence", "Absence: no matching event for W minutes"
        HEALTH = "health", "Fluxo's own trouble: refused requests or 503s over a threshold"

    class Basis(models.TextChoices):
        RECEIVED = "received", "Received time (late deliveries do not fake an outage)"
        OCCURRED = "occurred", "Occurred time (when Marketo says it happened)"

    class GroupBy(models.TextChoices):
        NONE = "", "Nothing: one alert for the rule"
        SOURCE = "source", "Source"
        CAMPAIGN = "campaign", "Campaign"
        USER = "user", "User"
        LEAD = "lead", "Lead"
        TYPE = "type", "Event type"

    class Metric(models.TextChoices):
        SIGNATURE = "signature", "Requests refused for a bad signature"
        AUTH = "auth", "Requests refused for bad credentials"
        UNAVAILABLE = "unavailable", "503 answers (Fluxo could not store)"
        # Gauges, not counters: counted once per tick while the state holds (streams.registration_health).
        JOURNAL = "journal", "Adobe journal stopped (credentials, URL)"
        AT_RISK = "at_risk", "Adobe registration at risk, unstable or disabled"
        ARCHIVE = "archive", "A day of events not archived (Parquet) a day after it ended"

    name = models.CharField(max_length=150, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    sources = models.ManyToManyField(Source, blank=True, related_name="+", help_text="None chosen means every source.")
    conditions = models.JSONField(
        default=list,
        blank=True,
        help_text='All must hold. A list of {"path": …, "op": …, "value": …}; see the rules page for the syntax.',
    )
    watch_list = models.ForeignKey(WatchList, null=True, blank=True, on_delete=models.PROTECT, related_name="rules")
    group_by = models.CharField(max_length=10, choices=GroupBy.choices, blank=True, default="")
    threshold = models.PositiveIntegerField(default=0, help_text="Threshold and health: fires above this count.")
    recovery_threshold = models.PositiveIntegerField(
        null=True, blank=True, help_text="Resolves at or below this count (default: the threshold)."
    )
    window_minutes = models.PositiveIntegerField(default=5)
    for_minutes = models.PositiveIntegerField(default=0, help_text="The condition must hold this long before firing.")
    basis = models.CharField(max_length=10, choices=Basis.choices, default=Basis.RECEIVED)
    metric = models.CharField(max_length=12, choices=Metric.choices, blank=True)
    group_wait_seconds = models.PositiveIntegerField(
        default=30, help_text="Hold the first message this long, so a burst goes out as one message."
    )
    repeat_minutes = models.PositiveIntegerField(
        default=240, help_text="Remind while still firing and not acknowledged; 0 never."
    )
    destinations = models.ManyToManyField(Destination, blank=True, related_name="rules")
    mute_windows = models.ManyToManyField(MuteWindow, blank=True, related_name="rules")
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_alerting", "Can edit alert rules, destinations, silences and acknowledge alerts")]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        # Compiled rules are cached by (id, version): every save is a new version.
        if self.pk is not None:
            self.version = (Rule.objects.filter(pk=self.pk).values_list("version", flat=True).first() or 0) + 1
        super().save(*args, **kwargs)

    @property
    def resolves(self):
        return self.kind in (self.Kind.THRESHOLD, self.Kind.ABSENCE, self.Kind.HEALTH)

    @property
    def effective_recovery(self):
        return self.threshold if self.recovery_threshold is None else self.recovery_threshold


class RuleChange(models.Model):
    """Every change to a rule: who, when, and the fields before and after."""

    rule = models.ForeignKey(Rule, null=True, on_delete=models.SET_NULL, related_name="changes")
    rule_name = models.CharField(max_length=150)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=20)  # created, changed, deleted
    changes = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.rule_name} {self.action} by {self.user} at {self.at:%Y-%m-%d %H:%M}"


class Alert(models.Model):
    """One alert of a rule and group key.

    Threshold, absence and health alerts go pending → firing → resolved. Match and watch alerts fire
    and never resolve: one alert collects the matching events until its first message goes out
    (the grouping wait), so a burst becomes one message; the next match opens a new one.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"
        FIRED = "fired", "Fired"  # an event alert: it does not resolve
        INACTIVE = "inactive", "Inactive"  # a pending alert whose condition cleared before "for"

    OPEN = (State.PENDING, State.FIRING)

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="alerts")
    group_key = models.CharField(max_length=300, blank=True)
    labels = models.JSONField(default=dict)
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=10, choices=State.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    started_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    value = models.BigIntegerField(default=0, help_text="Threshold: the count at the last evaluation.")
    hits = models.PositiveIntegerField(default=0, help_text="Matching events collected.")
    samples = models.JSONField(default=list, help_text="A bounded sample of the matching events.")
    summary = models.TextField(blank=True)
    collecting_until = models.DateTimeField(
        null=True, blank=True, help_text="Event alerts: matches join this alert until then."
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_notified_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["state", "rule"]),
            models.Index(fields=["rule", "started_at"]),
            models.Index(fields=["started_at"]),
        ]
        constraints = [
            # At most one open alert per rule and group key: the evaluator's upserts rely on it.
            models.UniqueConstraint(
                fields=["rule", "group_key"], condition=Q(state__in=["pending", "firing"]), name="one_open_alert"
            ),
        ]

    def __str__(self):
        key = f" [{self.group_key}]" if self.group_key else ""
        return f"{self.rule}{key}: {self.state}"


class AlertEvent(models.Model):
    """The timeline of an alert: state changes, acknowledgement, silencing, reminders."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="timeline")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=20)
    detail = models.TextField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind}"


class Delivery(models.Model):
    """One message to one destination. Claimed with a conditional update; at least once."""

    class Reason(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"
        REMINDER = "reminder", "Reminder"
        TEST = "test", "Test"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CLAIMED = "claimed", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SUPPRESSED = "suppressed", "Suppressed"
        CANCELLED = "cancelled", "Cancelled"

    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="deliveries")
    reason = models.CharField(max_length=10, choices=Reason.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    due_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When a deliver task was last queued for it.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim = models.CharField(max_length=32, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True)
    external_id = models.CharField(max_length=200, blank=True, help_text="Slack: the message ts, for edits.")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "due_at"]),
            models.Index(fields=["destination", "sent_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self):
        return f"{self.reason} → {self.destination}: {self.status}"


class DeliveryAttempt(models.Model):
    """Every try of a delivery, with its outcome."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=12)  # sent, retry, permanent, abandoned
    status_code = models.IntegerField(null=True, blank=True)
    detail = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"{self.at:%H:%M:%S} {self.outcome}"


class Silence(models.Model):
    """Matchers plus a time range: matching alerts send nothing while it lasts (they still show)."""

    matchers = models.JSONField(
        default=list, help_text='All must hold: [{"label": "rule", "op": "=", "value": "…"}], ops = != =~ !~.'
    )
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    comment = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-ends_at"]
        indexes = [models.Index(fields=["ends_at"])]

    def __str__(self):
        return f"silence until {self.ends_at:%Y-%m-%d %H:%M}: {self.comment[:40]}"


# --- The evaluator's own state ---------------------------------------------------------------------------


class EvaluatedBatch(models.Model):
    """A batch row the evaluator has consumed, recorded in the same transaction as what it produced.

    Kept only above EvaluatorFloor. Not a foreign key: batch rows are pruned independently.
    """

    batch_id = models.BigIntegerField(primary_key=True)

    class Meta:
        verbose_name_plural = "evaluated batches"

    def __str__(self):
        return f"batch #{self.batch_id} evaluated"


class EvaluatorFloor(models.Model):
    """One row: every batch at or below ``batch_id`` is evaluated. Its lock serialises evaluators."""

    batch_id = models.BigIntegerField(default=0)
    counters = models.JSONField(default=dict, help_text="Health rules: the last Redis counter values seen.")

    def __str__(self):
        return f"evaluated through batch #{self.batch_id}"


class WindowCount(models.Model):
    """Matching events per threshold rule, group key and 10-second bucket: the windows' source of truth."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+")
    group_key = models.CharField(max_length=300, blank=True)
    bucket = models.DateTimeField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "group_key", "bucket"], name="windowcount_key")]
        indexes = [models.Index(fields=["bucket"])]

    def __str__(self):
        return f"{self.rule_id}/{self.group_key} {self.bucket}: {self.count}"


class Deadline(models.Model):
    """Absence rules: when each group key falls silent unless a matching event arrives first."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+")
    group_key = models.CharField(max_length=300, blank=True)
    labels = models.JSONField(default=dict)
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    last_seen = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "group_key"], name="deadline_key")]
        indexes = [models.Index(fields=["deadline"])]

    def __str__(self):
        return f"{self.rule_id}/{self.group_key} silent after {self.deadline}"
