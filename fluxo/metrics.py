"""The counters that live in processes, shared between all of a host's Fluxo processes.

prometheus-client's multiprocess mode: every process (each daphne of ``fluxo.serve``, each Celery
worker child) writes its values to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``, which
settings.py points at ``FLUXO_VAR_DIR/metrics/`` before anything imports prometheus_client; a web
process's ``/metrics`` adds up every file there. Figures that live in the database or Redis (lags,
queues, heartbeats) are read at scrape time instead (fluxo.health).

A leaf module: it imports no app, so the receivers and the delivery code can count through it.
"""

import atexit
import contextlib
import fcntl
import glob
import os
import re
from collections import defaultdict
from pathlib import Path

from django.conf import settings

# Reading a setting loads settings.py, which sets PROMETHEUS_MULTIPROC_DIR: prometheus_client picks its
# multiprocess value class when it is first imported, so that must come after.
_DIR = settings.FLUXO_METRICS_DIR

from prometheus_client import Counter, Gauge, Histogram  # noqa: E402
from prometheus_client import multiprocess as _multiprocess  # noqa: E402

REASON_RE = re.compile(r"\A[a-z_]{1,32}\Z")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)

EVENTS_ACCEPTED = Counter(
    "fluxo_events_accepted", "Events newly stored, after commit.", ["source", "stream", "protocol"]
)
EVENTS_DUPLICATES = Counter(
    "fluxo_events_duplicates", "Events received again (already stored), after commit.", ["source", "protocol"]
)
INGEST_REQUESTS = Counter(
    "fluxo_ingest_requests", "Requests answered by the receivers.", ["protocol", "status", "reason"]
)
INGEST_LATENCY = Histogram(
    "fluxo_ingest_request_duration_seconds",
    "Receiver requests, from the first byte read to the answer sent.",
    ["protocol"],
    buckets=LATENCY_BUCKETS,
)
INGEST_UNAVAILABLE = Counter(
    "fluxo_ingest_unavailable", "Receiver requests answered 503 (nothing acknowledged).", ["protocol"]
)
SIGNATURE_FAILURES = Counter("fluxo_signature_failures", "Adobe I/O requests refused for their signature.", ["reason"])
KEY_FETCHES = Counter(
    "fluxo_signature_key_fetches", "Downloads of Adobe's signature public keys, by outcome.", ["outcome"]
)
DELIVERY_ATTEMPTS = Counter(
    "fluxo_delivery_attempts", "Alert delivery attempts, by destination kind and outcome.", ["kind", "outcome"]
)
WEBSOCKETS = Gauge("fluxo_websocket_connections", "Open live-dashboard sockets.", multiprocess_mode="livesum")


def protocol_of(path):
    """The receiver a path belongs to ("io", "legacy"), or "other" (a bounded label)."""
    if path.endswith("/adobe-io/"):
        return "io"
    if path.endswith("/marketo-push/"):
        return "legacy"
    return "other"


def ingest_answered(path, status, error, seconds):
    """Count one receiver answer; ``error`` is the JSON answer's "error" field (None on success)."""
    protocol = protocol_of(path)
    reason = error if error and REASON_RE.match(error) else ("ok" if status < 400 else "other")
    INGEST_REQUESTS.labels(protocol, str(status), reason).inc()
    INGEST_LATENCY.labels(protocol).observe(seconds)
    if status == 503:
        INGEST_UNAVAILABLE.labels(protocol).inc()
    if reason in ("bad_signature", "missing_signature"):
        SIGNATURE_FAILURES.labels(reason).inc()


def events_committed(counts, duplicates_by_source, protocol):
    """Count a committed batch: ``counts`` as a batch row holds them, [source, stream, type, type id, n]."""
    # Summed per (source, stream) first: a 500-activity push has a count row for each of its dozens of
    # types, and each inc() takes the metrics' one process-wide lock and writes the mmap file.
    accepted = defaultdict(int)
    for source_id, stream, _type, _type_id, n in counts:
        accepted[source_id, stream] += n
    for (source_id, stream), n in accepted.items():
        EVENTS_ACCEPTED.labels(str(source_id), stream, protocol).inc(n)
    for source_id, n in duplicates_by_source.items():
        if n:
            EVENTS_DUPLICATES.labels(str(source_id), protocol).inc(n)


def key_fetched(outcome):
    KEY_FETCHES.labels(outcome).inc()


def delivery_attempted(kind, outcome):
    DELIVERY_ATTEMPTS.labels(kind, outcome if REASON_RE.match(outcome or "") else "other").inc()


def _attempt_saved(sender, instance, created, **kwargs):
    if created:
        from django.db import transaction

        transaction.on_commit(lambda: _count_attempt(sender, instance.delivery_id, instance.outcome))


def _count_attempt(attempt_model, delivery_id, outcome):
    deliveries = attempt_model._meta.get_field("delivery").related_model.objects
    kind = deliveries.filter(pk=delivery_id).values_list("destination__kind", flat=True).first()
    delivery_attempted(kind or "unknown", outcome)


# --- A process's start ---------------------------------------------------------------------------------


def start_process(web=False):
    """Once per process (web: fluxo.asgi; worker and beat: fluxo.celery): tidy the folder, count the
    delivery attempts this process records (a model signal named lazily: no app is imported here)."""
    from django.db.models.signals import post_save

    prepare()
    post_save.connect(_attempt_saved, sender="alerts.DeliveryAttempt", dispatch_uid="fluxo.metrics.attempts")
    if web:
        atexit.register(process_exited, os.getpid())
        _known_labels()


def _known_labels():
    """Series with a fixed set of labels exist from the start at 0, so a rate() sees their first increase."""
    for reason in ("bad_signature", "missing_signature"):
        SIGNATURE_FAILURES.labels(reason)
    for outcome in ("fetched", "refused", "unavailable"):
        KEY_FETCHES.labels(outcome)
    for protocol in ("io", "legacy"):
        INGEST_UNAVAILABLE.labels(protocol)
        INGEST_LATENCY.labels(protocol)
    for kind in ("email", "slack", "webhook"):  # alerts.models.Destination.Kind
        for outcome in ("sent", "retry", "failed", "permanent", "abandoned"):  # DeliveryAttempt.outcome
            DELIVERY_ATTEMPTS.labels(kind, outcome)


# --- The directory's life -------------------------------------------------------------------------------


def _pid_of(path):
    match = re.search(r"_(\d+)\.db\Z", path)
    return int(match.group(1)) if match else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(directory=None):
    """At a process's start: wipe the files when no live process owns any (a fresh start of the host),
    else forget the live gauges of processes that are gone. Under a lock, so processes starting
    together do not wipe each other's fresh files."""
    directory = Path(directory or _DIR)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        files = glob.glob(str(directory / "*.db"))
        pids = {_pid_of(f) for f in files} - {None, os.getpid()}
        dead = {pid for pid in pids if not _alive(pid)}
        if dead == pids:
            for f in files:
                if _pid_of(f) != os.getpid():
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(f)
        else:
            for pid in dead:
                process_exited(pid, directory)


def process_exited(pid, directory=None):
    """A process is gone: its live gauges (open sockets) no longer count; its counters still do."""
    _multiprocess.mark_process_dead(pid, str(directory or _DIR))
