"""Three fewer index insertions per stored event (issue 2, BENCHMARKS.md).

- ``event_uid`` and ``activity_key`` stay unique, through named constraints instead of
  ``unique=True``, which on PostgreSQL also built a ``varchar_pattern_ops`` (LIKE) index on each;
  nothing searches the keys by prefix.
- ``source_id`` loses its single-column index: ``(source, stream, received_at)`` leads with it. The
  foreign key itself stays.

The new unique constraints are added before the old ones go, in the same transaction: there is no
moment without one. On a large table this builds two unique indexes once (the table is locked
meanwhile).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0001_initial"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="event",
            constraint=models.UniqueConstraint(fields=("event_uid",), name="streams_event_uid_unique"),
        ),
        migrations.AddConstraint(
            model_name="event",
            constraint=models.UniqueConstraint(fields=("activity_key",), name="streams_event_activity_key_unique"),
        ),
        migrations.AlterField(
            model_name="event",
            name="activity_key",
            field=models.CharField(max_length=300, null=True),
        ),
        migrations.AlterField(
            model_name="event",
            name="event_uid",
            field=models.CharField(max_length=255, null=True),
        ),
        migrations.AlterField(
            model_name="event",
            name="source",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="streams.source",
            ),
        ),
    ]
