"""After commit: the batch announcement over Redis, per-source counters, and Redis failures swallowed."""

import json

import pytest

from streams import announce
from streams.models import Batch, Event
from tests.conftest import payload

pytestmark = pytest.mark.django_db(transaction=True)


def push(client, source, token, body=None):
    return client.post(
        f"/ingest/{source.ingest_key}/marketo-push/",
        body or payload("lads_legacy_push_batch.json"),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.fixture
def subscriber(redis_client):
    pubsub = redis_client.pubsub()
    pubsub.subscribe(announce.BATCH_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    yield pubsub
    pubsub.close()


def test_a_committed_batch_is_announced_with_its_counts(client, source, api_token, subscriber):
    assert push(client, source, api_token).status_code == 200
    message = subscriber.get_message(timeout=2)
    announced = json.loads(message["data"])
    batch = Batch.objects.get()
    assert announced["batch"] == batch.id
    assert announced["counts"] == batch.counts
    assert sum(row[-1] for row in announced["counts"]) == 3


def test_a_redelivery_with_nothing_new_is_not_announced(client, source, api_token, subscriber):
    push(client, source, api_token)
    subscriber.get_message(timeout=2)
    push(client, source, api_token)
    assert subscriber.get_message(timeout=0.5) is None


def test_counters_count_accepted_duplicates_and_refusals_by_reason(client, source, api_token, redis_client):
    push(client, source, api_token)
    push(client, source, api_token)
    push(client, source, "wrong")
    push(client, source, api_token, body=b"{}")
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
    response = push(client, source, api_token)
    assert response.status_code == 200
    assert Event.objects.count() == 3
    # After a failure the next requests do not even try for a few seconds.
    assert announce._paused_until > 0
    assert push(client, source, api_token).status_code == 200
