"""Lead activity: a live tail with filters applied on the server, and one lead's whole timeline."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from dashboard import tail, timeline
from dashboard.access import visible_sources
from dashboard.groups import SOCKET_PATH
from dashboard.labels import custom_names
from dashboard.models import MinuteCount
from dashboard.ranges import window_document
from dashboard.views import SNAPSHOT_PARAMETERS, BadRequest, json_view, page_scope
from fluxo.pages import with_page_policy
from streams import activity_types

TAIL_PARAMETERS = {"stream", "type", "lead", "campaign", *SNAPSHOT_PARAMETERS}


@login_required
def tail_page(request):
    sources = list(visible_sources(request.user))
    config = {"tailUrl": reverse("api-tail"), "socketPath": SOCKET_PATH, "leadsUrl": reverse("leads")}
    context = {"sources": sources, "types": activity_type_choices(sources), "config": config, "params": request.GET}
    return with_page_policy(render(request, "dashboard/tail.html", context))


def activity_type_choices(sources):
    """(id, name) of the standard activity types and of the custom ones these sources have received."""
    custom_ids = (
        MinuteCount.objects.filter(
            source__in=sources, stream="activity", activity_type_id__gte=activity_types.CUSTOM_MIN_ID
        )
        .values_list("activity_type_id", flat=True)
        .distinct()
    )
    names = {**activity_types.NAMES, **custom_names(set(custom_ids))}
    return sorted(names.items(), key=lambda item: item[1].lower())


@json_view
def tail_snapshot(request):
    """GET /api/v1/tail: the newest activities matching ``type``, ``lead``, ``campaign`` (and ``source``),
    received in the range the page shows (``range``, or ``since`` and ``until``; without one, any time).
    """
    sources, window, _zone, _now = page_scope(request, TAIL_PARAMETERS)
    try:
        tail_filter = tail.parse(request.GET)
    except tail.BadFilter as exc:
        raise BadRequest(400, "bad_parameter", str(exc)) from None
    ranged = "range" in request.GET
    return {
        "sources": [{"id": s.id, "name": s.name} for s in sources],
        "window": window_document(window) if ranged else None,
        "events": tail.latest([s.id for s in sources], tail_filter, window=window if ranged else None),
    }


@login_required
def lead_page(request, source_id, lead_id):
    source = visible_sources(request.user).filter(id=source_id).first()
    if source is None:
        raise Http404("no such source among yours")
    entries, more = timeline.of_lead(source.id, lead_id)
    context = {"source": source, "lead_id": lead_id, "entries": entries, "more": more, "limit": timeline.LIMIT}
    return with_page_policy(render(request, "dashboard/lead.html", context))
