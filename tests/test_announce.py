"""After commit: the batch announcement over Redis, per-source counters, and Redis failures swallowed."""

import json
import threading
import time
from datetime import UTC, datetime

import pytest
import redis

from streams import announce
from streams.models import Batch, Event
from streams.store import Stored
from tests.conftest import payload
from tests.ingest import legacy_post

pytestmark = pytest.mark.django_db(transaction=True)
BATCH = payload("lads_legacy_push_batch.json")  # three activities


@pytest.fixture
def subscriber(redis_client):
    pubsub = redis_client.pubsub()
    pubsub.subscribe(announce.BATCH_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    yield pubsub
    pubsub.close()


def test_a_committed_batch_is_announced_with_its_counts(client, source, api_token, subscriber):
    assert legacy_post(client, source, api_token, BATCH).status_code == 200
    message = subscriber.get_message(timeout=2)
    announced = json.loads(message["data"])
    batch = Batch.objects.get()
    assert announced["batch"] == batch.id
    assert announced["counts"] == batch.counts
    assert sum(row[-1] for row in announced["counts"]) == 3


def test_a_redelivery_with_nothing_new_is_not_announced(client, source, api_token, subscriber):
    legacy_post(client, source, api_token, BATCH)
    subscriber.get_message(timeout=2)
    legacy_post(client, source, api_token, BATCH)
    assert subscriber.get_message(timeout=0.5) is None


def test_counters_count_accepted_duplicates_and_refusals_by_reason(client, source, api_token, redis_client):
    legacy_post(client, source, api_token, BATCH)
    legacy_post(client, source, api_token, BATCH)
    legacy_post(client, source, "wrong", BATCH)
    legacy_post(client, source, api_token, b"{}")
    counters = announce.counters(source.id)
    assert counters["accepted"] == 3
    assert counters["duplicates"] == 3
    assert counters["rejected_auth"] == 1
    assert counters["rejected_malformed"] == 1
    refusals = announce.recent_rejections(source.id)
    assert [r["reason"] for r in refusals] == ["malformed", "auth"]
    assert "wrong" not in json.dumps(refusals)  # a presented secret is never kept


@pytest.fixture
def redis_down(settings):
    settings.FLUXO_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    announce._client = None
    yield
    announce._client = None


def test_redis_down_never_fails_an_acknowledgement(client, source, api_token, redis_down):
    response = legacy_post(client, source, api_token, BATCH)
    assert response.status_code == 200
    assert Event.objects.count() == 3
    # After a failure the next requests do not even try for a few seconds.
    assert announce._paused_until > 0
    assert legacy_post(client, source, api_token, BATCH).status_code == 200


def test_concurrent_announcements_share_a_pipeline_and_each_is_sent_before_its_call_returns(
    redis_client, subscriber, monkeypatch
):
    executed, execute = [], redis.client.Pipeline.execute

    def counted(pipe, *args, **kwargs):
        executed.append(len(pipe.command_stack))
        if len(executed) == 1:
            time.sleep(0.2)  # the first pipeline is slow: the other announcements queue behind it
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    seen = {}

    def announce_one(n):
        source_id = 900_000 + n
        stored = Stored(n, 5, 0, [[source_id, "activity", "t", 1, 5]])
        announce.batch_committed(stored, datetime.now(UTC), {})
        seen[n] = redis_client.hget(announce.counters_key(source_id), "accepted")  # sent by now

    threads = [threading.Thread(target=announce_one, args=(n,)) for n in range(12)]
    threads[0].start()
    while not executed:
        time.sleep(0.001)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == dict.fromkeys(range(12), b"5")
    assert len(executed) < 12 and sum(executed) == 12 * 3  # publish, hincrby, hset for each
    announced = {json.loads(subscriber.get_message(timeout=2)["data"])["batch"] for _ in range(12)}
    assert announced == set(range(12))
    redis_client.delete(*(announce.counters_key(900_000 + n) for n in range(12)))
