"""What this process sees of Fluxo: /healthz, /readyz and /metrics.

``/healthz`` says the process is up (no database, no authentication: for load balancers).
``/readyz`` answers 503 only when this process cannot reach the database: a web process is a complete
receiver with the database alone. Everything else (Redis, the worker's and the beat's heartbeats,
the evaluator's and the rollups' lag, the delivery queue, retention, partitions) is reported with
its figure, and any of them wrong makes the status "degraded" with a 200. Details go to logged-in
people and to whoever may read /metrics; anyone else gets the bare status.

``/metrics`` is Prometheus' text format: the counters every Fluxo process of this host keeps
(fluxo.metrics) plus the figures below, read at scrape time with cheap, bounded queries (batch rows
and the consumers' progress rows, never a count over the events).
"""

import hmac
import logging
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from alerts.models import Delivery, EvaluatedBatch, EvaluatorFloor
from dashboard.models import RolledUpBatch, RollupFloor
from fluxo import logs
from fluxo.answers import json_error
from streams import announce, uptime
from streams import archive as event_archive
from streams import partitions as event_partitions
from streams.models import Batch

log = logging.getLogger(__name__)

HEARTBEATS = {
    # Written by fluxo.celery: any task finished by a worker, any task the beat sent, and the alerts
    # tick finished, which proves both (the beat sends it every 5 s, a worker runs it).
    "worker": "fluxo:heartbeat:worker",
    "beat": "fluxo:heartbeat:beat",
    "alerts_tick": "fluxo:heartbeat:alerts_tick",
}
HEARTBEAT_STALE_S = 60
LAG_DEGRADED_S = 300
# Pending batches and deliveries are counted up to this many: a bounded query even far behind.
COUNT_CAP = 100_000


# --- Heartbeats ------------------------------------------------------------------------------------------


def record_heartbeat(name):
    """Best effort: a Redis failure here must never fail a task."""
    try:
        announce.client().set(HEARTBEATS[name], f"{time.time():.3f}", ex=24 * 3600)
    except Exception as exc:
        log.debug("could not record the %s heartbeat (%s)", name, exc.__class__.__name__)
    uptime.mark()  # the minutes no process marked are when Fluxo was down (registration health)


def heartbeat_ages(now):
    """{name: seconds since the last heartbeat, or None (never, or Redis unreachable)}."""
    try:
        values = announce.client().mget(list(HEARTBEATS.values()))
    except Exception:
        return dict.fromkeys(HEARTBEATS)
    return {name: (round(now - float(v), 3) if v else None) for name, v in zip(HEARTBEATS, values, strict=True)}


# --- Figures ---------------------------------------------------------------------------------------------


def database_up():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        log.warning("readiness: the database is unreachable (%s)", exc.__class__.__name__)
        return False
    return True


def redis_up():
    try:
        return bool(announce.client().ping())
    except Exception:
        return False


def consumer_lag(floor_model, done_model, now):
    """{"batches": batches not yet consumed (capped), "seconds": age of the oldest one (0 if none)}."""
    floor = floor_model.objects.filter(id=1).values_list("batch_id", flat=True).first() or 0
    done = done_model.objects.filter(batch_id__gt=floor).values("batch_id")
    pending = Batch.objects.filter(id__gt=floor).exclude(id__in=done)
    oldest = pending.order_by("id").values_list("received_at", flat=True).first()
    return {
        "batches": pending.order_by()[:COUNT_CAP].count(),
        "seconds": round(max((now - oldest).total_seconds(), 0.0), 3) if oldest else 0.0,
    }


def delivery_queue(now):
    """Deliveries waiting and being sent, by destination kind, and how overdue the oldest due one is."""
    rows = (
        Delivery.objects.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.CLAIMED])
        .values_list("destination__kind", "status")
        .order_by()[:COUNT_CAP]
    )
    depth = {}
    for kind, status in rows:
        depth.setdefault(kind, {}).setdefault(status, 0)
        depth[kind][status] += 1
    due = Delivery.objects.filter(status=Delivery.Status.PENDING, due_at__lte=now)
    oldest = due.order_by("due_at").values_list("due_at", flat=True).first()
    return {"depth": depth, "oldest_due_s": round((now - oldest).total_seconds(), 3) if oldest else 0.0}


def retention(now, partitioned):
    """The configured retention, the age of the oldest batch row kept (events go with theirs), and the
    age past which that row is overdue: a day of slack for the hourly pruning, and with partitions the
    length of one (a partition is dropped once wholly past the retention)."""
    oldest = Batch.objects.order_by("received_at").values_list("received_at", flat=True).first()
    age = round((now - oldest).total_seconds(), 3) if oldest else 0.0
    days = settings.FLUXO_RETENTION_DAYS
    slack = 86400 + (event_partitions.interval().total_seconds() if partitioned else 0)
    return {"days": days, "oldest_batch_age_s": age, "overdue_after_s": days * 86400 + slack}


def partitions():
    """streams.partitions.state(): {"partitioned": False} on SQLite; on PostgreSQL the intervals covered
    ahead of the current one and whether rows wait in a DEFAULT partition."""
    return event_partitions.state()


def figures():
    """Everything /readyz and /metrics report, with "status": ok | degraded | unavailable."""
    now, clock = timezone.now(), time.time()
    result = {"database": database_up(), "redis": redis_up(), "heartbeat_age_s": heartbeat_ages(clock)}
    if result["database"]:
        result["partitions"] = partitions()
        result |= {
            "evaluation_lag": consumer_lag(EvaluatorFloor, EvaluatedBatch, now),
            "rollup_lag": consumer_lag(RollupFloor, RolledUpBatch, now),
            "deliveries": delivery_queue(now),
            "retention": retention(now, result["partitions"]["partitioned"]),
            "archive": event_archive.status(now),
        }
    result["status"] = _status(result)
    return result


def _status(result):
    if not result["database"]:
        return "unavailable"
    stale = any(age is None or age > HEARTBEAT_STALE_S for age in result["heartbeat_age_s"].values())
    behind = any(
        value > LAG_DEGRADED_S
        for value in (
            result["evaluation_lag"]["seconds"],
            result["rollup_lag"]["seconds"],
            result["deliveries"]["oldest_due_s"],
        )
    )
    overdue = result["retention"]["oldest_batch_age_s"] > result["retention"]["overdue_after_s"]
    archive_failing = result["archive"]["enabled"] and result["archive"]["failing_days"] > 0
    degraded = not result["redis"] or stale or behind or overdue or archive_failing or _partitions_short(result)
    return "degraded" if degraded else "ok"


def _partitions_short(result):
    """Partitioned, and no partition ahead of the current interval, or rows waiting in a DEFAULT one."""
    state = result["partitions"]
    return state["partitioned"] and (state["ahead"] < 1 or any(state["in_default"].values()))


# --- Who may see details ---------------------------------------------------------------------------------


def peer_is_loopback(request):
    """The TCP peer is this host and sent no forwarding header (fluxo.logs.Observed judged it on the
    connection, before fluxo.proxies replaced the client with what a trusted proxy says): a request that
    came through a proxy, even one on this host, is not a local one."""
    return getattr(request, "scope", {}).get(logs.LOCAL_PEER) is True


def presents_metrics_token(request):
    token = settings.FLUXO_METRICS_TOKEN
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def may_read_metrics(request):
    """With FLUXO_METRICS_TOKEN set, only its bearer; unset, only loopback peers."""
    if settings.FLUXO_METRICS_TOKEN:
        return presents_metrics_token(request)
    return peer_is_loopback(request)


def may_see_details(request):
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated) or may_read_metrics(request)


# --- Views -----------------------------------------------------------------------------------------------


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    result = figures()
    status = 503 if result["status"] == "unavailable" else 200
    body = result if may_see_details(request) else {"status": result["status"]}
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def metrics_view(request):
    if not may_read_metrics(request):
        error = "unauthorized" if settings.FLUXO_METRICS_TOKEN else "forbidden"
        detail = (
            "Authorization: Bearer <FLUXO_METRICS_TOKEN> required"
            if settings.FLUXO_METRICS_TOKEN
            else ("only loopback clients, unless FLUXO_METRICS_TOKEN is set")
        )
        return json_error(401 if settings.FLUXO_METRICS_TOKEN else 403, error, detail)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(settings.FLUXO_METRICS_DIR))
    registry.register(FiguresCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# --- Scrape-time figures as Prometheus metrics -----------------------------------------------------------


def _gauge(name, documentation, value=None, labels=(), samples=()):
    family = GaugeMetricFamily(name, documentation, value=value, labels=list(labels) or None)
    for label_values, sample in samples:
        family.add_metric(label_values, sample)
    return family


class FiguresCollector:
    """The figures of ``figures()`` as gauges, read once per scrape."""

    def collect(self):
        f = figures()
        yield _gauge("fluxo_database_up", "1 when this process reaches the database.", 1 if f["database"] else 0)
        yield _gauge("fluxo_redis_up", "1 when this process reaches Redis.", 1 if f["redis"] else 0)
        ages = [([name], age) for name, age in f["heartbeat_age_s"].items() if age is not None]
        yield _gauge(
            "fluxo_heartbeat_age_seconds",
            "Seconds since a worker finished a task, the beat sent one, the alerts tick ran.",
            labels=["process"],
            samples=ages,
        )
        if f["database"]:
            yield from self._database_figures(f)

    @staticmethod
    def _database_figures(f):
        for name, key in (("evaluation", "evaluation_lag"), ("rollup", "rollup_lag")):
            yield _gauge(f"fluxo_{name}_lag_batches", f"Batches the {name} has not consumed yet.", f[key]["batches"])
            yield _gauge(
                f"fluxo_{name}_lag_seconds", f"Age of the oldest batch the {name} has not consumed.", f[key]["seconds"]
            )
        depth = [
            ([kind, status], n) for kind, statuses in f["deliveries"]["depth"].items() for status, n in statuses.items()
        ]
        yield _gauge(
            "fluxo_delivery_queue", "Deliveries waiting or being sent.", labels=["kind", "status"], samples=depth
        )
        yield _gauge(
            "fluxo_delivery_oldest_due_seconds",
            "How long the oldest due delivery has waited.",
            f["deliveries"]["oldest_due_s"],
        )
        yield _gauge("fluxo_retention_seconds", "FLUXO_RETENTION_DAYS, in seconds.", f["retention"]["days"] * 86400)
        yield _gauge(
            "fluxo_retention_oldest_batch_age_seconds",
            "Age of the oldest batch row kept.",
            f["retention"]["oldest_batch_age_s"],
        )
        yield from _partition_figures(f["partitions"])
        yield from _archive_figures(f["archive"])


def _archive_figures(state):
    """Parquet archives (streams.archive.status): none counted when archiving is off."""
    yield _gauge(
        "fluxo_archive_enabled", "1 when days are archived before retention removes them.", 1 if state["enabled"] else 0
    )
    for name, key, documentation in (
        ("fluxo_archive_archived", "archived_days", "Source-days of the retention window archived and checked."),
        ("fluxo_archive_backlog", "backlog_days", "Source-days due for archiving and not archived yet."),
        ("fluxo_archive_failing", "failing_days", "Source-days whose last archive attempt failed."),
    ):
        yield _gauge(name, documentation, state[key] if state["enabled"] else 0)


def _partition_figures(state):
    """Without partitions (SQLite) the partition families are still declared, with no sample."""
    partitioned = state["partitioned"]
    yield _gauge("fluxo_events_partitioned", "1 when the event tables are time-partitioned.", 1 if partitioned else 0)
    seconds = event_partitions.interval().total_seconds() if partitioned else 0
    yield _gauge("fluxo_partition_interval_seconds", "The length of one event partition (0: none).", seconds)
    ahead = [([], state["ahead"])] if partitioned else []
    yield _gauge("fluxo_partitions_ahead", "Partitions that exist past the current interval.", samples=ahead)
    waiting = [([table], 1 if rows else 0) for table, rows in state.get("in_default", {}).items()]
    documentation = "1 when rows wait in a DEFAULT partition."
    yield _gauge("fluxo_partition_default_rows", documentation, labels=["table"], samples=waiting)
