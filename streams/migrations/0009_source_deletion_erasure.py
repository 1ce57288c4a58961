"""Source.deleting_since and ErasureRecord (streams.deletion, streams.erasure).

SQLite only: the keys of erased events (streams_erasedkey) and a trigger that skips an insert of an
event carrying one, as the events table's unique constraints skip a duplicate. PostgreSQL keeps the
keys of erased events in streams_eventkey, which de-duplicates there anyway.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

SQLITE_FORWARDS = (
    "CREATE TABLE IF NOT EXISTS streams_erasedkey (source_id integer NOT NULL, key text NOT NULL, "
    "PRIMARY KEY (source_id, key))",
    "CREATE TRIGGER IF NOT EXISTS streams_event_erased BEFORE INSERT ON streams_event "
    "WHEN EXISTS (SELECT 1 FROM streams_erasedkey k WHERE k.source_id = NEW.source_id "
    "AND k.key IN ('e' || NEW.event_uid, 'a' || NEW.activity_key)) BEGIN SELECT RAISE(IGNORE); END",
)
SQLITE_BACKWARDS = ("DROP TRIGGER IF EXISTS streams_event_erased", "DROP TABLE IF EXISTS streams_erasedkey")


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "sqlite":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('streams', '0008_archived_day'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='source',
            name='deleting_since',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.CreateModel(
            name='ErasureRecord',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('source_name', models.CharField(max_length=100)),
                ('lead_id', models.CharField(max_length=64)),
                ('erased_by', models.CharField(help_text='The admin\'s username, or "command".', max_length=150)),
                ('erased_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('events_removed', models.PositiveIntegerField(default=0)),
                ('samples_scrubbed', models.PositiveIntegerField(default=0, help_text='Alert samples and timeline lines changed.')),
                ('source', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='streams.source')),
                ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-erased_at', '-id'],
            },
        ),
        migrations.RunPython(_run(SQLITE_FORWARDS), _run(SQLITE_BACKWARDS), elidable=False),
    ]
