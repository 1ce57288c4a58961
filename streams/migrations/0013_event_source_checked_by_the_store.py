"""The events' foreign key to their source goes on PostgreSQL; the store's statement does its work.

PostgreSQL checked that key with a trigger and a locking query for every stored event: about a sixth
of the backend's CPU per legacy event (BENCHMARKS.md, issue 15). streams.store's statement now locks
each source it files events under once (FOR KEY SHARE, as the check did, so a source's deletion still
waits for the requests storing under it) and fails, storing nothing, when one is gone. SQLite keeps
the constraint: dropping it there would rebuild the table, for nothing measurable.
"""

import django.db.models.deletion
from django.db import migrations, models

_FOREIGN_KEYS = (
    "SELECT conname FROM pg_constraint WHERE conrelid = 'streams_event'::regclass AND contype = 'f' "
    "AND confrelid = 'streams_source'::regclass AND conparentid = 0"
)


def drop_constraint(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_FOREIGN_KEYS)
        for (name,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE streams_event DROP CONSTRAINT "{name}"')


def add_constraint(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE streams_event ADD CONSTRAINT streams_event_source_id_fk_streams_source_id "
        "FOREIGN KEY (source_id) REFERENCES streams_source (id) DEFERRABLE INITIALLY DEFERRED"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0012_admin_names"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="source",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="events",
                        to="streams.source",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_constraint, add_constraint)],
        ),
    ]
