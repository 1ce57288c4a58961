"""The event search (dashboard.search) and the event page's lookup on a filled partitioned table.

Fills a database of its own with bench/fill.py (``--rows`` events on yesterday, one day's partition), then
times each kind of search through dashboard.search.run, as the page runs it (median of ``--repeat``), and
prints the plans of the event page's two lookups (by id and received time; by id alone).

Run: python bench/search.py [--database fluxo_eventpage_bench] [--rows 1000000] [--repeat 5] [--keep]
(REDIS_URL as for any PostgreSQL run; the database is dropped afterwards unless --keep.)
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import fill  # noqa: E402


def prepare(database, rows):
    if fill.exists(database) and fill.meta(database, "source"):
        source = fill.meta(database, "source")
    else:
        source = fill.create(database)
    fill.steady_layout(database)
    fill.fill(database, [(fill.today() - timedelta(days=1), rows)], source["id"])
    return source


def timed(repeat, call):
    """(median ms, last result) of ``repeat`` calls."""
    took, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took), result


def cases(search, day_start, source_id, now):
    day = {"since": day_start, "until": day_start + timedelta(days=1)}
    month = {"since": now - timedelta(days=31), "until": now}
    from streams.models import Event

    middle = Event.objects.filter(received_at__gte=day["since"] + timedelta(hours=12)).order_by("received_at", "id")
    lead = middle.values_list("lead_id", flat=True).first()
    halfway = middle.values_list("id", flat=True).first()
    return [
        ("a day, no filter (first page)", search.Query(**day)),
        ("31 days, no filter", search.Query(**month)),
        ("a day, no filter, a page at mid-day (cursor)", search.Query(**day, before=halfway)),
        ("a day, lead (an existing one)", search.Query(**day, lead=lead)),
        ("31 days, lead", search.Query(**month, lead=lead)),
        ("a day, type 13 (a quarter of the rows)", search.Query(**day, type="13")),
        ("a day, stream audit (none)", search.Query(**day, stream="audit")),
        ("a day, text that every row has", search.Query(**day, text="attribute val")),
        ("a day, text no row has (scan to the bound)", search.Query(**day, text="needle")),
        ("a day, e-mail no row has (payload scan to the bound)", search.Query(**day, email="jane@example.com")),
        ("a day, campaign no row has (scan to the bound)", search.Query(**day, campaign="Spring")),
        ("31 days, lead + text", search.Query(**month, lead=lead, text="attribute")),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="fluxo_eventpage_bench")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    source = prepare(args.database, args.rows)
    os.environ["DATABASE_URL"] = fill.dsn(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from dashboard import inspector, search

    now = timezone.now()
    day_start = fill.midnight(fill.today() - timedelta(days=1))
    print(f"{args.rows:,} events on {day_start:%Y-%m-%d}; median of {args.repeat}; SCAN_ROWS {search.SCAN_ROWS:,}")
    for name, query in cases(search, day_start, source["id"], now):
        ms, result = timed(args.repeat, lambda q=query: search.run(q, [source["id"]]))
        bound = " (row bound hit)" if result.capped else " (timed out)" if result.timed_out else ""
        print(f"  {name:55} {ms:8.1f} ms  {len(result.rows):3} rows{bound}")
    from streams import export

    query = search.Query(since=day_start, until=day_start + timedelta(days=1))
    ms, result = timed(args.repeat, lambda: search.run(query, [source["id"]], search.CSV_ROWS, export.FIELDS))
    print(f"  {'CSV rows of a day, no filter (' + str(search.CSV_ROWS) + ' rows, read only)':55} {ms:8.1f} ms")
    from streams.models import Event

    event = Event.objects.filter(received_at__gte=day_start + timedelta(hours=6)).order_by("received_at").first()
    for name, at in (("by id and received time", event.received_at), ("by id alone", None)):
        ms, _found = timed(args.repeat, lambda a=at: inspector.find(event.id, [source["id"]], a))
        print(f"  event page lookup {name:37} {ms:8.1f} ms")
        lookup = Event.objects.filter(id=event.id, source_id__in=[source["id"]])
        if at is not None:
            lookup = lookup.filter(received_at=at)
        print("    " + lookup.explain().replace("\n", "\n    "))
    connection.close()
    if not args.keep:
        fill.drop(args.database)


if __name__ == "__main__":
    main()
