"""The audit, notification and setup pages, and the JSON snapshots the first two load."""

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from dashboard import audit, notifications, tail
from dashboard.access import visible_sources
from dashboard.groups import SOCKET_PATH
from dashboard.ranges import window_document
from dashboard.views import json_view, page_scope
from fluxo.pages import with_page_policy
from streams import announce, endpoints, links, refused
from streams.models import Source

PARAMETERS = {"source", "range", "since", "until", "tz"}
ADOBE_KEY_HOST = "static.adobeioevents.com"
VALIDATION_TTL = timedelta(minutes=5)  # Adobe's validation URLs expire 5 minutes after they are sent


def _page(request, template, stream, snapshot_name, title):
    sources = list(visible_sources(request.user))
    config = {
        "snapshotUrl": reverse(snapshot_name),
        "socketPath": SOCKET_PATH,
        "stream": stream,
        "sources": [{"id": s.id, "name": s.name} for s in sources],
    }
    context = {"sources": sources, "config": config, "title": title}
    return with_page_policy(render(request, template, context))


@login_required
def audit_page(request):
    return _page(request, "dashboard/audit.html", "audit", "api-audit", "Audit")


@login_required
def notifications_page(request):
    return _page(request, "dashboard/notifications.html", "notification", "api-notifications", "Notifications")


def _sources_document(sources):
    return [{"id": s.id, "name": s.name} for s in sources]


@json_view
def audit_snapshot(request):
    sources, window, _zone, _now = page_scope(request, PARAMETERS)
    ids = [s.id for s in sources]
    found = audit.changes(ids, window.since, window.until)
    return {
        "window": window_document(window),
        "sources": _sources_document(sources),
        "heatmap": audit.heatmap_figure(found),
        "people": [{"person": p, "changes": n} for p, n in audit.by_person(found)[:20]],
        "by_component": audit.by_component_and_action(found)[:50],
        "login_failures": audit.login_failures(found),
        "changes": sum(c.count for c in found),
        "feed": tail.latest(ids, tail.Filter(stream="audit"), limit=50, window=window),
    }


@json_view
def notifications_snapshot(request):
    sources, window, zone, _now = page_scope(request, PARAMETERS)
    ids = [s.id for s in sources]
    points = notifications.quota_points(ids, window.since, window.until)
    latest = points[-1] if points else None
    names = {s.id: s.name for s in sources}
    return {
        "window": window_document(window),
        "sources": _sources_document(sources),
        "problems": notifications.campaign_problems(ids, window.since, window.until),
        "quota": None if latest is None else {"source": latest[1], "percent": latest[2], "daily_quota": latest[3]},
        "gauge": notifications.gauge_figure(latest[2] if latest else None),
        "quota_line": notifications.quota_line_figure(points, names, zone, window),
        "others": notifications.others(ids, window.since, window.until),
    }


@staff_member_required
def setup_page(request):
    """Per source: what to give Adobe, validation URLs still pending, the last refused requests."""
    since = timezone.now() - VALIDATION_TTL
    rows = [
        {
            "source": source,
            "urls": {name: endpoints.absolute(path, request) for name, path in endpoints.paths(source).items()},
            "pending": source.validation_requests.filter(received_at__gte=since, opened_at=None)[:10],
            "rejections": announce.recent_rejections(source.id, 20),
            "tenancy": links.tenancy(source),
        }
        for source in visible_sources(request.user)
    ]
    token_url = endpoints.absolute(reverse("oauth2_token"), request)
    context = {"rows": rows, "token_url": token_url, **key_host()}
    return with_page_policy(render(request, "dashboard/setup.html", context))


@login_required
def refused_requests_page(request, source_id):
    """A source's last refused requests with their redacted headers and body excerpts: superusers only
    (a body may carry a lead's personal data), a 404 for anyone else."""
    if not request.user.is_superuser:
        raise Http404("no such page")
    source = get_object_or_404(Source.objects.live(), pk=source_id)
    context = {
        "source": source,
        "rejections": [{**r, "when": datetime.fromisoformat(r["at"])} for r in announce.recent_rejections(source.id)],
        "keep": announce.KEEP_REJECTIONS,
        "hours": int(announce.REJECTIONS_TTL.total_seconds() // 3600),
        "body_bytes": refused.BODY_BYTES,
    }
    return with_page_policy(render(request, "dashboard/refused.html", context))


def key_host():
    """Where unpinned signature keys come from: Adobe's host, or (under `make run`) the simulator's."""
    base = settings.ADOBE_IO_KEY_BASE_URL.rstrip("/")
    host = urlsplit(base).hostname or ""
    return {
        "key_host": base,
        "key_host_is_adobe": host == ADOBE_KEY_HOST,
        "key_host_is_local": host in ("127.0.0.1", "localhost", "::1"),
    }
