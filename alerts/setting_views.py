"""Where alerts go and when they stay quiet: destinations, silences, mute windows and watch lists.

Deleting a destination or a mute window changes the rules that used it: those changes are recorded
in each rule's history like any other.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from alerts import delivery, history, silencing
from alerts.access import visible_alerts
from alerts.forms import (
    DestinationForm,
    MatcherFormSet,
    MuteWindowForm,
    SilenceForm,
    WatchListForm,
    masked_token,
    masked_url,
    rules_naming_watch_list,
)
from alerts.models import Destination, MuteWindow, Silence, WatchList
from alerts.rule_views import report_delivery
from alerts.views import manager_required, page, query_without_page

EXPIRED_PAGE = 50


# --- Destinations -------------------------------------------------------------------------------------------


@manager_required
def destination_list(request):
    rows = [(d, _shown_address(d)) for d in Destination.objects.prefetch_related("rules")]
    return page(request, "alerts/destinations.html", {"rows": rows})


def _shown_address(destination):
    """What the list shows of where a destination sends: never a Slack secret in full."""
    if destination.kind == Destination.Kind.EMAIL:
        return ", ".join(destination.recipients())
    if destination.kind == Destination.Kind.SLACK:
        token = f" · bot token {masked_token(destination.slack_bot_token)}" if destination.slack_bot_token else ""
        return masked_url(destination.url) + token
    return destination.url


@manager_required
def destination_edit(request, destination_id=None):
    destination = get_object_or_404(Destination, pk=destination_id) if destination_id else None
    form = DestinationForm(request.POST or None, instance=destination)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Destination “{saved.name}” saved.")
        return redirect("alerts:destination-edit", destination_id=saved.pk)
    context = {"form": form, "destination": destination}
    if destination is not None:
        context["recent"] = destination.deliveries.select_related("alert__rule").prefetch_related("attempt_log")[:20]
    return page(request, "alerts/destination_edit.html", context)


@require_POST
@manager_required
def destination_test(request, destination_id):
    destination = get_object_or_404(Destination, pk=destination_id)
    report_delivery(request, delivery.send_test(destination, request.user))
    return redirect("alerts:destination-edit", destination_id=destination.pk)


@require_POST
@manager_required
def destination_enable(request, destination_id):
    updated = Destination.objects.filter(pk=destination_id).update(enabled=True, disabled_reason="", disabled_at=None)
    if not updated:
        return redirect("alerts:destinations")
    messages.success(request, "Destination enabled again.")
    return redirect("alerts:destination-edit", destination_id=destination_id)


@manager_required
def destination_delete(request, destination_id):
    destination = get_object_or_404(Destination, pk=destination_id)
    consequence = "Rules that send to it no longer will; its delivery history is deleted."
    return _delete(request, destination, "destination", "alerts:destinations", consequence)


def _delete(request, obj, what, back, consequence):
    """Confirm on GET, delete on POST; a rule that loses it records the change."""
    if request.method != "POST":
        return page(request, "alerts/confirm_delete.html", {"object": obj, "what": what, "consequence": consequence})
    with transaction.atomic():
        rules = list(obj.rules.all())
        before = {rule.pk: history.snapshot(rule) for rule in rules}
        obj.delete()
        for rule in rules:
            history.record(rule, request.user, "changed", before[rule.pk])
    messages.success(request, f"{what.capitalize()} “{obj.name}” deleted.")
    return redirect(back)


# --- Silences -----------------------------------------------------------------------------------------------


@login_required
def silence_list(request):
    now = timezone.now()
    silences = Silence.objects.select_related("created_by")
    expired = Paginator(silences.filter(ends_at__lte=now).order_by("-ends_at"), EXPIRED_PAGE)
    context = {
        "active": silences.filter(ends_at__gt=now).order_by("starts_at"),
        "expired": expired.get_page(request.GET.get("page")),
        "query": query_without_page(request),
        "now": now,
    }
    return page(request, "alerts/silences.html", context)


@manager_required
def silence_new(request):
    now = timezone.now()
    if request.method == "POST":
        matchers = MatcherFormSet(request.POST, prefix="match")
        form = SilenceForm(request.POST, matchers=matchers, now=now)
        if matchers.is_valid() and form.is_valid():
            silence = form.silence(request.user)
            silence.save()
            messages.success(request, "Silence created.")
            return redirect("alerts:silences")
    else:
        alert = _alert_to_silence(request)
        matchers = MatcherFormSet(prefix="match", initial=_matchers_for(alert))
        comment = f"Silenced from alert #{alert.pk}" if alert else ""
        form = SilenceForm(matchers=matchers, now=now, initial={"duration": "2h", "comment": comment})
    return page(request, "alerts/silence_new.html", {"form": form, "matchers": matchers})


def _alert_to_silence(request):
    value = request.GET.get("alert", "")
    return (
        visible_alerts(request.user).select_related("rule", "source").filter(pk=value).first()
        if value.isdigit()
        else None
    )


def _matchers_for(alert):
    """Prefilled from an alert: its rule and its own group labels (the broader labels can be added)."""
    if alert is None:
        return []
    labels = silencing.labels_of(alert)
    keys = ["rule", *[k for k in labels if k not in ("rule", "severity", "kind")]]
    return [{"label": key, "op": "=", "value": labels[key]} for key in keys]


@require_POST
@manager_required
def silence_expire(request, silence_id):
    now = timezone.now()
    if Silence.objects.filter(pk=silence_id, ends_at__gt=now).update(ends_at=now):
        messages.success(request, "Silence expired.")
    return redirect("alerts:silences")


# --- Mute windows and watch lists -----------------------------------------------------------------------------


@manager_required
def mute_window_list(request):
    return page(request, "alerts/mute_windows.html", {"windows": MuteWindow.objects.prefetch_related("rules")})


@manager_required
def mute_window_edit(request, window_id=None):
    return _edit(request, MuteWindow, MuteWindowForm, window_id, "mute window", "alerts:mute-windows")


@manager_required
def mute_window_delete(request, window_id):
    window = get_object_or_404(MuteWindow, pk=window_id)
    consequence = "Rules muted by it are no longer muted then."
    return _delete(request, window, "mute window", "alerts:mute-windows", consequence)


@manager_required
def watch_list_list(request):
    lists = WatchList.objects.prefetch_related("rules")
    return page(request, "alerts/watch_lists.html", {"lists": [(w, len(w.values())) for w in lists]})


@manager_required
def watch_list_edit(request, list_id=None):
    return _edit(
        request,
        WatchList,
        WatchListForm,
        list_id,
        "watch list",
        "alerts:watch-lists",
        lambda saved: f" ({len(saved.values())} entries)",
    )


def _edit(request, model, form_class, pk, what, back, detail=lambda saved: ""):
    """Create (``pk`` None) or edit one object on the shared form page; back to its list once saved."""
    instance = get_object_or_404(model, pk=pk) if pk else None
    form = form_class(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"{what.capitalize()} “{saved.name}” saved{detail(saved)}.")
        return redirect(back)
    return page(request, "alerts/object_edit.html", {"form": form, "object": instance, "what": what})


@manager_required
def watch_list_delete(request, list_id):
    watch_list = get_object_or_404(WatchList, pk=list_id)
    users = {r.name for r in watch_list.rules.all()} | {r.name for r in rules_naming_watch_list(watch_list.name)}
    if users:
        messages.error(
            request, f"“{watch_list.name}” is used by rules ({', '.join(sorted(users))}): change them first."
        )
        return redirect("alerts:watch-lists")
    if request.method != "POST":
        return page(request, "alerts/confirm_delete.html", {"object": watch_list, "what": "watch list"})
    watch_list.delete()
    messages.success(request, f"Watch list “{watch_list.name}” deleted.")
    return redirect("alerts:watch-lists")
