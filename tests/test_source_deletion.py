"""Deleting a source: marked at once (gone for senders and pages), its rows removed in bounded steps."""

import json
import threading

import orjson
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client

from alerts import evaluate
from alerts.models import Alert, AlertEvent, Deadline, Rule, RuleChange
from dashboard import rollups
from dashboard.models import HourCount, MinuteCount
from streams import deletion, partitions, tasks
from streams.access import visible_sources
from streams.auth import issue_api_token
from streams.models import Batch, Event, EventKey, ForeignMunchkin, Source, SourceToken
from tests.ingest import activity, http_post, legacy_post, legacy_push
from tests.processes import SOLO_WORKER, bare_env, celery, daphne, manage, stop_embedded_redis, wait_for

pytestmark = pytest.mark.django_db


def push_events(client, source, token, n, lead="1001"):
    return legacy_push(client, source, token, [activity(1, lead=lead) for _ in range(n)])


def rows_of(source_id):
    """How many rows of each kind still name the source."""
    found = {
        "events": Event.objects.filter(source_id=source_id).count(),
        "batches": Batch.objects.filter(source_id=source_id).count(),
        "minute counts": MinuteCount.objects.filter(source_id=source_id).count(),
        "hour counts": HourCount.objects.filter(source_id=source_id).count(),
        "alerts": Alert.objects.filter(source_id=source_id).count(),
        "deadlines": Deadline.objects.filter(source_id=source_id).count(),
        "tokens": SourceToken.objects.filter(source_id=source_id).count(),
        "foreign munchkins": ForeignMunchkin.objects.filter(source_id=source_id).count(),
    }
    if partitions.enabled():
        found["keys"] = EventKey.objects.filter(source_id=source_id).count()
    return found


def purge_until_done(source_id, **kwargs):
    for _ in range(1000):
        outcome = deletion.purge(source_id, **kwargs)
        if outcome == "done":
            return
    raise AssertionError("the purge never finished")


@pytest.fixture
def rich_source(client, source, other_source, api_token):
    """Acme with events, batches, rollups, an alert and its timeline, a deadline, a foreign Munchkin ID."""
    for _ in range(3):
        push_events(client, source, api_token, 4)
    legacy_push(client, source, api_token, [activity(1, munchkinId="555-FOO-555")])
    rollups.roll_up()
    Rule.objects.create(name="every visit", kind="match")
    evaluate.evaluate()
    alert = Alert.objects.get(source=source)
    Deadline.objects.create(rule=alert.rule, group_key="x", source=source, deadline=alert.started_at)
    assert all(rows_of(source.id).values()), rows_of(source.id)
    return source


def test_deleting_a_source_in_the_admin_marks_it_and_it_is_gone_for_senders_and_pages(
    admin_client, client, rich_source, api_token, django_user_model
):
    response = admin_client.post(f"/admin/streams/source/{rich_source.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    source = Source.objects.get(pk=rich_source.pk)  # the row stays until its rows are gone
    assert source.deleting_since is not None
    assert Event.objects.filter(source=source).exists()  # nothing deleted in the request
    assert legacy_post(client, source, api_token, [activity(1)]).status_code == 404
    admin = django_user_model.objects.get(username="admin")
    assert source not in visible_sources(admin)


def test_the_confirmation_page_estimates_the_events_and_lists_no_rows(admin_client, rich_source):
    with_queries = admin_client.get(f"/admin/streams/source/{rich_source.pk}/delete/")
    text = with_queries.content.decode()
    assert "events will be removed in the background" in text
    assert "Minute count" not in text  # the collector's walk would list every rollup row


def test_source_delete_from_code_and_the_bulk_action_only_mark(admin_client, source, other_source):
    source.delete()
    assert Source.objects.get(pk=source.pk).deleting_since is not None
    response = admin_client.post(
        "/admin/streams/source/", {"action": "delete_selected", "_selected_action": [other_source.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert Source.objects.get(pk=other_source.pk).deleting_since is not None
    assert list(Source.objects.live()) == []


def test_the_purge_removes_every_row_of_the_source_and_nothing_of_another(client, rich_source, other_source):
    other_token = issue_api_token(other_source)
    push_events(client, other_source, other_token, 5)
    rollups.roll_up()
    kept = rows_of(other_source.id)
    rich_source.delete()
    purge_until_done(rich_source.id, chunk=3)
    assert not Source.objects.filter(pk=rich_source.pk).exists()
    assert not any(rows_of(rich_source.id).values()), rows_of(rich_source.id)
    assert not AlertEvent.objects.filter(alert__source_id=rich_source.id).exists()
    assert rows_of(other_source.id) == kept


def test_a_purge_out_of_time_resumes_where_it_stopped(client, source, api_token):
    push_events(client, source, api_token, 10)
    source.delete()
    assert deletion.purge(source.id, chunk=2, budget=0) == "more"  # as if the worker was killed here
    left = Event.objects.filter(source_id=source.id).count()
    assert 0 < left < 10
    purge_until_done(source.id, chunk=2)
    assert not Event.objects.filter(source_id=source.id).exists()
    assert not Source.objects.filter(pk=source.pk).exists()


def test_a_rule_of_only_that_source_is_disabled_and_a_shared_one_loses_it(source, other_source):
    only = Rule.objects.create(name="only Acme", kind="match")
    only.sources.set([source])
    shared = Rule.objects.create(name="both", kind="match")
    shared.sources.set([source, other_source])
    source.delete()
    purge_until_done(source.id)
    only.refresh_from_db()
    shared.refresh_from_db()
    assert (only.enabled, list(only.sources.all())) == (False, [])  # not widened to every source
    assert (shared.enabled, list(shared.sources.all())) == (True, [other_source])
    change = RuleChange.objects.get(rule=only)
    assert change.changes["enabled"] == [True, False]


def test_links_to_and_from_a_deleted_source_are_dropped(source, other_source):
    other_source.delivers_for.add(source)
    source.delete()
    assert list(other_source.delivers_for.all()) == []


def test_the_beat_pass_purges_every_marked_source(client, source, api_token):
    push_events(client, source, api_token, 3)
    Source.objects.filter(pk=source.pk).update(deleting_since=source.created_at)  # marked, task lost
    assert tasks.purge_deleted_sources() == {source.id: "done"}
    assert not Source.objects.filter(pk=source.pk).exists()


def test_an_unmarked_source_is_never_purged(client, source, api_token):
    push_events(client, source, api_token, 3)
    assert deletion.purge(source.id) == "done"
    assert Event.objects.filter(source=source).count() == 3


def test_sharing_a_deleted_source_hides_it_from_its_viewers(teammate, source):
    assert list(visible_sources(teammate)) == [source]
    source.delete()
    assert list(visible_sources(teammate)) == []
    assert Group.objects.get().fluxo_sources.count() == 1  # the row is still there, hidden


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_deleting_a_source_under_concurrent_ingest_of_another_loses_none_of_the_others_events(source, other_source):
    token, other_token = issue_api_token(source), issue_api_token(other_source)
    for _ in range(20):
        push_events(Client(), source, token, 25)
    answers, errors, stop = [], [], threading.Event()

    def keep_pushing():
        sender = Client()
        try:
            while not stop.is_set() or len(answers) < 20:
                answers.append(push_events(sender, other_source, other_token, 5)["accepted"])
        except Exception as exc:  # legacy_push asserts a 200
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=keep_pushing)
    thread.start()
    try:
        Source.objects.get(pk=source.pk).delete()
        purge_until_done(source.id, chunk=40)
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    assert answers and set(answers) == {5}
    assert Event.objects.filter(source=other_source).count() == 5 * len(answers)
    assert not Source.objects.filter(pk=source.pk).exists()
    assert not any(rows_of(source.id).values())


def _push(base, source, n):
    """``n`` activities to a running web process, unchecked (a sending thread keeps what it got): (status,
    the JSON answer of a 200, else the body)."""
    status, _, body = http_post(base, source, [activity(1) for _ in range(n)])
    return status, (orjson.loads(body) if status == 200 else body)


@pytest.mark.slow
def test_a_real_worker_deletes_a_source_while_daphne_stores_another_on_sqlite(tmp_path, request):
    """SQLite's single writer shared by a real web process and a real worker: the other source loses nothing."""
    env = bare_env(tmp_path)
    manage(env, "migrate", "--noinput")
    doomed = json.loads(manage(env, "add_source", "Doomed", "--munchkin-id", "123-ABC-456", "--json"))
    kept = json.loads(manage(env, "add_source", "Kept", "--munchkin-id", "987-XYZ-654", "--json"))
    answers, stop = [], threading.Event()
    request.addfinalizer(lambda: stop_embedded_redis(tmp_path))

    def keep_pushing(base):
        while not stop.is_set() or len(answers) < 10:
            answers.append(_push(base, kept, 20))

    with daphne(env) as base:
        for _ in range(20):
            assert _push(base, doomed, 200)[0] == 200
        sender = threading.Thread(target=keep_pushing, args=(base,))
        sender.start()
        try:
            manage(env, "shell", "-c", "from streams.models import Source; Source.objects.get(name='Doomed').delete()")
            with celery(env, *SOLO_WORKER):
                wait_for(lambda: "Doomed" not in manage(env, "shell", "-c", _NAMES), timeout=90)
        finally:
            stop.set()
            sender.join(60)
        # Gone for senders once this web process's source cache (5 s) has forgotten it; a push in the
        # meantime finds no token left (401) and stores nothing.
        wait_for(lambda: _push(base, doomed, 1)[0] == 404, timeout=15)
    assert {status for status, _ in answers} == {200}, answers[:3]
    assert {answer["accepted"] for _, answer in answers} == {20}
    counts = manage(env, "shell", "-c", "from streams.models import Event; print(Event.objects.count())")
    assert int(counts.split()[-1]) == 20 * len(answers)  # the kept source's events, all of them


_NAMES = "from streams.models import Source; print(list(Source.objects.values_list('name', flat=True)))"


def test_the_read_api_no_longer_returns_a_deleted_sources_events(admin_client, client, source, api_token):
    push_events(client, source, api_token, 2)
    assert len(admin_client.get("/api/v1/events").json()["results"]) == 2
    source.delete()
    assert admin_client.get("/api/v1/events").json()["results"] == []
