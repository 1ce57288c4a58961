"""A deleted source's rollups and known audit users go with it (streams.signals.source_erasing).

Counts of a deleted source mean nothing to anyone (no page shows the source any more), so they are
deleted, in chunks, each its own short statement.
"""

from dashboard.models import AuditPerson, HourCount, MinuteCount
from streams.signals import source_erasing


def delete_rows(source_id, chunk, **_kwargs):
    """Delete at most ``chunk`` rows of each model for the source; returns how many went."""
    deleted = 0
    for model in (MinuteCount, HourCount, AuditPerson):
        ids = list(model.objects.filter(source_id=source_id).values_list("id", flat=True)[:chunk])
        if ids:
            deleted += model.objects.filter(id__in=ids).delete()[0]
    return deleted


def connect():
    source_erasing.connect(delete_rows, dispatch_uid="dashboard.deletion.delete_rows")
