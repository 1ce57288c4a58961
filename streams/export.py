"""Streaming exports of stored events: NDJSON, CSV and Parquet, in constant memory.

One reader and three writers, shared by ``manage.py export_events``, the read API's ``.csv`` and
``.parquet`` and the archives (streams.archive). The column list is the read API's (``FIELDS``: id,
batch id, received time, then every column streams.store writes), so a column added to the store
appears everywhere at once.

The reader walks a received-time window ``[since, until)`` in keyset chunks on (received_at, id),
the order of the (received_at, id) index: each chunk is one bounded index range, never an OFFSET and
never a walk of the primary key past the window, and every query carries the time bounds, so a
time-partitioned table can skip the partitions outside the window.

CSV cells are neutralised against spreadsheet formula injection (``neutralise``); the raw payload, a
JSON object, always starts with ``{`` and so is never touched. Parquet has a fixed schema
(``streams.parquet.SCHEMA``) and is written in row groups of ``ROW_GROUP`` rows, so memory stays
bounded however many rows there are.
"""

import csv
import io

import orjson
import psycopg
from django.core.exceptions import EmptyResultSet
from django.db import connection

from streams import api
from streams.models import Source

FIELDS = api.FIELDS
FORMATS = ("parquet", "ndjson", "csv")
CONTENT_TYPES = {"parquet": "application/vnd.apache.parquet", "ndjson": "application/x-ndjson", "csv": "text/csv"}
# Rows per query: large enough to amortise a round trip, small enough to keep a chunk's memory small.
CHUNK = 5000
# Rows per Parquet row group: about 50 MB of Arrow memory with 1 kB payloads; readers scan groups in parallel.
ROW_GROUP = 50_000

_RECEIVED = FIELDS.index("received_at")
_FLAGS = FIELDS.index("flags")
# OWASP's list for CSV injection, plus the quote itself, so neutralising can always be undone.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


# --- Reading --------------------------------------------------------------------------------------------


def chunks(events, since, until, chunk=CHUNK):
    """Lists of up to ``chunk`` rows (tuples in FIELDS order) of ``events`` received in [since, until).

    Ordered by (received_at, id). ``events`` is any Event queryset (already scoped and filtered).
    """
    window = events.filter(received_at__gte=since, received_at__lt=until).order_by("received_at", "id")
    query = window
    while True:
        rows = _fetch(query.values_list(*FIELDS)[:chunk])
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        last = rows[-1]
        received, last_id = last[_RECEIVED], last[0]
        # Rows of one request share a received time: the keyset continues within it by id.
        query = window.filter(received_at__gte=received).exclude(received_at=received, id__lte=last_id)


def _fetch(query):
    """The rows of a values_list query; on PostgreSQL in binary, a third less client CPU than Django's text."""
    if connection.vendor != "postgresql":
        return list(query)
    try:
        sql, params = query.query.sql_with_params()
    except EmptyResultSet:  # e.g. a reader with no source shared with them: nothing to ask for
        return []
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        rows = cursor.fetchall()
    if rows and isinstance(rows[0][_FLAGS], str | bytes):  # jsonb as text, as Django's loader gives it
        rows = [(*row[:_FLAGS], orjson.loads(row[_FLAGS]), *row[_FLAGS + 1 :]) for row in rows]
    return rows


# --- Writers: each takes the chunks and a binary file, and returns the rows written ------------------------


def write_ndjson(chunks, out):
    """The read API's NDJSON document, one event a line."""
    written = 0
    for rows in chunks:
        out.write(ndjson_bytes(rows))
        written += len(rows)
    return written


def ndjson_bytes(rows):
    return b"".join(api.dump(api.result(dict(zip(FIELDS, row, strict=True)))) + b"\n" for row in rows)


def write_csv(chunks, out):
    """A header, then one line per event (RFC 4180, UTF-8, CRLF line ends)."""
    written = 0
    out.write(csv_header())
    for rows in chunks:
        out.write(csv_bytes(rows))
        written += len(rows)
    return written


def csv_header():
    return _csv_lines([FIELDS])


def csv_bytes(rows):
    """CSV lines of rows: times ISO 8601, flags a JSON array, null empty, text neutralised (``neutralise``)."""
    return _csv_lines(_csv_row(row) for row in rows)


_OCCURRED = FIELDS.index("occurred_at")


def _csv_row(row):
    # One pass a row, no call a cell: this is the CSV export's hot loop (about 6M cells a minute).
    cells = [("'" + v if v.startswith(_FORMULA_STARTS) else v) if v.__class__ is str else v for v in row]
    cells[_RECEIVED] = cells[_RECEIVED].isoformat()
    if cells[_OCCURRED] is not None:
        cells[_OCCURRED] = cells[_OCCURRED].isoformat()
    cells[_FLAGS] = orjson.dumps(cells[_FLAGS]).decode()
    return cells


def _csv_lines(rows):
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue().encode()


def neutralise(text):
    """Text a spreadsheet will not run as a formula: a leading = + - @ tab, CR or ' gets a ' in front.

    Undo it by removing one leading ' from any cell that starts with one (``unneutralise``).
    """
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def unneutralise(text):
    return text[1:] if text.startswith("'") else text


def write_parquet(chunks, out, row_group=ROW_GROUP):
    """A Parquet file of streams.parquet.SCHEMA (zstd), one row group per ``row_group`` rows."""
    from streams import parquet  # only here: pyarrow is 40 MiB of a process (see streams.parquet)

    return parquet.write(chunks, out, row_group)


WRITERS = {"parquet": write_parquet, "ndjson": write_ndjson, "csv": write_csv}


def write(fmt, chunks, out):
    """Write ``chunks`` to the binary file ``out`` in format ``fmt``; returns the rows written."""
    return WRITERS[fmt](chunks, out)


def source_ids(values):
    """The ids of the sources named by ``values`` (ids or names); ValueError for one that does not exist."""
    ids = []
    for value in values:
        found = Source.objects.filter(id=int(value)) if value.isdigit() else Source.objects.filter(name=value)
        source = found.first()
        if source is None:
            raise ValueError(f"no source {value!r} (give an id or a name)")
        ids.append(source.id)
    return ids
