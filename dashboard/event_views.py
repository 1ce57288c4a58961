"""The event page (one stored event, all of it) and the search across stored events, with its CSV."""

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from dashboard import inspector, ranges, search
from dashboard.access import visible_sources
from dashboard.lead_views import activity_type_choices
from fluxo.pages import with_page_policy
from streams import export
from streams.models import Stream


@login_required
def event_page(request, event_id):
    """An event of a source the viewer may see; 404 otherwise, whether it exists or not."""
    if event_id >= 2**63:
        raise Http404("no such event among your sources")
    sources = {s.id: s for s in visible_sources(request.user)}
    event = inspector.find(event_id, list(sources), _moment(request.GET.get("at", "")))
    if event is None:
        raise Http404("no such event among your sources")
    before, after = inspector.neighbours(event)
    context = {
        "event": event,
        "source": sources[event.source_id],
        "item": inspector.as_item(event),
        "fields": inspector.fields(event),
        "flags": inspector.flags(event),
        "raw": inspector.pretty(event.raw),
        "details": inspector.pretty(event.details) if event.details else "",
        "batch": inspector.batch_of(event),
        "before": before,
        "after": after,
        "near_days": inspector.NEAR.days,
        "around": inspector.AROUND,
    }
    return with_page_policy(render(request, "dashboard/event.html", context))


def _moment(text):
    """The ``at`` of an event link (its received time, ISO 8601); None when absent or unreadable."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _scope(request):
    """(sources the search covers, Query); BadQuery for a bad parameter or a source not the viewer's."""
    visible = list(visible_sources(request.user))
    chosen = request.GET.get("source", "") or "all"
    sources = visible if chosen == "all" else [s for s in visible if str(s.id) == chosen]
    if not sources and chosen != "all":
        raise search.BadQuery("source: no such source among yours")
    try:
        zone = ranges.viewer_zone(request.GET.get("tz", ""))
    except ranges.BadRange as exc:
        raise search.BadQuery(str(exc)) from None
    return visible, sources, search.parse(request.GET, zone, timezone.now())


@login_required
def events_page(request):
    """GET /events/: the search form and one page of results."""
    context = {"params": request.GET, "ranges": search.RANGES, "streams": Stream.choices, "page_rows": search.PAGE}
    status = 200
    try:
        visible, sources, query = _scope(request)
    except search.BadQuery as exc:
        visible, status = list(visible_sources(request.user)), 400
        context["error"] = str(exc)
    else:
        result = search.run(query, [s.id for s in sources])
        names = {s.id: s.name for s in visible}
        context.update(
            query=query,
            result=result,
            rows=[search.item(r) | {"source_name": names[r["source_id"]]} for r in result.rows],
        )
        context.update(links(request, result), scan_rows=search.SCAN_ROWS, timeout_s=search.TIMEOUT_MS / 1000)
    types = activity_type_choices(visible)
    # A type asked for by its text (an audit or notification type, as the overview's chart links them) is
    # not among the activity types listed: it gets an option of its own, so the form shows it and keeps it.
    unlisted = request.GET.get("type", "") not in {"", *(str(type_id) for type_id, _ in types)}
    context.update(sources=visible, types=types, type_unlisted=unlisted, csv_rows=search.CSV_ROWS)
    return with_page_policy(render(request, "dashboard/events.html", context, status=status))


def links(request, result):
    """The next page's URL, the newest page's and the CSV download's (the same search)."""
    query = request.GET.copy()
    found = {"csv_url": f"{reverse('events-csv')}?{query.urlencode()}"}
    if result.next_before is not None:
        query["before"] = str(result.next_before)
        found["next_url"] = f"?{query.urlencode()}"
    if "before" in request.GET:
        first = request.GET.copy()
        del first["before"]
        found["first_url"] = f"?{first.urlencode()}"
    return found


@login_required
def events_csv(request):
    """GET /events/search.csv: the search's rows (up to CSV_ROWS, from its cursor on), every stored column,
    cells a spreadsheet would run as a formula neutralised (streams.export)."""
    try:
        _visible, sources, query = _scope(request)
    except search.BadQuery as exc:
        return with_page_policy(render(request, "dashboard/events.html", {"error": str(exc)}, status=400))
    result = search.run(query, [s.id for s in sources], limit=search.CSV_ROWS, fields=export.FIELDS)
    rows = [tuple(row[name] for name in export.FIELDS) for row in result.rows]
    body = export.csv_header() + export.csv_bytes(rows)
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="fluxo-events.csv"'
    response["Cache-Control"] = "no-store"
    response["Fluxo-Search-Complete"] = "no" if (result.capped or result.timed_out or result.next_before) else "yes"
    return response
