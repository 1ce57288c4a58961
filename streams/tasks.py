"""Thin Celery tasks of the streams app: the logic lives in plain functions."""

from celery import shared_task

from streams import auth, partitions, retention, validation


@shared_task(name="streams.prune_events", soft_time_limit=1700, time_limit=1800)
def prune_events():
    return retention.prune()


@shared_task(name="streams.maintain_partitions", soft_time_limit=240, time_limit=300)
def maintain_partitions():
    return partitions.maintain()


@shared_task(name="streams.open_validation_urls", soft_time_limit=50, time_limit=60)
def open_validation_urls():
    return validation.open_pending()


@shared_task(name="streams.retire_expired_grace", soft_time_limit=50, time_limit=60)
def retire_expired_grace():
    """Delete the Fluxo OAuth clients of replaced credentials whose grace period has ended."""
    return auth.retire_expired_grace()
