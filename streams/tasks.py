"""Thin Celery tasks of the streams app: the logic lives in plain functions."""

from celery import shared_task

from streams import announce, archive, auth, deletion, journal, partitions, registration_health, retention, validation
from streams.models import JournalCursor


@shared_task(name="streams.prune_events", soft_time_limit=1700, time_limit=1800)
def prune_events():
    return retention.prune()


@shared_task(name="streams.maintain_partitions", soft_time_limit=240, time_limit=300)
def maintain_partitions():
    return partitions.maintain()


@shared_task(name="streams.analyze_partitions", soft_time_limit=50, time_limit=60)
def analyze_partitions():
    return partitions.analyze_filling()


@shared_task(name="streams.archive_events", soft_time_limit=3300, time_limit=3500)
def archive_events():
    """Yesterday's events, and any day of the retention window not archived yet, to the archive."""
    return archive.archive_due()


@shared_task(name="streams.open_validation_urls", soft_time_limit=50, time_limit=60)
def open_validation_urls():
    return validation.open_pending()


@shared_task(name="streams.prune_refused_requests", soft_time_limit=50, time_limit=60)
def prune_refused_requests():
    """Drop the kept refused requests (headers, body excerpts) once a day old."""
    return announce.prune_rejections()


@shared_task(name="streams.retire_expired_grace", soft_time_limit=50, time_limit=60)
def retire_expired_grace():
    """Delete the Fluxo OAuth clients of replaced credentials whose grace period has ended."""
    return auth.retire_expired_grace()


@shared_task(name="streams.delete_source", soft_time_limit=240, time_limit=300)
def delete_source(source_id):
    """Purge a source marked for deletion; queued again while there is more (the beat also passes)."""
    outcome = deletion.purge(source_id)
    if outcome in ("more", "retry"):
        deletion.enqueue(source_id, countdown=1 if outcome == "more" else 10)
    return outcome


@shared_task(name="streams.purge_deleted_sources", soft_time_limit=240, time_limit=300)
def purge_deleted_sources():
    """The outbox pass: every source still marked for deletion (a lost task, a killed worker)."""
    return deletion.purge_pending()


# --- Adobe's journal (streams.journal). Named streams.journal_*: routed to the maintenance queue, so a
# long backfill never delays alert evaluation or deliveries. A run ends within its time limit and the
# next one resumes from the cursor committed with the last page.


@shared_task(name="streams.journal_poll", soft_time_limit=55, time_limit=60)
def journal_poll():
    """The beat's tick: a continuous run for each registration whose journal is polled and due."""
    return journal.poll_due(budget_seconds=40)


JOURNAL_BACKFILL_RESUMES = 20


@shared_task(name="streams.journal_backfill", soft_time_limit=3500, time_limit=3600)
def journal_backfill(registration_id, start=None, resumes=0):
    """A backfill; ``start`` (oldest or seek=-PT…S) begins a new one, None resumes the current one."""
    if start is not None:
        journal.start_backfill(registration_id, start)
    progress = journal.run(registration_id, JournalCursor.Kind.BACKFILL, budget_seconds=3300)
    if progress.at_end or progress.stopped or resumes >= JOURNAL_BACKFILL_RESUMES:
        return progress.as_json()
    if progress.busy and not journal.is_stopped(registration_id):
        # Held: by a live job (which finishes it; this run then finds the end at once) or by a killed
        # worker's job, whose lease runs out within a lease: go on from its committed cursor then.
        journal_backfill.apply_async((registration_id, None, resumes + 1), countdown=journal.lease_seconds() + 2)
    elif not progress.busy:
        # Out of time or Adobe failing: go on later from the committed cursor (a bounded number of times).
        journal_backfill.apply_async((registration_id, None, resumes + 1), countdown=30)
    return progress.as_json()


@shared_task(name="streams.journal_registration_states", soft_time_limit=110, time_limit=120)
def journal_registration_states():
    """Adobe's own view of each registration with credentials (webhook_status, enabled)."""
    return registration_health.poll_adobe_states()
