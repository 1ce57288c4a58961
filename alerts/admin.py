"""The alerting models in the admin. Rule changes are recorded (alerts.history) as on the rules page;
Slack secrets are never shown back (the destination form of the pages is reused)."""

import copy

from django import forms
from django.contrib import admin
from django.forms.models import construct_instance

from alerts import compiled, conditions, history
from alerts.forms import DestinationForm
from alerts.models import (
    Alert,
    AlertEvent,
    Deadline,
    Delivery,
    DeliveryAttempt,
    Destination,
    EvaluatedBatch,
    EvaluatorFloor,
    MuteWindow,
    Rule,
    RuleChange,
    Silence,
    WatchList,
    WindowCount,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """What Fluxo writes itself (history, the evaluator's state): shown, never edited by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class InternalAdmin(ReadOnlyAdmin):
    """Rows shown inline on their parent's page, or the evaluator's own bookkeeping: kept off the admin's
    index (no permission is reported for it), still at their URLs for whoever may view them."""

    def get_model_perms(self, request):
        return {}


# --- Rules -------------------------------------------------------------------------------------------------


class RuleAdminForm(forms.ModelForm):
    class Meta:
        model = Rule
        fields = "__all__"  # noqa: DJ007 (the admin decides what is shown)

    def clean(self):
        cleaned = super().clean()
        # Compile as the evaluator will, on a copy that has the form's values now (clean() runs before).
        candidate = construct_instance(self, copy.copy(self.instance))
        watch_lists = {w.name: w.values() for w in WatchList.objects.all()}
        sources = [s.pk for s in cleaned.get("sources") or []]
        try:
            compiled.compile_rule(candidate, watch_lists, source_ids=sources)
        except conditions.ConditionError as exc:
            self.add_error("conditions" if "conditions" in self.fields else None, str(exc))
        return cleaned


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleAdminForm
    list_display = ("name", "kind", "severity", "enabled", "version", "updated_at")
    list_filter = ("kind", "severity", "enabled")
    search_fields = ("name", "description")
    filter_horizontal = ("sources", "destinations", "mute_windows")
    readonly_fields = ("version", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        # The form has already written its values onto obj: the "before" is read from the database.
        stored = Rule.objects.filter(pk=obj.pk).first() if change else None
        request._fluxo_rule_before = history.snapshot(stored)
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)  # the many-to-many fields are saved here
        before = getattr(request, "_fluxo_rule_before", {})
        history.record(form.instance, request.user, "changed" if change else "created", before)

    def delete_model(self, request, obj):
        before = history.snapshot(obj)
        history.record(obj, request.user, "deleted", before)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            history.record(rule, request.user, "deleted", history.snapshot(rule))
        super().delete_queryset(request, queryset)


@admin.register(RuleChange)
class RuleChangeAdmin(ReadOnlyAdmin):
    list_display = ("rule_name", "action", "user", "at")
    list_filter = ("action",)
    search_fields = ("rule_name",)

    def has_delete_permission(self, request, obj=None):
        return False  # the audit trail of rules stays


# --- Destinations, watch lists, mute windows, silences --------------------------------------------------------


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    form = DestinationForm
    list_display = ("name", "kind", "enabled", "send_resolved", "rate_limit_per_minute", "disabled_reason")
    list_filter = ("kind", "enabled")
    search_fields = ("name",)
    readonly_fields = ("disabled_reason", "disabled_at", "created_at")

    def get_fields(self, request, obj=None):
        return [*DestinationForm.Meta.fields, *self.readonly_fields]


@admin.register(WatchList)
class WatchListAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "updated_at")
    search_fields = ("name", "entries")


@admin.register(MuteWindow)
class MuteWindowAdmin(admin.ModelAdmin):
    list_display = ("name", "time_zone", "weekdays", "start_time", "end_time")


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "starts_at", "ends_at", "created_by")
    readonly_fields = ("created_by", "created_at")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


# --- Alerts and deliveries (written by Fluxo) --------------------------------------------------------------


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "kind", "detail", "user")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "rule",
        "group_key",
        "state",
        "severity",
        "started_at",
        "fired_at",
        "resolved_at",
        "acknowledged_by",
    )
    list_filter = ("state", "severity", "rule")
    list_select_related = ("rule", "acknowledged_by")
    inlines = [AlertEventInline]


@admin.register(AlertEvent)
class AlertEventAdmin(InternalAdmin):
    list_display = ("alert", "at", "kind", "user")
    list_filter = ("kind",)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = ("at", "outcome", "status_code", "detail", "duration_ms")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("destination", "reason", "status", "due_at", "attempts", "sent_at", "alert")
    list_filter = ("status", "reason", "destination")
    list_select_related = ("destination", "alert__rule")
    inlines = [DeliveryAttemptInline]


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(InternalAdmin):
    list_display = ("delivery", "at", "outcome", "status_code", "duration_ms")
    list_filter = ("outcome",)


@admin.register(EvaluatedBatch, EvaluatorFloor, WindowCount, Deadline)
class EvaluatorStateAdmin(InternalAdmin):
    pass
