"""The ingest hot path's storage: one transaction, a set-based insert, one batch row.

De-duplication is the database's: both natural keys (``event_uid``, ``activity_key``) are unique,
and the insert skips any row that would break either (``ON CONFLICT DO NOTHING``), within a request
and across requests, protocols and concurrent transactions alike.
"""

from collections import Counter
from dataclasses import dataclass

import orjson
import psycopg
from django.db import connection, transaction

from streams.models import Batch, Source

COLUMNS = (
    "source_id",
    "munchkin_id",
    "stream",
    "type",
    "event_uid",
    "activity_key",
    "occurred_at",
    "activity_type_id",
    "activity_type_name",
    "lead_id",
    "primary_attribute",
    "primary_attribute_id",
    "campaign_id",
    "campaign_name",
    "program_id",
    "program_name",
    "component_type",
    "component_id",
    "action",
    "user_numeric",
    "user_email",
    "kind",
    "subtype",
    "details",
    "flags",
    "raw",
)
_PG_TYPES = {"source_id": "bigint", "occurred_at": "timestamptz", "activity_type_id": "integer", "flags": "text"}
_RETURNING = "source_id, stream, type, activity_type_id"


@dataclass(frozen=True)
class Stored:
    batch_id: int | None
    accepted: int
    duplicates: int
    counts: list  # [source_id, stream, type, activity_type_id, n] for what was newly stored


def store(rows, receiving, protocol, received_at, meta=None):
    """Commit ``rows`` (from streams.wire) under their sources, exactly once; return what was new.

    Raises django.db.DatabaseError when the database is unavailable: nothing is then committed.
    """
    resolve_sources(rows, receiving)
    # A stable order on the keys keeps two concurrent requests from taking row locks crosswise.
    rows.sort(key=lambda row: (row["event_uid"] or "", row["activity_key"] or ""))
    with transaction.atomic():
        batch = Batch.objects.create(
            received_at=received_at, protocol=protocol, source=receiving, accepted=0, duplicates=0, meta=meta or {}
        )
        inserted = _insert(rows, batch.id, received_at)
        counts = [[*k, n] for k, n in sorted(Counter(inserted).items(), key=lambda item: str(item[0]))]
        accepted = len(inserted)
        if accepted:
            Batch.objects.filter(id=batch.id).update(accepted=accepted, duplicates=len(rows) - accepted, counts=counts)
        else:
            # Nothing new (a redelivery): no hand-off for the consumers to process.
            batch.delete()
    return Stored(batch.id if accepted else None, accepted, len(rows) - accepted, counts)


def resolve_sources(rows, receiving):
    """File each event under the source whose Munchkin ID it carries, else the receiving one (flagged)."""
    munchkins = {row["munchkin_id"].upper() for row in rows if row["munchkin_id"]}
    known = dict(Source.objects.filter(munchkin_id__in=munchkins).values_list("munchkin_id", "id"))
    for row in rows:
        munchkin = row["munchkin_id"].upper()
        row["source_id"] = known.get(munchkin, receiving.id)
        if munchkin and munchkin not in known:
            row["flags"] = sorted({*row["flags"], "munchkin_unknown"})


def _insert(rows, batch_id, received_at):
    if not rows:
        return []
    if connection.vendor == "postgresql":
        return _insert_postgres(rows, batch_id, received_at)
    return _insert_row_by_row(rows, batch_id, received_at)


def _column_values(rows, name):
    if name == "flags":
        return [orjson.dumps(row["flags"]).decode() for row in rows]
    return [row[name] for row in rows]


def _insert_postgres(rows, batch_id, received_at):
    """One statement for the whole request: arrays unnested into rows (measured close to COPY)."""
    arrays = ", ".join(f"%b::{_PG_TYPES.get(name, 'text')}[]" for name in COLUMNS)
    selected = ", ".join(f"u.{name}::jsonb" if name == "flags" else f"u.{name}" for name in COLUMNS)
    sql = (
        f"INSERT INTO streams_event (batch_id, received_at, {', '.join(COLUMNS)}) "
        f"SELECT %b, %b, {selected} FROM unnest({arrays}) AS u({', '.join(COLUMNS)}) "
        f"ON CONFLICT DO NOTHING RETURNING {_RETURNING}"
    )
    params = [batch_id, received_at, *(_column_values(rows, name) for name in COLUMNS)]
    # Binary parameters need psycopg's own cursor: Django's binds on the client side and dumps the
    # arrays as text in pure Python (90 ms of CPU per 500 rows, against 10 ms in binary).
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        return [tuple(found) for found in cursor.fetchall()]


def _insert_row_by_row(rows, batch_id, received_at):
    """SQLite (the embedded default): one statement a row, in-process, so still quick."""
    adapt = connection.ops.adapt_datetimefield_value
    sql = (
        f"INSERT INTO streams_event (batch_id, received_at, {', '.join(COLUMNS)}) "
        f"VALUES (%s, %s, {', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT DO NOTHING RETURNING {_RETURNING}"
    )
    received = adapt(received_at)
    inserted = []
    with connection.cursor() as cursor:
        for row in rows:
            values = [row[name] for name in COLUMNS]
            values[COLUMNS.index("occurred_at")] = adapt(row["occurred_at"])
            values[COLUMNS.index("flags")] = orjson.dumps(row["flags"]).decode()
            cursor.execute(sql, [batch_id, received, *values])
            inserted.extend(tuple(found) for found in cursor.fetchall())
    return inserted
