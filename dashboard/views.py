"""The dashboard's pages and the JSON snapshot they load first."""

import functools
import logging
import re

from django.contrib.auth.decorators import login_required
from django.db import InterfaceError, OperationalError
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from dashboard import ranges, search, snapshot
from dashboard.access import visible_sources
from dashboard.groups import SOCKET_PATH
from fluxo.answers import json_answer, json_error
from fluxo.pages import with_page_policy
from streams import archive as event_archive

log = logging.getLogger(__name__)

SNAPSHOT_PARAMETERS = {"source", "range", "since", "until", "tz"}
_SOURCE_ID = re.compile(r"[0-9]{1,18}")


@login_required
def overview(request):
    sources = list(visible_sources(request.user))
    config = {
        "sources": [{"id": s.id, "name": s.name} for s in sources],
        "snapshotUrl": reverse("api-overview"),
        "socketPath": SOCKET_PATH,
        "ranges": list(ranges.RELATIVE),
        "defaultRange": ranges.DEFAULT,
        # A click on the chart opens the search over a bucket or the range (at most its span).
        "eventsUrl": reverse("events"),
        "searchMaxDays": search.MAX_SPAN.days,
    }
    # The range (and source) come from the URL too: a zoomed chart can be reloaded and shared.
    context = {"config": config, "sources": sources, "params": request.GET, "archive_enabled": event_archive.enabled()}
    return with_page_policy(render(request, "dashboard/overview.html", context))


class BadRequest(Exception):
    def __init__(self, status, error, detail):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def json_view(handler):
    """GET only, for a logged-in person; the handler returns a document or raises BadRequest."""

    @functools.wraps(handler)
    def view(request, *args, **kwargs):
        if request.method != "GET":
            return json_error(405, "method_not_allowed", "GET only", {"Allow": "GET"})
        if not (request.user.is_authenticated and request.user.is_active):
            return json_error(401, "unauthorized", "log in first")
        try:
            return json_answer(handler(request, *args, **kwargs))
        except BadRequest as exc:
            return json_error(exc.status, exc.error, exc.detail)
        except (OperationalError, InterfaceError) as exc:
            log.warning("%s 503: database %s", request.path, exc.__class__.__name__)
            return json_error(503, "unavailable", "the database is unavailable; retry", {"Retry-After": "30"})

    return view


@json_view
def overview_snapshot(request):
    """GET /api/v1/overview: the overview as JSON, for the logged-in viewer's sources."""
    return _overview(request)


def _overview(request):
    sources, window, zone, now = page_scope(request, SNAPSHOT_PARAMETERS)
    return snapshot.overview(sources, window, zone, now)


def page_scope(request, allowed):
    """(sources, Window, zone, now) that a page's query asks for; BadRequest for anything odd."""
    params = request.GET
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadRequest(400, "unknown_parameter", f"unknown parameter(s): {', '.join(unknown)}")
    now = timezone.now()
    try:
        zone = ranges.viewer_zone(params.get("tz", ""))
        window = ranges.window(params, zone, now)
    except ranges.BadRange as exc:
        raise BadRequest(400, "bad_parameter", str(exc)) from None
    return chosen_sources(request.user, params.get("source", "")), window, zone, now


def chosen_sources(user, value):
    """The one source ``value`` names, or every visible source for "" or "all"; 404 for one not visible."""
    visible = visible_sources(user)
    if value in ("", "all"):
        return list(visible)
    if not _SOURCE_ID.fullmatch(value):
        raise BadRequest(400, "bad_parameter", "source: expected a source id or all")
    found = list(visible.filter(id=int(value)))
    if not found:
        # The same answer whether it exists or not: a stranger learns nothing.
        raise BadRequest(404, "unknown_source", "no such source among yours")
    return found
