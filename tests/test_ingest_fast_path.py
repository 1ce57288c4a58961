"""The ingest shortcuts of issue 2 keep the receivers' behaviour: the per-process source cache, the
Munchkin lookup skipped for a batch of the receiving source, the one-statement store, the leaner
indexes, and the admin's write-only introspection secret."""

import asyncio
import time

import orjson
import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from streams import receivers
from streams.auth import issue_api_token
from streams.models import Batch, Event, Source, SourceToken
from tests.ingest import legacy_post

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_source_cache():
    receivers.forget_source()
    yield
    receivers.forget_source()


class Clock:
    """Stands in for time.monotonic in streams.receivers: the cache's age without waiting."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(receivers.time, "monotonic", clock)
    return clock


def body(*guids, munchkin="123-ABC-456"):
    activities = [
        {"marketoGUID": guid, "leadId": 7, "activityDate": "2026-04-20T18:43:56Z", "activityTypeId": 1}
        for guid in guids
    ]
    return orjson.dumps({"munchkinId": munchkin, "activities": activities})


def test_a_setting_changed_in_another_process_applies_once_the_cache_expires(client, source, clock):
    token = issue_api_token(source)
    assert legacy_post(client, source, None, body("g-1"), query=f"?token={token}").status_code == 401  # and cached
    # As another process would: an UPDATE that sends no signal to this one.
    Source.objects.filter(id=source.id).update(allow_query_token=True)
    clock.now += receivers.SOURCE_CACHE_SECONDS - 0.5
    assert legacy_post(client, source, None, body("g-1"), query=f"?token={token}").status_code == 401
    clock.now += 1.0
    assert legacy_post(client, source, None, body("g-1"), query=f"?token={token}").status_code == 200


def test_a_setting_saved_in_this_process_applies_at_once(client, source, clock):
    token = issue_api_token(source)
    assert legacy_post(client, source, None, body("g-1"), query=f"?token={token}").status_code == 401
    source.allow_query_token = True
    source.save()
    assert legacy_post(client, source, None, body("g-1"), query=f"?token={token}").status_code == 200


def test_a_revoked_token_is_refused_at_once(client, source, clock):
    token = issue_api_token(source)
    assert legacy_post(client, source, token, body("g-1")).status_code == 200
    SourceToken.objects.filter(source=source).update(revoked_at="2026-01-01T00:00:00Z")
    assert legacy_post(client, source, token, body("g-2")).status_code == 401


def test_a_source_is_looked_up_once_and_a_batch_of_its_own_munchkin_needs_no_lookup(client, source):
    token = issue_api_token(source)
    assert legacy_post(client, source, token, body("g-1")).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert legacy_post(client, source, token, body("g-2", "g-3")).status_code == 200
    assert [q["sql"] for q in queries if '"streams_source"' in q["sql"]] == []
    assert Event.objects.filter(source=source).count() == 3
    assert [event.flags for event in Event.objects.all()] == [[], [], []]


def test_a_batch_of_a_linked_munchkin_is_filed_under_the_source_it_is_delivered_for(client, source, other_source):
    source.delivers_for.add(other_source)
    token = issue_api_token(source)
    assert legacy_post(client, source, token, body("g-1", munchkin="987-xyz-654")).status_code == 200
    assert (Event.objects.get().source_id, Event.objects.get().flags) == (other_source.id, [])
    assert legacy_post(client, source, token, body("g-2", munchkin="555-NOP-555")).status_code == 200
    unknown = Event.objects.get(activity_key="555-NOP-555|g-2")
    assert (unknown.source_id, unknown.flags) == (source.id, ["munchkin_foreign"])


def test_the_links_of_a_source_are_read_once_per_cached_source(client, source, other_source):
    source.delivers_for.add(other_source)
    token = issue_api_token(source)
    assert legacy_post(client, source, token, body("g-1")).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert legacy_post(client, source, token, body("g-2", munchkin="987-XYZ-654")).status_code == 200
    assert [q["sql"] for q in queries if "delivers_for" in q["sql"]] == []


def test_the_batch_row_holds_what_the_acknowledgement_counted(client, source, other_source):
    source.delivers_for.add(other_source)
    token = issue_api_token(source)
    content = orjson.dumps(
        {
            "munchkinId": "123-ABC-456",
            "activities": [
                {"marketoGUID": "a", "leadId": 1, "activityTypeId": 2, "munchkinId": "987-XYZ-654"},
                {"marketoGUID": "b", "leadId": 1, "activityTypeId": 1},
                {"marketoGUID": "c", "leadId": 1, "activityTypeId": 1},
                {"marketoGUID": "d", "leadId": 1},
            ],
        }
    )
    assert legacy_post(client, source, token, content).json() == {"accepted": 4, "duplicates": 0}
    batch = Batch.objects.get()
    assert (batch.protocol, batch.source_id, batch.accepted, batch.duplicates) == ("legacy", source.id, 4, 0)
    assert batch.meta == {"push": {"munchkinId": "123-ABC-456"}}
    stored = {}
    for event in Event.objects.all():
        assert event.batch_id == batch.id
        kind = (event.source_id, event.stream, event.type, event.activity_type_id)
        stored[kind] = stored.get(kind, 0) + 1
    assert len(stored) == 3
    assert sorted(batch.counts, key=str) == sorted(([*kind, n] for kind, n in stored.items()), key=str)
    # In a stable order: by source, stream, type (code points), type id (none first).
    order = [(s, stream, kind, type_id is not None, type_id or 0) for s, stream, kind, type_id, _ in batch.counts]
    assert order == sorted(order)
    # The same push again: all duplicates, no batch row (nothing new to hand off).
    assert legacy_post(client, source, token, content).json() == {"accepted": 0, "duplicates": 4}
    assert Batch.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_source_deleted_elsewhere_while_cached_gets_503_then_404(client, source, monkeypatch):
    token = issue_api_token(source)
    assert legacy_post(client, source, token, body("g-1")).status_code == 200  # cached now
    with connection.cursor() as cursor:  # deleted as another process would: no signal here
        for table in ("streams_event", "streams_batch", "streams_sourcetoken"):
            cursor.execute(f"DELETE FROM {table} WHERE source_id = %s", [source.id])
        cursor.execute("DELETE FROM streams_source WHERE id = %s", [source.id])
    # Token auth reads the (now empty) token table: 401, nothing stored.
    assert legacy_post(client, source, token, body("g-2")).status_code == 401
    # A batch that reaches the insert breaks the foreign key: 503, nothing committed, never a 200 or 500.
    monkeypatch.setattr(receivers, "authenticate_push", lambda request, cached: True)
    response = legacy_post(client, source, token, body("g-3"))
    assert response.status_code == 503
    assert Event.objects.count() == 0
    monkeypatch.undo()
    assert legacy_post(client, source, token, body("g-3")).status_code == 404


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_event_table_has_no_redundant_indexes():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'streams_event'")
        definitions = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'streams_event'::regclass AND contype = 'f'"
        )
        foreign_keys = cursor.fetchone()[0]
    assert not [d for d in definitions if "pattern_ops" in d]
    assert not [d for d in definitions if d.endswith("USING btree (source_id)")]
    # Partitioned: the primary key (id, received_at) is its only unique index; the keys are streams_eventkey's.
    assert len([d for d in definitions if d.startswith("CREATE UNIQUE INDEX")]) == 1
    # None: the store's statement checks the source once per statement, not a trigger per row
    # (migration 0013, tests/test_store_sources.py); batches are partitioned too: no key to point at.
    assert foreign_keys == 0


# --- The admin's introspection client secret ----------------------------------------------------------


@pytest.fixture
def admin_client(client, settings):
    settings.FLUXO_ALLOW_PRIVATE_URLS = True  # the introspection URL below is on this machine
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def change(source, **fields):
    form = {
        "name": source.name,
        "munchkin_id": source.munchkin_id,
        "legacy_auth": "oauth_introspection",
        "oauth_introspection_url": "http://127.0.0.1:9/introspect",
        "oauth_introspection_client_id": "fluxo",
        "auth_grace_hours": "24",
        "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
        "tokens-TOTAL_FORMS": "0",
        "tokens-INITIAL_FORMS": "0",
        "tokens-MIN_NUM_FORMS": "0",
        "tokens-MAX_NUM_FORMS": "1000",
    }
    return {**form, **fields}


def test_the_admin_never_shows_the_introspection_secret_and_blank_keeps_it(admin_client, source):
    path = f"/admin/streams/source/{source.pk}/change/"
    response = admin_client.post(path, change(source, oauth_introspection_client_secret="s3cret-Value"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    source.refresh_from_db()
    assert source.oauth_introspection_client_secret == "s3cret-Value"
    page = admin_client.get(path).content.decode()
    assert "s3cret-Value" not in page
    assert 'type="password"' in page and 'name="oauth_introspection_client_secret"' in page
    # Saved again with the field left blank: the secret stays.
    assert admin_client.post(path, change(source)).status_code == 302
    source.refresh_from_db()
    assert source.oauth_introspection_client_secret == "s3cret-Value"
    # A new one replaces it; the box removes it.
    assert admin_client.post(path, change(source, oauth_introspection_client_secret="next")).status_code == 302
    source.refresh_from_db()
    assert source.oauth_introspection_client_secret == "next"
    form = change(source, legacy_auth="token", clear_oauth_introspection_client_secret="on")
    assert admin_client.post(path, form).status_code == 302
    source.refresh_from_db()
    assert source.oauth_introspection_client_secret == ""


# --- The ingest route of fluxo.asgi: the whole request in one thread hand-off -------------------------


def asgi_call(method, path, content=b"", headers=None, query=b"", parts=2):
    """(status, headers, body) of one request through fluxo.asgi.application, as daphne calls it."""
    from fluxo.asgi import application

    pairs = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    pairs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if content:
        pairs.append((b"content-length", str(len(content)).encode()))
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query}
    scope.update(headers=pairs, http_version="1.1", scheme="http", server=("127.0.0.1", 80), root_path="")
    scope.update(client=("127.0.0.1", 1), asgi={"version": "3.0"})
    # As a server hands over a body: in parts (daphne's 8 KiB), or whole (fluxo.daphne_main, up to 1 MiB).
    chunks = [content[:1000], content[1000:]] if parts == 2 else [content]
    sent = []

    async def receive():
        if chunks:
            part = chunks.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(chunks)}
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    async_to_sync(application)(scope, receive, send)
    start = sent[0]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def asgi_push(source, content, token, parts=2):
    return asgi_call(
        "POST", f"/ingest/{source.ingest_key}/marketo-push/", content, {"Authorization": f"Bearer {token}"}, parts=parts
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("parts", [1, 2])
def test_through_asgi_a_body_whole_or_in_parts_is_read_whole(source, parts):
    token = issue_api_token(source)
    content = body(*(f"w-{n}" for n in range(30)))
    assert len(content) > 1000  # so that two parts are two
    status, _, answer = asgi_push(source, content, token, parts=parts)
    assert (status, orjson.loads(answer)) == (200, {"accepted": 30, "duplicates": 0})
    assert Event.objects.count() == 30


@pytest.mark.django_db(transaction=True)
def test_through_asgi_a_push_is_stored_and_each_refusal_keeps_its_status(source, settings):
    token = issue_api_token(source)
    status, _, answer = asgi_push(source, body("g-1", "g-2"), token)
    assert (status, orjson.loads(answer)) == (200, {"accepted": 2, "duplicates": 0})
    assert asgi_push(source, body("g-1"), token)[2] == b'{"accepted": 0, "duplicates": 1}'
    assert sorted(Event.objects.values_list("activity_key", flat=True)) == ["123-ABC-456|g-1", "123-ABC-456|g-2"]
    assert asgi_push(source, body("g-3"), "wrong-token")[0] == 401
    assert asgi_push(source, b'{"munchkinId": "123-ABC-456", "activities": [', token)[0] == 400
    assert asgi_call("POST", "/ingest/no-such-key/marketo-push/", body("g-4"))[0] == 404
    assert asgi_call("PUT", f"/ingest/{source.ingest_key}/marketo-push/", body("g-4"))[0] == 405
    assert asgi_call("GET", f"/ingest/{source.ingest_key}/marketo-push/")[0] == 200
    status, _, answer = asgi_call("GET", f"/ingest/{source.ingest_key}/adobe-io/", query=b"challenge=abc")
    assert (status, orjson.loads(answer)) == (200, {"challenge": "abc"})
    settings.FLUXO_MAX_BODY_BYTES = 2000
    status, _, answer = asgi_push(source, body(*(f"big-{n}" for n in range(40))), token)
    assert (status, orjson.loads(answer)["error"]) == (413, "too_large")
    assert Event.objects.count() == 2


needs_postgres = pytest.mark.skipif("connection.vendor != 'postgresql'")


def _direct_connection():
    """A connection of the test's own, outside Django and its pool."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"], autocommit=True
    )


def _pool_idle():
    """(connections in the pool, of them idle): all idle once every request has given its own back."""
    stats = connection.pool.get_stats()
    return stats["pool_size"], stats["pool_available"]


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_through_asgi_every_request_gives_its_connection_back_to_the_pool(source):
    from fluxo.asgi import INGEST_THREADS

    token = issue_api_token(source)
    connection.close()  # this test's own connection goes back too
    for n in range(INGEST_THREADS + 4):  # more requests than threads: every thread used, some twice
        assert asgi_push(source, body(f"g-{n}"), token)[0] == 200
    size, idle = _pool_idle()
    assert size >= 1 and idle == size
    assert Event.objects.count() == INGEST_THREADS + 4


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_through_asgi_connections_the_server_closed_are_replaced(source):
    token = issue_api_token(source)
    assert asgi_push(source, body("g-1"), token)[0] == 200
    connection.close()
    # As a server restart does: every pooled connection is ended by the server (all idle in the pool).
    with _direct_connection() as admin:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ended = [pid for (pid,) in admin.execute(query).fetchall()]
        assert ended
        for pid in ended:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        while admin.execute(f"{query} AND pid = ANY(%s)", [ended]).fetchall():
            time.sleep(0.05)  # until they have exited (their FATAL message sent)
    # Alone, the pool's check finds every ended connection first (no 503). In the full suite a push can
    # still meet an ended connection and answer 503 (not yet understood; at most once per ingest
    # thread; the sender retries): the promise kept here is the receivers' own: 503s until recovered,
    # then 200, nothing stored twice or lost.
    from fluxo.asgi import INGEST_THREADS

    statuses = []
    while not statuses or statuses[-1] != 200:
        statuses.append(asgi_push(source, body("g-2"), token)[0])
        assert len(statuses) <= INGEST_THREADS + 1 and set(statuses) <= {200, 503}, statuses
    assert Event.objects.count() == 2


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_through_asgi_an_unavailable_database_is_a_503_with_retry_after(source, settings):
    token = issue_api_token(source)
    assert asgi_push(source, body("g-1"), token)[0] == 200  # the source is cached now
    # The database goes away: its name no longer exists on the server, so new connections fail.
    name = settings.DATABASES["default"]["NAME"]
    settings.DATABASES["default"]["NAME"] = "fluxo_no_such_database"
    connection.close()
    connection.close_pool()  # the pool keeps its connection parameters: a new one takes the new name
    try:
        status, headers, answer = asgi_push(source, body("g-2"), token)
    finally:
        settings.DATABASES["default"]["NAME"] = name
        connection.close_pool()
    assert (status, orjson.loads(answer)["error"], headers["retry-after"]) == (503, "unavailable", "30")
    assert asgi_push(source, body("g-2"), token)[0] == 200
