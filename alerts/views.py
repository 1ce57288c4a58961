"""The alerts pages: open alerts and their history, one alert in full, and acknowledging.

Rules are in alerts.rule_views; destinations, silences, mute windows and watch lists in
alerts.setting_views; the JSON snapshot in alerts.api. Pages are rendered on the server with every
event-derived value escaped by the templates; times go out as UTC in ``<time datetime>`` and the page's
script shows them in the viewer's zone.
"""

import functools
import re
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Case, IntegerField, Value, When
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from alerts import lifecycle, silencing
from alerts.access import can_manage, visible_alerts
from alerts.forms import AcknowledgeForm, AlertFilterForm
from alerts.models import Alert
from fluxo.pages import event_url, with_page_policy
from streams.access import visible_sources
from streams.models import Event

HISTORY_PAGE = 50
OPEN_LIMIT = 200
# A lead id worth linking to its timeline: no slash, so a crafted value cannot walk out of /leads/.
_LINKABLE_LEAD = re.compile(r"[\w.@+-]{1,100}")
SEVERITY_ORDER = Case(
    When(severity="critical", then=Value(0)),
    When(severity="warning", then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def page(request, template, context=None, status=200):
    context = {"can_manage": can_manage(request.user), "section": _section(request), **(context or {})}
    return with_page_policy(render(request, template, context, status=status))


def _section(request):
    """Which tab of the alerting navigation a page belongs to."""
    name = request.resolver_match.url_name if request.resolver_match else ""
    for prefix, section in (("rule", "rules"), ("destination", "destinations"), ("silence", "silences")):
        if name.startswith(prefix):
            return section
    return {"mute": "mute", "watch": "watch"}.get(name.split("-")[0], "alerts")


def manager_required(view):
    """Logged in (else the login page), and allowed to manage alerting (else 403)."""

    @login_required
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not can_manage(request.user):
            raise PermissionDenied("managing alerting needs the permission alerts.manage_alerting")
        return view(request, *args, **kwargs)

    return wrapped


def back_to(request, fallback):
    """Where a form posted from a list should return: its ``next`` when it is on this site."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return fallback


def query_without_page(request):
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


# --- Alerts ---------------------------------------------------------------------------------------------


@login_required
def alert_list(request):
    alerts = visible_alerts(request.user).select_related("rule", "source", "acknowledged_by")
    open_alerts = list(alerts.filter(state__in=Alert.OPEN).order_by(SEVERITY_ORDER, "-started_at")[:OPEN_LIMIT])
    filters = AlertFilterForm(request.GET or None, user=request.user)
    history = alerts.exclude(state__in=Alert.OPEN).order_by("-started_at", "-id")
    if filters.is_valid():
        history = _filtered(history, filters.cleaned_data)
    context = {
        "open_alerts": open_alerts,
        "filters": filters,
        "history": Paginator(history, HISTORY_PAGE).get_page(request.GET.get("page")),
        "query": query_without_page(request),
        "ack_form": AcknowledgeForm(),
    }
    return page(request, "alerts/list.html", context)


def _filtered(alerts, data):
    lookups = {"rule": data.get("rule"), "state": data.get("state"), "severity": data.get("severity")}
    lookups["source"] = data.get("source")
    return alerts.filter(**{name: value for name, value in lookups.items() if value})


@login_required
def alert_detail(request, alert_id):
    related = ("rule", "source", "acknowledged_by")
    alert = get_object_or_404(visible_alerts(request.user).select_related(*related), pk=alert_id)
    deliveries = alert.deliveries.select_related("destination", "created_by").prefetch_related("attempt_log")
    context = {
        "alert": alert,
        "samples": samples_of(alert, request.user),
        "timeline": alert.timeline.select_related("user"),
        "deliveries": deliveries,
        "silence": silencing.silence_for(alert, timezone.now()) if alert.state in Alert.OPEN else None,
        "ack_form": AcknowledgeForm(),
    }
    return page(request, "alerts/detail.html", context)


def samples_of(alert, user):
    """The alert's sample events as rows, each with a link to its lead's timeline when one is known."""
    samples = [s for s in alert.samples or [] if isinstance(s, dict)]
    source_of = _sources_of_sampled(samples)
    visible = set(visible_sources(user).values_list("id", flat=True))
    rows = []
    for sample in samples:
        source_id = source_of.get(sample.get("id"), alert.source_id)
        lead = "" if sample.get("lead") is None else str(sample.get("lead"))
        link = source_id in visible and _LINKABLE_LEAD.fullmatch(lead) is not None
        rows.append(
            {
                **sample,
                "lead": lead,
                "lead_url": reverse("lead", args=[source_id, lead]) if link else None,
                # The event may be gone (retention, erasure): its page then says so with a 404.
                "event_url": event_url(sample["id"], sample.get("received_at"))
                if _has_event(sample, visible, source_of)
                else None,
                "occurred": _time(sample.get("occurred_at")),
                "received": _time(sample.get("received_at")),
            }
        )
    return rows


def _sources_of_sampled(samples):
    """{event id: source id} of the sampled events still stored, read within the samples' received times
    (so PostgreSQL reads only the partitions that can hold them)."""
    sampled = [(s["id"], _time(s.get("received_at"))) for s in samples if isinstance(s.get("id"), int)]
    if not sampled:
        return {}
    events = Event.objects.filter(id__in=[event_id for event_id, _at in sampled])
    times = [at for _id, at in sampled if at is not None and at.tzinfo is not None]
    if len(times) == len(sampled):
        events = events.filter(received_at__gte=min(times), received_at__lte=max(times))
    return dict(events.values_list("id", "source_id"))


def _has_event(sample, visible, source_of):
    return isinstance(sample.get("id"), int) and source_of.get(sample["id"]) in visible


def _time(text):
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


@require_POST
@manager_required
@transaction.atomic
def acknowledge(request, alert_id):
    """Acknowledge a firing alert, or (``close``) resolve a firing event alert by hand."""
    alert = get_object_or_404(visible_alerts(request.user), pk=alert_id)
    if request.POST.get("close"):
        if lifecycle.resolve_by_hand(alert, request.user, timezone.now()):
            messages.success(request, "Resolved: the next match opens a new alert.")
        else:
            messages.warning(request, "Not resolved: only a firing match or watch-list alert is resolved by hand.")
        return redirect(back_to(request, reverse("alerts:detail", args=[alert.pk])))
    form = AcknowledgeForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    if lifecycle.acknowledge(alert, request.user, timezone.now(), comment):
        messages.success(request, "Acknowledged: no reminders until it resolves.")
    else:
        messages.warning(request, "Not acknowledged: the alert is not firing, or someone acknowledged it already.")
    return redirect(back_to(request, reverse("alerts:detail", args=[alert.pk])))
