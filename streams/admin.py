import copy
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from streams import (
    announce,
    auth,
    deletion,
    endpoints,
    erasure,
    journal,
    links,
    oauth,
    partitions,
    registration_health,
    secretbox,
)
from streams.auth import issue_api_token
from streams.credentials import replace_credentials
from streams.models import (
    AdobeRegistration,
    ApiToken,
    ErasureRecord,
    Event,
    ForeignMunchkin,
    JournalCursor,
    JournalGap,
    Source,
    SourceToken,
    ValidationRequest,
)
from streams.tasks import journal_backfill, journal_registration_states

# Adobe disables a registration whose validationUrl is not opened within 5 minutes.
VALIDATION_TTL = timedelta(minutes=5)


class SourceTokenInline(admin.TabularInline):
    model = SourceToken
    fields = ("prefix", "created_at", "revoked_at")
    readonly_fields = ("prefix", "created_at")
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # tokens are issued by the action, which shows the secret once


class SourceForm(forms.ModelForm):
    # A provider's URL typed without a scheme is meant as https (Django 6's default, stated now).
    oauth_jwks_url = forms.URLField(max_length=500, required=False, assume_scheme="https")
    oauth_introspection_url = forms.URLField(max_length=500, required=False, assume_scheme="https")
    # Write-only: the page never carries the stored secret back; a blank field keeps it.
    oauth_introspection_client_secret = forms.CharField(
        max_length=500,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="OAuth introspection client secret",
        help_text="Never shown. Leave blank to keep the current secret (if any); type a new one to replace it.",
    )
    clear_oauth_introspection_client_secret = forms.BooleanField(
        required=False, label="Remove the stored introspection client secret"
    )

    class Meta:
        model = Source
        fields = "__all__"  # noqa: DJ007 (the admin decides what is shown)

    def clean_oauth_introspection_client_secret(self):
        secret = self.cleaned_data["oauth_introspection_client_secret"]
        if secret == "" and self.instance.pk is not None:
            return self.instance.oauth_introspection_client_secret
        return secret

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_oauth_introspection_client_secret"):
            cleaned["oauth_introspection_client_secret"] = ""
        # self.instance gets the form's values only after clean(): check a copy that has them now.
        candidate = forms.models.construct_instance(self, copy.copy(self.instance))
        # What the chosen legacy auth needs, and the SSRF guard on the URLs an admin types.
        for field, message in oauth.configuration_errors(candidate).items():
            self.add_error(field if field in self.fields else None, message)
        return cleaned


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = (
        "name", "munchkin_id", "legacy_auth", "previous_auth_until", "adobe_client_id", "setup_link", "deletion"
    )  # fmt: skip
    search_fields = ("name", "munchkin_id")
    filter_horizontal = ("viewer_groups", "delivers_for")
    readonly_fields = ("previous_credentials", "deleting_since")
    inlines = [SourceTokenInline]
    actions = ["issue_token", "make_fluxo_oauth_provider", "end_auth_grace", "erase_lead"]

    def save_model(self, request, obj, form, change):
        # The form may change the legacy auth or its settings: the replaced ones keep working for the
        # source's grace period (a plain save would refuse the change).
        replace_credentials(obj)

    @admin.display(description="Deletion")
    def deletion(self, obj):
        return f"being deleted since {obj.deleting_since:%Y-%m-%d %H:%M}" if obj.deleting_since else ""

    def get_deleted_objects(self, objs, request):
        """What the confirmation page lists: the sources and an estimate of their events, never the
        collector's walk over every related row (millions of events, rollups by the thousand)."""
        lines = []
        for source in objs:
            n, exact = deletion.estimated_events(source.pk)
            about = "" if exact else ("about " if connection.vendor == "postgresql" else "more than ")
            lines.append(f"{source}: its {about}{n:,} events will be removed in the background")
        return lines, {Source._meta.verbose_name_plural: len(objs)}, set(), []

    def delete_model(self, request, obj):
        obj.delete()  # Source.delete() marks it; streams.deletion removes the rows
        self.message_user(request, f"{obj.name}: its events and everything else about it are being removed.")

    def delete_queryset(self, request, queryset):
        marked = queryset.delete()[0]
        self.message_user(request, f"{marked} source(s) marked: their rows are being removed in the background.")

    @admin.action(description="Erase one lead's personal data (choose one source)")
    def erase_lead(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one source to erase a lead of.", messages.ERROR)
            return None
        return redirect("admin:streams_source_erase_lead", queryset.get().pk)

    @admin.display(description="Replaced credentials still accepted")
    def previous_credentials(self, obj):
        return _grace_text(auth.grace_summary(obj)) if obj.pk else "-"

    @admin.display(description="Setup")
    def setup_link(self, obj):
        setup = reverse("admin:streams_source_setup", args=[obj.pk])
        return format_html('<a href="{}">URLs and settings for Adobe</a>', setup)

    @admin.action(description="Issue a new API token (the oldest of three live ones is revoked)")
    def issue_token(self, request, queryset):
        for source in queryset:
            token = issue_api_token(source)
            self.message_user(request, f"New API token for {source.name} (shown once): {token}", messages.WARNING)

    @admin.action(
        description="Make Fluxo the OAuth provider (new client id and secret; "
        "the replaced credentials work for the grace period)"
    )
    def make_fluxo_oauth_provider(self, request, queryset):
        token_url = endpoints.absolute(reverse("oauth2_token"), request)
        for source in queryset:
            client_id, secret = oauth.create_fluxo_client(source, replace=True)
            self.message_user(
                request,
                f"{source.name}: give Marketo the token URL {token_url}, client id {client_id} "
                f"and client secret (shown once) {secret}",
                messages.WARNING,
            )

    @admin.action(description="End the grace period now (replaced credentials stop working)")
    def end_auth_grace(self, request, queryset):
        for source in queryset:
            auth.end_grace(source)
        self.message_user(request, f"Only the current credentials are accepted now ({queryset.count()} sources).")

    def get_urls(self):
        setup = self.admin_site.admin_view(self.setup_view)
        erase = self.admin_site.admin_view(self.erase_lead_view)
        return [
            path("<int:pk>/setup/", setup, name="streams_source_setup"),
            path("<int:pk>/erase-lead/", erase, name="streams_source_erase_lead"),
            *super().get_urls(),
        ]

    def erase_lead_view(self, request, pk):
        """A lead's personal data erased on request, after a confirmation: streams.erasure."""
        if not (self.has_delete_permission(request) and request.user.has_perm("streams.delete_event")):
            raise PermissionDenied
        source = get_object_or_404(Source, pk=pk)
        form = EraseLeadForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            record = erasure.erase_lead(
                source,
                form.cleaned_data["lead_id"],
                erased_by=request.user.get_username(),
                user=request.user,
                emails=form.cleaned_data["emails"],
            )
            self.message_user(
                request,
                f"Lead {record.lead_id} of {source.name} erased: {record.events_removed} event(s) removed, "
                f"{record.samples_scrubbed} alert sample(s) or line(s) scrubbed.",
            )
            return redirect("admin:streams_erasurerecord_change", record.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Erase a lead's personal data from {source.name}",
            "source": source,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/streams/source/erase_lead.html", context)

    def setup_view(self, request, pk):
        source = get_object_or_404(Source, pk=pk)
        urls = {name: endpoints.absolute(p, request) for name, p in endpoints.paths(source).items()}
        pending_since = timezone.now() - VALIDATION_TTL
        context = {
            **self.admin_site.each_context(request),
            "title": f"Setup of {source.name}",
            "source": source,
            "urls": urls,
            "token_url": endpoints.absolute(reverse("oauth2_token"), request),
            "pending": source.validation_requests.filter(received_at__gte=pending_since, opened_at=None),
            "validations": source.validation_requests.all()[:10],
            "rejections": announce.recent_rejections(source.id, 20),
            "counters": announce.counters(source.id),
            "grace": auth.grace_summary(source),
            "tenancy": links.tenancy(source),
            "registrations": _registrations(source),
            "gaps": registration_health.gap_report(source),
            "error_hours": registration_health.error_hours(source),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/streams/source/setup.html", context)


def _registrations(source):
    found = []
    for registration in source.adobe_registrations.all():
        found.append(
            {
                "registration": registration,
                "health": registration_health.estimate(registration),
                "cursors": list(registration.cursors.order_by("kind")),
                "gaps": list(registration.gaps.all()[:5]),
            }
        )
    return found


def _grace_text(summary):
    if not summary:
        return "none"
    return "; ".join(
        f"{item['label']} ({item['detail']}) until {item['until']}, last used {item['last_used_at'] or 'never'}"
        for item in summary
    )


class EraseLeadForm(forms.Form):
    lead_id = forms.CharField(max_length=64, label="Marketo lead id")
    emails = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: the lead's e-mail addresses, one a line, to scrub too (those in its events are found).",
    )
    confirm = forms.BooleanField(label="Delete this lead's events of this source now; this cannot be undone")

    def clean_lead_id(self):
        lead_id = self.cleaned_data["lead_id"].strip()
        if not lead_id:
            raise forms.ValidationError("a lead id is required")
        return lead_id

    def clean_emails(self):
        return [line.strip() for line in self.cleaned_data["emails"].splitlines() if line.strip()]


class CappedCountPaginator(Paginator):
    """Counts at most CAP + 1 rows (a LIMIT subquery), never the whole event table; ``count_label``
    says "more than 10,000", or on PostgreSQL with no filter the statistics' estimate of all rows."""

    CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list[: self.CAP + 1].count()

    @cached_property
    def count_label(self):
        if self.count <= self.CAP:
            return f"{self.count:,}"
        if not self.object_list.query.has_filters() and partitions.enabled():
            return f"about {_estimated_rows('streams_event'):,}"
        return f"more than {self.CAP:,}"


def _estimated_rows(table):
    """The planner's row estimate of a partitioned table: reltuples summed over its partitions."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [table],
        )
        return cursor.fetchone()[0]


class ReceivedFilter(admin.SimpleListFilter):
    """A received-time window: PostgreSQL then reads only the partitions it overlaps."""

    title = "received"
    parameter_name = "received"
    WINDOWS = {"1h": ("Last hour", timedelta(hours=1)), "24h": ("Last 24 hours", timedelta(days=1)),
               "7d": ("Last 7 days", timedelta(days=7)), "30d": ("Last 30 days", timedelta(days=30))}  # fmt: skip

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request, queryset):
        if self.value() in self.WINDOWS:
            return queryset.filter(received_at__gte=timezone.now() - self.WINDOWS[self.value()][1])
        return queryset


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Read-only, and sized for hundreds of millions of rows: a capped count (CappedCountPaginator), no
    facet counts, filters and a search that use indexes (source, stream, received time; the exact lead
    id), newest first along the (received_at, id) index."""

    list_display = ("id", "received_at", "source", "stream", "type", "lead_id", "occurred_at")
    list_filter = (ReceivedFilter, "stream", "source")
    search_fields = ("lead_id__exact",)
    search_help_text = "An exact Marketo lead id."
    ordering = ("-received_at", "-id")
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ("source",)
    actions = None  # "select all" then delete would run Django's collector over millions of rows

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # events go by retention, with their source, or by erase_lead


@admin.register(ForeignMunchkin)
class ForeignMunchkinAdmin(admin.ModelAdmin):
    list_display = ("munchkin_id", "source", "first_seen_at", "last_seen_at")
    list_filter = ("source",)
    readonly_fields = ("source", "munchkin_id", "first_seen_at", "last_seen_at")

    def has_add_permission(self, request):
        return False


@admin.register(ValidationRequest)
class ValidationRequestAdmin(admin.ModelAdmin):
    list_display = ("source", "received_at", "opened_at", "outcome")
    readonly_fields = ("source", "url", "received_at", "opened_at", "outcome")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = ("prefix", "last_used_at")
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        queryset.filter(revoked_at=None).update(revoked_at=timezone.now())

    def save_model(self, request, obj, form, change):
        if not change:
            from streams.api_tokens import assign_new_secret

            secret = assign_new_secret(obj)
            self.message_user(request, f"The token (shown once): {secret}", messages.WARNING)
        super().save_model(request, obj, form, change)


@admin.register(ErasureRecord)
class ErasureRecordAdmin(admin.ModelAdmin):
    """Who erased which lead's data, and when: a record to show, never to edit."""

    list_display = ("erased_at", "source_name", "lead_id", "erased_by", "events_removed", "samples_scrubbed")
    list_filter = ("source_name",)
    search_fields = ("lead_id",)
    readonly_fields = [f.name for f in ErasureRecord._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AdobeRegistrationForm(forms.ModelForm):
    journal_url = forms.URLField(max_length=500, required=False, assume_scheme="https")
    # Write-only: encrypted on save (FLUXO_SECRETS_KEY), never carried back to the page; blank keeps it.
    client_secret = forms.CharField(
        max_length=500,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Never shown. Leave blank to keep the current secret (if any); type a new one to replace it.",
    )

    class Meta:
        model = AdobeRegistration
        fields = "__all__"  # noqa: DJ007 (the admin decides what is shown)

    def clean_journal_url(self):
        url = self.cleaned_data["journal_url"]
        if url:
            try:
                journal.check_journal_url(url)
            except journal.Stopped as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def clean_client_secret(self):
        secret = self.cleaned_data["client_secret"]
        if secret:
            try:
                return secretbox.seal(secret)
            except secretbox.NoKey as exc:
                raise forms.ValidationError(str(exc)) from None
        return ""

    def save(self, commit=True):
        if self.cleaned_data.get("client_secret"):
            self.instance.client_secret_encrypted = self.cleaned_data["client_secret"]
        return super().save(commit)


class JournalCursorInline(admin.TabularInline):
    model = JournalCursor
    fields = (
        "kind",
        "start",
        "entries_read",
        "events_stored",
        "malformed",
        "updated_at",
        "caught_up_at",
        "finished_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class JournalGapInline(admin.TabularInline):
    model = JournalGap
    fields = ("kind", "found_at", "last_read_at", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AdobeRegistration)
class AdobeRegistrationAdmin(admin.ModelAdmin):
    form = AdobeRegistrationForm
    list_display = ("name", "source", "mode", "journal_state", "adobe_webhook_status", "adobe_enabled", "has_secret")
    list_filter = ("mode", "journal_state")
    readonly_fields = (
        "journal_state",
        "stopped_reason",
        "stopped_at",
        "adobe_webhook_status",
        "adobe_enabled",
        "adobe_checked_at",
        "adobe_check_error",
    )
    inlines = [JournalCursorInline, JournalGapInline]
    actions = ["backfill_from_oldest", "resume_backfill", "resume_journal", "check_adobe_state"]

    @admin.display(boolean=True, description="Client secret stored")
    def has_secret(self, obj):
        return bool(obj.client_secret_encrypted)

    @admin.action(description="Backfill from the oldest event the journal keeps (7 days)")
    def backfill_from_oldest(self, request, queryset):

        for registration in queryset:
            journal_backfill.delay_on_commit(registration.id, "oldest")
        self.message_user(request, f"Backfill started for {queryset.count()} registration(s); see their Setup page.")

    @admin.action(description="Resume the last backfill from its cursor")
    def resume_backfill(self, request, queryset):

        for registration in queryset:
            journal_backfill.delay_on_commit(registration.id)
        self.message_user(request, f"Backfill resumed for {queryset.count()} registration(s).")

    @admin.action(description="Resume a stopped journal (after fixing its credentials or URL)")
    def resume_journal(self, request, queryset):
        for registration in queryset:
            journal.resume(registration.id)
        self.message_user(request, f"{queryset.count()} journal(s) may run again.")

    @admin.action(description="Ask Adobe for the registrations' state now (in the background)")
    def check_adobe_state(self, request, queryset):

        journal_registration_states.delay_on_commit()  # no call to Adobe inside a request
        self.message_user(request, "Asked; the state shows here and on the Setup page in a moment.")
