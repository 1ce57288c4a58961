"""The ingest hot path's storage: one transaction, a set-based insert, one batch row.

On PostgreSQL that is one statement, so one round trip per request (see ``_STORE_SQL``), or one for
several concurrent requests of a process: group commit (``streams.groupcommit``).

De-duplication is the database's, within the source an event is filed under, within a request and
across requests, protocols and concurrent transactions alike. On PostgreSQL through the key table
streams_eventkey (the events table is partitioned on received time, which a unique index there would
have to contain), one key an event: its ``activity_key`` when it has one, else its ``event_uid``. On
SQLite through the events table's own unique constraints on both. Either way ``ON CONFLICT DO
NOTHING`` skips what is already there.

The tenant boundary is drawn here too: an event is filed under the source whose Munchkin ID it
carries only when the receiving source delivers for it (``Source.delivers_for``); any other Munchkin
ID stays with the receiving source, flagged ``munchkin_foreign``, and is listed for its admin.
"""

import contextlib
import struct
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import orjson
import psycopg
from django.conf import settings
from django.db import connection, transaction
from psycopg.adapt import Dumper
from psycopg.postgres import types as pg_types

from streams import groupcommit, partitions
from streams.models import Batch, ForeignMunchkin

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
_RETURNING = "id, source_id, stream, type, activity_type_id"


@dataclass(frozen=True)
class Stored:
    batch_id: int | None
    accepted: int
    duplicates: int
    counts: list  # [source_id, stream, type, activity_type_id, n] for what was newly stored


FOREIGN_FLAG = "munchkin_foreign"


def store(rows, receiving, protocol, received_at, meta=None):
    """Commit ``rows`` (from streams.wire) under their sources, exactly once; return what was new.

    ``receiving`` is the source whose credentials delivered the rows.
    Raises django.db.DatabaseError when the database is unavailable: nothing is then committed.
    """
    foreign = prepare(rows, receiving)
    if not rows:
        return Stored(None, 0, 0, [])
    # The usual batch has no foreign Munchkin ID: one statement, atomic by itself. Otherwise the
    # list an admin links them from is written in the same transaction as the events.
    with transaction.atomic() if foreign else contextlib.nullcontext():
        if connection.vendor == "postgresql":
            batch_id, counts = _store_postgres(rows, receiving, protocol, received_at, meta or {})
        else:
            batch_id, counts = _store_orm(rows, receiving, protocol, received_at, meta or {})
        if foreign:
            note_foreign_munchkins(receiving, foreign, received_at)
    accepted = sum(row[-1] for row in counts)
    return Stored(batch_id, accepted, len(rows) - accepted, counts)


def prepare(rows, receiving):
    """File ``rows`` under their sources and put them in key order, as store() commits them; returns
    the foreign Munchkin IDs (resolve_sources)."""
    foreign = resolve_sources(rows, receiving)
    # A stable order on the keys keeps two concurrent requests from taking row locks crosswise.
    rows.sort(key=lambda row: (row["event_uid"] or "", row["activity_key"] or ""))
    return foreign


def resolve_sources(rows, receiving):
    """File each event under the receiving source or one it delivers for, by the Munchkin ID it carries.

    Returns the other Munchkin IDs seen: their events stay with the receiving source, flagged.
    No query: the receiving source knows its links (``Source.filing_map``).
    """
    filing = receiving.filing_map()
    foreign = set()
    for row in rows:
        munchkin = row["munchkin_id"].upper()
        source_id = filing.get(munchkin) if munchkin else receiving.id
        if source_id is None:
            foreign.add(munchkin)
            row["flags"] = sorted({*row["flags"], FOREIGN_FLAG})
            source_id = receiving.id
        row["source_id"] = source_id
    return foreign


def note_foreign_munchkins(receiving, munchkins, seen_at):
    """Record the foreign Munchkin IDs a source delivered, at most ForeignMunchkin.MAX_PER_SOURCE of them.

    A sender that makes up IDs by the thousand costs one bounded list, never a growing table.
    """
    known = set(ForeignMunchkin.objects.filter(source=receiving).values_list("munchkin_id", flat=True))
    room = max(0, ForeignMunchkin.MAX_PER_SOURCE - len(known))
    fresh = sorted(munchkins - known)[:room]
    ForeignMunchkin.objects.filter(source=receiving, munchkin_id__in=munchkins & known).update(last_seen_at=seen_at)
    ForeignMunchkin.objects.bulk_create(
        [ForeignMunchkin(source=receiving, munchkin_id=m, first_seen_at=seen_at, last_seen_at=seen_at) for m in fresh],
        ignore_conflicts=True,  # a concurrent request noted it first
    )


def _count_order(row):
    """The order of ``counts``, the same as _STORE_SQL's ORDER BY (code points, no type id first)."""
    source_id, stream, event_type, type_id = row[:4]
    return source_id, stream, event_type, type_id is not None, type_id or 0


# --- PostgreSQL: one statement, for one request or a group of them (streams.groupcommit) ------------

_ARRAYS = ", ".join(f"%b::{_PG_TYPES.get(name, 'text')}[]" for name in COLUMNS)


def _selected(name):
    """What the events insert takes for a column from u."""
    if name == "source_id":  # NULL, so refused by the column's NOT NULL, for a source that is gone
        return "(SELECT s.id FROM sources AS s WHERE s.id = u.source_id)"
    return f"u.{name}::jsonb" if name == "flags" else f"u.{name}"


_SELECTED = ", ".join(map(_selected, COLUMNS))
_GROUP = "source_id, stream, type, activity_type_id"
_ORDER = 'source_id, stream COLLATE "C", type COLLATE "C", activity_type_id NULLS FIRST'
# A row's key hash, computed once: the claim inserts it and the events insert looks it up in what
# was claimed (md5 of the text twice a row cost PostgreSQL more than carrying the uuid in u).
_KEY_HASH = (
    "CASE WHEN activity_key IS NOT NULL THEN md5('a' || activity_key)::uuid "
    "WHEN event_uid IS NOT NULL THEN md5('e' || event_uid)::uuid END"
)
# The keys, the events, then each request's batch row with what it counted, in one statement: one
# round trip, atomic by itself (autocommit) or within the caller's transaction. A statement stores
# one request or several (jobs): each job is one request, with its own batch row and received time.
# - A row's key is claimed in streams_eventkey, in a stable order (so two concurrent statements never
#   take row locks crosswise); a key another transaction holds uncommitted makes this one wait for its
#   outcome, as a unique index does. A row is new when its key was claimed here (a row with no key at
#   all is always new). The key is a<activity key> when the row has one (a lead activity, either
#   protocol), else e<eventid>: every retry and journal replay of an activity carries the same
#   activity key as its eventid, so a second key row per I/O activity would only cost its write
#   (13 % of PostgreSQL's CPU for a 20-event request, BENCHMARKS.md issue 15). Keys stored before
#   that, e and a both, are still met.
# - The key partition is the day the event occurred: redeliveries carry the same time, so they meet
#   their key there, whichever partition of streams_event (received time) the first copy went to.
# - Each job's batch id is drawn first, so its events can name it before its row exists. A job whose
#   every event was already stored draws an id but writes no batch row: nothing to hand off. The row
#   records the lowest event id it stored, where the read API's since= starts (streams.api).
# - Each source events are filed under is locked once, FOR KEY SHARE, as a foreign key's check would
#   lock it for every event (migration 0013 dropped that one: a trigger and a query per row). So a
#   source's deletion (streams.deletion, FOR UPDATE) waits for this statement, and once it is gone
#   its events find no row here: source_id NULL, a not-null violation, and nothing is stored.
# - The parameters are arrays whatever the number of jobs: one prepared statement serves them all.
_STORE_SQL = (
    "WITH jobs AS MATERIALIZED (SELECT j.*, nextval(pg_get_serial_sequence('streams_batch', 'id')) AS batch_id "
    "FROM unnest(%b::integer[], %b::timestamptz[], %b::text[], %b::bigint[], %b::integer[], %b::text[]) "
    "AS j(job, received, protocol, receiving, total, meta)), "
    f"u AS MATERIALIZED (SELECT *, {_KEY_HASH} AS key_hash FROM unnest({_ARRAYS}, %b::date[], %b::integer[]) "
    f"AS u({', '.join(COLUMNS)}, key_day, job)), "
    "sources AS MATERIALIZED (SELECT id FROM streams_source WHERE id IN (SELECT source_id FROM u) "
    "ORDER BY id FOR KEY SHARE), "
    f"claimed AS (INSERT INTO streams_eventkey (source_id, hash, day, seen_at) "
    "SELECT source_id, key_hash, key_day, %b FROM u WHERE key_hash IS NOT NULL ORDER BY source_id, key_hash "
    "ON CONFLICT DO NOTHING RETURNING source_id, hash), "
    f"new AS (INSERT INTO streams_event (batch_id, received_at, {', '.join(COLUMNS)}) "
    f"SELECT jobs.batch_id, jobs.received, {_SELECTED} FROM u JOIN jobs USING (job) "
    "WHERE (u.key_hash IS NULL OR (u.source_id, u.key_hash) IN (SELECT source_id, hash FROM claimed)) "
    f"RETURNING batch_id, {_RETURNING}), "
    f"counted AS (SELECT batch_id, {_GROUP}, count(*) AS n, min(id) AS first_id FROM new GROUP BY batch_id, {_GROUP}), "
    "batch AS (INSERT INTO streams_batch "
    "(id, received_at, protocol, source_id, accepted, duplicates, counts, meta, first_event_id) "
    "SELECT batch_id, jobs.received, jobs.protocol, jobs.receiving, t.accepted, jobs.total - t.accepted, t.counts, "
    "jobs.meta::jsonb, t.first_id "
    f"FROM (SELECT batch_id, sum(n)::integer AS accepted, min(first_id) AS first_id, "
    f"jsonb_agg(jsonb_build_array({_GROUP}, n) ORDER BY {_ORDER}) AS counts FROM counted GROUP BY batch_id) AS t "
    "JOIN jobs USING (batch_id)) "
    f"SELECT jobs.job, batch_id, {_GROUP}, n FROM counted JOIN jobs USING (batch_id) ORDER BY jobs.job, {_ORDER}"
)


@dataclass(frozen=True)
class _Job:
    """One request's rows (sources resolved, keys in order) and its batch row's fields."""

    rows: list
    receiving_id: int
    protocol: str
    received_at: object
    meta: dict


def _store_params(jobs):
    kept = _first_of_each_key([job.rows for job in jobs])  # a second copy would find its key unclaimed too
    rows = list(chain.from_iterable(kept))
    # One pass over the rows for all columns (itemgetter and zip run in C), not one per column.
    columns = zip(*map(_ROW_VALUES, rows), strict=True) if rows else ([] for _ in COLUMNS)
    return [
        list(range(len(jobs))),
        [job.received_at for job in jobs],
        _TextArray([job.protocol for job in jobs]),
        [job.receiving_id for job in jobs],
        [len(job.rows) for job in jobs],
        _TextArray([orjson.dumps(job.meta).decode() for job in jobs]),
        *(_column_param(name, values) for name, values in zip(COLUMNS, columns, strict=True)),
        [partitions.key_day(row["occurred_at"]) for row in rows],
        list(chain.from_iterable([index] * len(job_rows) for index, job_rows in enumerate(kept))),
        min(job.received_at for job in jobs),  # the keys' seen_at: within milliseconds of each job's
    ]


_ROW_VALUES = itemgetter(*COLUMNS)
_NOT_TEXT = frozenset(_PG_TYPES) - {"flags"}


def _column_param(name, values):
    if name == "flags":
        return _TextArray([_flags_json(flags) for flags in values])
    if name in _NOT_TEXT:
        return list(values)
    return _TextArray(values)


def _flags_json(flags):
    return orjson.dumps(flags).decode() if flags else "[]"  # most rows have none


class _TextArray:
    """A column of str or None, sent as a binary text[] built in one join (see _TextArrayDumper)."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values


_INT4 = struct.Struct("!i").pack
_NULL = _INT4(-1)
_TEXT_OID = pg_types["text"].oid


class _TextArrayDumper(Dumper):
    """PostgreSQL's binary one-dimensional text[]: what psycopg's list dumper sends, without its
    per-element Python calls (about 0.25 ms per 500-row column, 21 text columns a request)."""

    format = psycopg.pq.Format.BINARY
    oid = pg_types["text"].array_oid

    def dump(self, obj):
        values = obj.values
        if not values:
            return struct.pack("!iii", 0, 0, _TEXT_OID)
        has_null = None in values
        header = struct.pack("!iiiii", 1, has_null, _TEXT_OID, len(values), 1)
        if has_null:
            elements = (_NULL if v is None else _INT4(len(b := v.encode())) + b for v in values)
            return header + b"".join(elements)
        if values.count(values[0]) == len(values):  # e.g. the stream, the Munchkin ID, an unused column
            first = values[0].encode()
            return header + (_INT4(len(first)) + first) * len(values)
        encoded = [value.encode() for value in values]
        return header + b"".join(chain.from_iterable(zip(map(_INT4, map(len, encoded)), encoded, strict=True)))


def _store_jobs(jobs):
    """[(batch id or None, counts)] a job, after one statement; a batch row's counts are these, in this order."""
    params = _store_params(jobs)
    # Binary parameters need psycopg's own cursor: Django's binds on the client side and dumps the
    # arrays as text in pure Python (90 ms of CPU per 500 rows, against 10 ms in binary). Prepared
    # on each pooled connection the first time (the text never changes): no parse or plan after that,
    # unless FLUXO_DB_PREPARED_STATEMENTS turned preparing off (fluxo.env).
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.adapters.register_dumper(_TextArray, _TextArrayDumper)
        cursor.execute(_STORE_SQL, params, prepare=True)
        found = cursor.fetchall()
    batch_ids, counts = [None] * len(jobs), [[] for _ in jobs]
    for job, batch_id, source_id, stream, kind, type_id, n in found:
        batch_ids[job] = batch_id
        counts[job].append([int(source_id), stream, kind, type_id, int(n)])
    return list(zip(batch_ids, counts, strict=True))


def _store_job(job):
    return _store_jobs([job])[0]


# Small requests of this process that store at the same moment share a statement (streams.groupcommit).
# Measured per 20-event request (bench/groupcost.py): PostgreSQL 1.79 ms alone, 1.50 in fours, 1.46 in
# eights; the store's Python 0.66 -> 0.39 -> 0.33. A 500-activity push costs PostgreSQL the same per
# row either way, so in a group it would only add its 30 ms to the others' wait: it runs alone.
GROUP_MAX_ROWS = 100  # rows of a request that may join a group
_group = groupcommit.Combiner(_store_jobs, _store_job, max_jobs=16, max_size=400)


def _store_postgres(rows, receiving, protocol, received_at, meta):
    """(batch id or None, counts) for one request: grouped with concurrent ones when it may be."""
    job = _Job(rows, receiving.id, protocol, received_at, meta)
    # Within a transaction the caller's connection must hold the rows (it may roll them back).
    if connection.in_atomic_block or len(rows) > GROUP_MAX_ROWS or not settings.FLUXO_GROUP_COMMIT:
        return _store_job(job)
    return _group.submit(job, len(rows))


def _first_of_each_key(jobs_rows):
    """Each job's rows whose key no earlier row (of it or an earlier job) has: the others are duplicates."""
    keys = [key for key in map(_key_of, chain.from_iterable(jobs_rows)) if key is not None]
    if len(set(keys)) == len(keys):
        return jobs_rows  # the usual statement: no key twice
    seen, kept = set(), []
    for job_rows in jobs_rows:
        kept.append([])
        for row in job_rows:
            key = _key_of(row)
            if key in seen:
                continue
            if key is not None:
                seen.add(key)
            kept[-1].append(row)
    return kept


def _key_of(row):
    """The key _STORE_SQL claims for a row (its activity key, else its eventid), or None."""
    if row["activity_key"] is not None:
        return row["source_id"], "a", row["activity_key"]
    if row["event_uid"] is not None:
        return row["source_id"], "e", row["event_uid"]
    return None


# --- SQLite (the embedded default): the ORM and one statement a row, in-process, so still quick ---------


def _store_orm(rows, receiving, protocol, received_at, meta):
    with transaction.atomic():
        batch = Batch.objects.create(
            received_at=received_at, protocol=protocol, source=receiving, accepted=0, duplicates=0, meta=meta
        )
        inserted = _insert_row_by_row(rows, batch.id, received_at)
        counts = sorted(([*k, n] for k, n in Counter(row[1:] for row in inserted).items()), key=_count_order)
        accepted = len(inserted)
        if accepted:
            Batch.objects.filter(id=batch.id).update(
                accepted=accepted,
                duplicates=len(rows) - accepted,
                counts=counts,
                first_event_id=min(row[0] for row in inserted),
            )
        else:
            # Nothing new (a redelivery): no hand-off for the consumers to process.
            batch.delete()
    return (batch.id if accepted else None), counts


def _insert_row_by_row(rows, batch_id, received_at):
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
