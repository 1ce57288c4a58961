"""Dropping a partition (issue 10): the parent's exclusive lock is not held while the files go.

The DETACH must be committed before the DROP TABLE: the files are removed at the DROP's commit, half
a second a GB measured (BENCHMARKS.md, "Partitioned storage"), and every insert waits for the parent.
"""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection

from streams import partitions
from streams.store import store
from tests.test_partitions import day, legacy_rows, past_partitions

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="partitions exist on PostgreSQL only"),
]

ATTACHED = "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = %s)"


def test_a_partition_is_detached_and_committed_before_its_table_is_dropped(source, settings):
    settings.FLUXO_RETENTION_DAYS = 1
    past_partitions(4)
    old = day(-3) + timedelta(hours=12)
    store(legacy_rows("g-old", occurred=old.isoformat()), source, "legacy", old)
    name = partitions.partition_name("streams_event", day(-3))
    seen = []  # at each DROP TABLE: still a partition, as another session sees it?

    def watch(execute, sql, params, many, context):
        if sql.startswith(f"DROP TABLE IF EXISTS {name}"):
            with psycopg.connect(**connection.get_connection_params()) as other:
                seen.append(other.execute(ATTACHED, [name]).fetchone()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        dropped = partitions.drop_expired()
    assert name in dropped
    assert seen == [False]
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        assert cursor.fetchone()[0] is None
