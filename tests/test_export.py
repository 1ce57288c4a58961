"""Exports: NDJSON, CSV and Parquet from the export_events command and the read API, read back by DuckDB and pandas."""

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta

import duckdb
import orjson
import pandas
import pyarrow.parquet as pq
import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.test import AsyncClient
from django.utils import timezone

from streams import api_tokens, export, parquet
from streams.models import Event
from tests import processes
from tests.ingest import activity, legacy_push

pytestmark = pytest.mark.django_db

CSV = "/api/v1/events.csv"
PARQUET = "/api/v1/events.parquet"
HUGE = 123456789012345678901234567890
FORMULAS = ['=HYPERLINK("http://x.test")', "+1+1", "-2", "@SUM(A1)", "\tx", "'quoted"]


@pytest.fixture
def window():
    now = timezone.now()
    return (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()


@pytest.fixture
def stored(client, source, api_token):
    """Acme: one activity per formula-like primary attribute, one with text and numbers to keep exact."""
    activities = [activity(1, primary=text) for text in FORMULAS]
    activities.append(activity(2, attributes=[{"name": "é", "value": 0.1}, {"name": "n", "value": 2**63 - 1}]))
    activities[-1]["primaryAttributeValue"] = "Jane Doe"
    # orjson (tests.ingest's helper) refuses integers beyond 64 bits: the body is made with json here.
    body = json.dumps({"munchkinId": source.munchkin_id, "activities": activities}, ensure_ascii=False)
    legacy_push(client, source, api_token, body)
    return list(Event.objects.order_by("received_at", "id"))


def export_to(path, fmt, window, *extra):
    out = io.StringIO()
    since, until = window
    call_command(
        "export_events",
        "--since",
        since,
        "--until",
        until,
        "--format",
        fmt,
        "--output",
        str(path),
        "--json",
        *extra,
        stdout=out,
    )
    return json.loads(out.getvalue())


# --- The files, read as a data engineer would ----------------------------------------------------------


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_duckdb_and_pandas_read_every_format_and_the_raw_payload_round_trips(tmp_path, window, stored, fmt):
    path = tmp_path / f"events.{fmt}"
    summary = export_to(path, fmt, window)
    assert summary["rows"] == len(stored) == 7
    assert summary["bytes"] == path.stat().st_size > 0
    assert (summary["format"], summary["path"]) == (fmt, str(path))
    raws = [event.raw for event in stored]

    reader = {"parquet": "read_parquet", "ndjson": "read_json", "csv": "read_csv"}[fmt]
    options = {"csv": ", all_varchar=true", "ndjson": ", format='newline_delimited'"}.get(fmt, "")
    found = duckdb.sql(f"SELECT id, source_id FROM {reader}('{path}'{options}) ORDER BY id").fetchall()
    assert [int(i) for i, _ in found] == [event.id for event in stored]

    if fmt == "parquet":
        frame = pandas.read_parquet(path)
        assert list(frame["raw"]) == raws
        assert list(frame.columns) == list(export.FIELDS)
    elif fmt == "csv":
        frame = pandas.read_csv(path, dtype=str, keep_default_na=False)
        assert [export.unneutralise(raw) for raw in frame["raw"]] == raws == list(frame["raw"])
        assert list(frame.columns) == list(export.FIELDS)
    else:
        frame = pandas.read_json(path, lines=True, dtype=False)
        assert len(frame) == len(stored)
        lines = path.read_bytes().splitlines()
        # The read API's document: raw as JSON, byte for byte the stored text once dumped again.
        assert [orjson.dumps(orjson.loads(line)["raw"]) for line in lines] == [raw.encode() for raw in raws]


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_an_integer_beyond_64_bits_in_the_raw_payload_survives_every_format(tmp_path, client, source, api_token, fmt):
    body = '{"munchkinId":"123-ABC-456","activities":[{"marketoGUID":"g-1","leadId":1,"activityTypeId":1,'
    body += f'"attributes":[{{"name":"Score","value":{HUGE}}}]}}]}}'
    legacy_push(client, source, api_token, body)
    (event,) = Event.objects.all()
    assert str(HUGE) in event.raw
    path = tmp_path / f"events.{fmt}"
    window = ((event.received_at - timedelta(seconds=1)).isoformat(), timezone.now().isoformat())
    export_to(path, fmt, window)
    if fmt == "parquet":
        assert pq.read_table(path).column("raw").to_pylist() == [event.raw]
    elif fmt == "csv":
        assert [row["raw"] for row in csv.DictReader(path.open(newline=""))] == [event.raw]
    else:  # the standard library keeps big integers exact (pandas.read_json refuses them)
        raw = json.loads(path.read_bytes())["raw"]
        assert json.dumps(raw, ensure_ascii=False, separators=(",", ":")) == event.raw


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised_and_can_be_undone(tmp_path, window, stored):
    path = tmp_path / "events.csv"
    export_to(path, "csv", window)
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    cells = sorted(row["primary_attribute"] for row in rows if row["primary_attribute"] != "Jane Doe")
    assert cells == sorted("'" + text for text in FORMULAS)
    assert sorted(export.unneutralise(cell) for cell in cells) == sorted(FORMULAS)
    assert len(rows) == len(FORMULAS) + 1  # and the last one, Jane Doe, untouched
    assert all(row["raw"].startswith("{") for row in rows)


def test_parquet_has_the_fixed_typed_schema_in_bounded_row_groups(tmp_path, source, stored):
    path = tmp_path / "events.parquet"
    since, until = stored[0].received_at, stored[-1].received_at + timedelta(seconds=1)
    with path.open("wb") as out:
        assert export.write_parquet(export.chunks(Event.objects.all(), since, until, chunk=2), out, row_group=3) == 7
    written = pq.ParquetFile(path)
    assert written.schema_arrow == parquet.SCHEMA
    assert str(parquet.SCHEMA.field("received_at").type) == "timestamp[us, tz=UTC]"
    assert str(parquet.SCHEMA.field("flags").type) == "list<item: string>"
    assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [4, 3]
    table = written.read()
    assert table.column("received_at").to_pylist()[0] == stored[0].received_at
    assert table.column("source_id").to_pylist() == [source.id] * 7


def test_chunks_walk_the_window_by_received_time_then_id_and_lose_nothing(client, source, api_token):
    for n in range(3):
        legacy_push(client, source, api_token, [activity(1, primary=f"{n}-{i}") for i in range(3)])
    before = timezone.now() - timedelta(hours=1)
    Event.objects.filter(primary_attribute__startswith="2-").update(received_at=before)  # out of id order
    chunks = list(export.chunks(Event.objects.all(), before, timezone.now() + timedelta(seconds=1), chunk=2))
    assert [len(rows) for rows in chunks] == [2, 2, 2, 2, 1]
    ids = [row[0] for rows in chunks for row in rows]
    expected = Event.objects.order_by("received_at", "id").values_list("id", flat=True)
    assert ids == list(expected) and len(set(ids)) == 9
    assert export.FIELDS[3:] == tuple(export.FIELDS[3:])  # the store's columns, after id, batch, time


# --- The command -----------------------------------------------------------------------------------------


def test_the_command_filters_by_source_name_or_id_and_stream(tmp_path, client, window, stored, other_source):
    legacy_push(client, other_source, api_tokens_for(other_source), [activity(1)])
    path = tmp_path / "eu.ndjson"
    assert export_to(path, "ndjson", window, "--source", "Acme EU")["rows"] == 1
    assert export_to(path, "ndjson", window, "--source", str(other_source.id), "--source", "Acme")["rows"] == 8
    assert export_to(path, "ndjson", window, "--stream", "audit")["rows"] == 0


def api_tokens_for(source):
    from streams.auth import issue_api_token

    return issue_api_token(source)


def test_the_command_writes_csv_to_stdout_and_refuses_what_it_cannot_do(capfdbinary, window, stored):
    since, until = window
    call_command("export_events", "--since", since, "--until", until, "--format", "csv", "--output", "-")
    lines = capfdbinary.readouterr().out.splitlines()
    assert lines[0].decode() == ",".join(export.FIELDS) and len(lines) == 8
    with pytest.raises(CommandError, match="stdout"):
        call_command("export_events", "--since", since, "--until", until, "--format", "parquet", "--output", "-")
    with pytest.raises(CommandError, match="after"):
        call_command("export_events", "--since", until, "--until", since, "--format", "csv", "--output", "-")
    with pytest.raises(CommandError, match="no source"):
        call_command(*("export_events", "--since", since, "--until", until), "--format=csv", "--output=-", "--source=x")


# --- The read API's files -----------------------------------------------------------------------------------


@pytest.fixture
def admin_token(admin_user):
    return api_tokens.create(admin_user)[1]


def test_the_read_api_serves_csv_and_parquet_for_a_range(client, admin_token, window, stored, tmp_path):
    since, until = window
    auth = {"HTTP_AUTHORIZATION": f"Bearer {admin_token}"}
    response = client.get(CSV, {"since": since, "until": until, "type": stored[0].type}, **auth)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    frame = pandas.read_csv(io.BytesIO(b"".join(response.streaming_content)), dtype=str, keep_default_na=False)
    assert list(frame["raw"]) == [event.raw for event in stored if event.type == stored[0].type]

    response = client.get(PARQUET, {"since": since, "until": until, "activity_type_id": "2"}, **auth)
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    (tmp_path / "api.parquet").write_bytes(body)
    expected = [(event.raw,) for event in stored if event.activity_type_id == 2]
    assert duckdb.sql(f"SELECT raw FROM '{tmp_path / 'api.parquet'}'").fetchall() == expected


def test_files_need_a_bounded_range_and_the_read_apis_rules(client, admin_token, teammate, stranger, window, stored):
    since, until = window
    auth = {"HTTP_AUTHORIZATION": f"Bearer {admin_token}"}
    for path in (CSV, PARQUET):
        assert client.get(path, {"since": since}, **auth).json()["error"] == "bad_range"
        far = (timezone.now() + timedelta(days=40)).isoformat()
        assert client.get(path, {"since": since, "until": far}, **auth).json()["error"] == "bad_range"
        assert client.get(path, {"since": since, "until": until, "limt": "1"}, **auth).status_code == 400
        assert client.get(path, {"since": since, "until": until}).status_code == 401
        assert client.post(path, {}, **auth).status_code == 405
    for user, expected in ((teammate, 8), (stranger, 1)):
        token = api_tokens.create(user)[1]
        response = client.get(CSV, {"since": since, "until": until}, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert len(b"".join(response.streaming_content).splitlines()) == expected  # the header alone for a stranger


def test_under_asgi_csv_is_streamed_chunk_by_chunk(admin_token, client, source, api_token, window):
    legacy_push(client, source, api_token, [activity(1) for _ in range(export.CHUNK + 10)])
    since, until = window
    response = async_to_sync(AsyncClient().get)(
        CSV, {"since": since, "until": until}, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status_code == 200
    assert response.is_async

    async def collect():
        return [chunk async for chunk in response.streaming_content]

    chunks = async_to_sync(collect)()
    assert [chunk.count(b"\r\n") for chunk in chunks] == [1, export.CHUNK, 10]


def test_under_asgi_parquet_is_sent_in_blocks_and_reads_back(admin_token, client, source, api_token, window, tmp_path):
    legacy_push(client, source, api_token, [activity(1) for _ in range(20)])
    since, until = window
    response = async_to_sync(AsyncClient().get)(
        PARQUET, {"since": since, "until": until}, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status_code == 200 and response.is_async

    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    (tmp_path / "asgi.parquet").write_bytes(async_to_sync(collect)())
    assert pq.read_table(tmp_path / "asgi.parquet").num_rows == 20


@pytest.mark.slow
def test_the_database_unavailable_is_a_503_for_files_too(tmp_path, settings):
    nowhere = "postgres://postgres@127.0.0.1:1/nope"
    env = processes.bare_env(tmp_path, DATABASE_URL=nowhere, REDIS_URL=settings.FLUXO_REDIS_URL)
    query = "?since=2026-11-01T00:00:00Z&until=2026-11-02T00:00:00Z"
    with processes.daphne(env) as base:
        for path in (CSV, PARQUET):
            token = {"Authorization": "Bearer fxp_x"}
            status, headers, body = processes.http("GET", base + path + query, headers=token)
            assert status == 503, (path, body)
            assert headers["Retry-After"] == "30"
            assert json.loads(body)["error"] == "unavailable"


_WEB_PROCESS = """
import sys
import django
django.setup()
import fluxo.asgi
from django.urls import get_resolver
get_resolver().url_patterns
print(",".join(name for name in ("pyarrow", "numpy") if name in sys.modules))
"""


def test_a_web_process_loads_no_pyarrow_until_it_writes_parquet(tmp_path):
    # pyarrow with numpy is about 40 MiB of a process (streams.parquet): a web process that only
    # receives events must not carry it. A Redis URL of its own, so nothing embedded is started.
    env = processes.bare_env(tmp_path, REDIS_URL="redis://127.0.0.1:9/0", DJANGO_SETTINGS_MODULE="fluxo.settings")
    command = [sys.executable, "-c", _WEB_PROCESS]
    done = subprocess.run(command, cwd=processes.ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
