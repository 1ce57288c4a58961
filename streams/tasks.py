"""Thin Celery tasks of the streams app: the logic lives in plain functions."""

from celery import shared_task

from streams import archive, auth, deletion, partitions, retention, validation


@shared_task(name="streams.prune_events", soft_time_limit=1700, time_limit=1800)
def prune_events():
    return retention.prune()


@shared_task(name="streams.maintain_partitions", soft_time_limit=240, time_limit=300)
def maintain_partitions():
    return partitions.maintain()


@shared_task(name="streams.archive_events", soft_time_limit=3300, time_limit=3500)
def archive_events():
    """Yesterday's events, and any day of the retention window not archived yet, to the archive."""
    return archive.archive_due()


@shared_task(name="streams.open_validation_urls", soft_time_limit=50, time_limit=60)
def open_validation_urls():
    return validation.open_pending()


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
