"""What each index on streams_event costs PostgreSQL per inserted row (issue 15).

Copies up to 40,000 rows of the bench database's fullest events partition into a database of its own
(fluxo_perf_idx by default, dropped and created again each run; never the bench's), then inserts them
500 per statement in autocommit into a plain copy of the table with no index, all of them, and all but
one, in interleaved rounds, reading that backend's CPU from /proc (whole ticks: ~1 µs/row at 40k rows).

Run: DATABASE_URL=<bench db> PGURL=postgres://postgres@127.0.0.1:5432 python bench/indexcost.py [ROUNDS] [DBNAME]
"""

import os
import statistics
import sys
from pathlib import Path

import psycopg

TICK = os.sysconf("SC_CLK_TCK")
ROWS = 40_000
INDEXES = {
    "pkey (id, received_at)": "CREATE UNIQUE INDEX ON t (id, received_at)",
    "(received_at, id)": "CREATE INDEX ON t (received_at, id)",
    "(source_id, stream, received_at)": "CREATE INDEX ON t (source_id, stream, received_at)",
    "(lead_id, occurred_at)": "CREATE INDEX ON t (lead_id, occurred_at)",
    "(type)": "CREATE INDEX ON t (type)",
    "(activity_type_id, received_at)": "CREATE INDEX ON t (activity_type_id, received_at)",
    "(batch_id)": "CREATE INDEX ON t (batch_id)",
}
_PARTITIONS = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE inhparent = 'streams_event'::regclass"
)
_COLUMNS = (
    "SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) "
    "FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
)


def copy_rows(src, dst):
    """The fullest partition's rows into dst's table ``stage`` (numbered by rn); its column list."""
    parts = [name for (name,) in src.execute(_PARTITIONS)]
    fullest = max(parts, key=lambda p: src.execute(f"SELECT count(*) FROM {p}").fetchone()[0])
    columns = src.execute(_COLUMNS, [fullest]).fetchone()[0]
    dst.execute(f"CREATE TABLE stage ({columns})")
    source = f"COPY (SELECT * FROM {fullest} LIMIT {ROWS}) TO STDOUT (FORMAT BINARY)"
    with src.cursor().copy(source) as out, dst.cursor().copy("COPY stage FROM STDIN (FORMAT BINARY)") as into:
        for chunk in out:
            into.write(chunk)
    dst.execute("ALTER TABLE stage ADD COLUMN rn serial")
    dst.execute("CREATE INDEX ON stage (rn)")
    dst.execute("ANALYZE stage")
    return columns


def backend_cpu(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def insert_cost(dst, columns, indexes, rows):
    """Backend CPU µs per row for inserting ``rows`` 500 at a time into a fresh table with ``indexes``."""
    dst.execute("DROP TABLE IF EXISTS t")
    dst.execute(f"CREATE TABLE t ({columns})")
    for name in indexes:
        dst.execute(INDEXES[name])
    names = ", ".join(column.split(" ")[0] for column in columns.split(", "))
    pid = dst.execute("SELECT pg_backend_pid()").fetchone()[0]
    started = backend_cpu(pid)
    for low in range(0, rows, 500):
        dst.execute(f"INSERT INTO t SELECT {names} FROM stage WHERE rn > {low} AND rn <= {low + 500}")
    return (backend_cpu(pid) - started) / rows * 1e6


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    database = sys.argv[2] if len(sys.argv) > 2 else "fluxo_perf_idx"
    with psycopg.connect(os.environ["PGURL"] + "/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {database}")
    src = psycopg.connect(os.environ["DATABASE_URL"])
    dst = psycopg.connect(os.environ["PGURL"] + "/" + database, autocommit=True)
    columns = copy_rows(src, dst)
    rows = dst.execute("SELECT count(*) FROM stage").fetchone()[0]
    sets = [("none", []), ("all", list(INDEXES))]
    sets += [(f"all but {name}", [other for other in INDEXES if other != name]) for name in INDEXES]
    costs = {name: [] for name, _ in sets}
    for _ in range(rounds):
        for name, indexes in sets:
            costs[name].append(insert_cost(dst, columns, indexes, rows))
    print(f"{rows} rows, backend CPU µs per row (median; each round)")
    for name, values in costs.items():
        print(f"  {name:<45}{statistics.median(values):6.1f}  ({', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
