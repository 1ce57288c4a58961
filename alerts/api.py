"""GET /api/v1/alerts: the open alerts a caller may see, and those resolved or fired (event alerts) in the
last hour, as JSON.

Authenticated like the rest of /api/v1 (a personal token, or a logged-in session; streams.api), read
only. Each alert has the shape of the live announcement (alerts.announce.message), so a dashboard
can take the snapshot and then apply the announced changes with one piece of code.
"""

import logging
from datetime import timedelta

from django.db import InterfaceError, OperationalError
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from alerts import announce
from alerts.access import visible_alerts
from alerts.models import Alert
from fluxo.answers import json_answer, json_error
from streams.api import ApiError, authenticate

log = logging.getLogger(__name__)

RECENT = timedelta(hours=1)
LIMIT = 500
PARAMETERS = {"source"}


@csrf_exempt  # read-only: anything but GET is a 405, never a CSRF 403
def alerts_snapshot(request):
    if request.method != "GET":
        return json_error(405, "method_not_allowed", "GET only", {"Allow": "GET"})
    try:
        return json_answer(snapshot(authenticate(request), request.GET, timezone.now()))
    except ApiError as exc:
        return json_error(exc.status, exc.error, exc.detail, exc.headers)
    except (OperationalError, InterfaceError) as exc:
        log.warning("alerts API 503: database %s", exc.__class__.__name__)
        return json_error(503, "unavailable", "the database is unavailable; retry", {"Retry-After": "30"})


def snapshot(user, params, now):
    """{"now", "alerts": [...], "truncated"}: open alerts first (newest first), then recently resolved."""
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise ApiError(400, "unknown_parameter", f"unknown parameter(s): {', '.join(unknown)}")
    alerts = visible_alerts(user).filter(
        Q(state__in=Alert.OPEN)
        | Q(state=Alert.State.RESOLVED, resolved_at__gte=now - RECENT)
        | Q(state=Alert.State.FIRED, fired_at__gte=now - RECENT)
    )
    source = params.get("source", "")
    if source not in ("", "all"):
        if not source.isdigit() or len(source) > 18:
            raise ApiError(400, "bad_parameter", "source: expected a source id or all")
        alerts = alerts.filter(source_id=int(source))
    rows = list(alerts.select_related("rule").order_by("-started_at", "-id")[: LIMIT + 1])
    rows.sort(key=lambda a: a.state not in Alert.OPEN)  # stable: open first, each part newest first
    return {
        "now": now.isoformat(),
        "alerts": [_document(a) for a in rows[:LIMIT]],
        "truncated": len(rows) > LIMIT,
    }


def _document(alert):
    return {**announce.message(alert), "url": f"/alerts/{alert.pk}/", "acknowledged_at": _iso(alert.acknowledged_at)}


def _iso(moment):
    return moment.isoformat() if moment else None
