"""Housekeeping of the project's third-party parts, run by the beat (CELERY_BEAT_SCHEDULE).

Thin tasks over the commands an operator could run by hand: Django's ``clearsessions`` and
django-oauth-toolkit's ``cleartokens``. Neither belongs to one of Fluxo's apps.
"""

from celery import shared_task
from django.core.management import call_command


@shared_task(name="fluxo.clear_sessions", soft_time_limit=240, time_limit=300)
def clear_sessions():
    """Delete expired login sessions (each login leaves a row until then)."""
    call_command("clearsessions")


@shared_task(name="fluxo.clear_tokens", soft_time_limit=240, time_limit=300)
def clear_tokens():
    """Delete expired OAuth access tokens (the legacy push fetches one about every hour per source)."""
    call_command("cleartokens")
