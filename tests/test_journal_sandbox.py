"""The sandbox's Adobe side on its own: IMS, the journal's documented paging, retention, and the registration
state a drill's outage drives (Active → Unstable → Disabled), with the journal filling all the while."""

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from streams.simulator import config as simulator_config
from streams.simulator import runner
from streams.simulator.adobe import DAY, AdobeServer, position_of
from streams.simulator.clock import VirtualClock
from streams.simulator.keys import KeyRing
from tests.processes import free_port

CLIENT = "fluxo-sandbox"


class Clock:
    seconds = 0.0

    def now(self):
        return self.seconds


@pytest.fixture
def sandbox():
    clock = Clock()
    server = AdobeServer(clock.now).start()
    server.clock_ = clock
    server.journal = server.add("reg-1", CLIENT)
    yield server
    server.close()


def call(url, method="GET", body=None, headers=None):
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def bearer(sandbox, secret="sandbox-secret"):
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": secret})
    status, _, body = call(sandbox.url + "/ims/token/v3", "POST", form.encode())
    return status, json.loads(body)


def read(sandbox, query=""):
    _, document = bearer(sandbox)
    headers = {"Authorization": f"Bearer {document['access_token']}", "x-api-key": CLIENT}
    return call(sandbox.journal_url("reg-1") + query, headers=headers)


def test_ims_issues_a_day_long_token_for_the_right_secret_only(sandbox):
    status, document = bearer(sandbox)
    assert status == 200 and document["expires_in"] == 86399 and document["token_type"] == "bearer"
    assert bearer(sandbox, "wrong")[0] == 401


def test_the_journal_pages_with_limit_since_and_next_links_then_answers_204(sandbox):
    for n in range(5):
        sandbox.journal.append({"eventid": f"e{n}"})

    status, headers, body = read(sandbox, "?limit=3")
    page = json.loads(body)
    assert status == 200 and [e["event"]["eventid"] for e in page["events"]] == ["e0", "e1", "e2"]
    assert page["_page"] == {"last": position_of(3), "count": 3}
    assert f"since={position_of(3)}" in headers["Link"] and 'rel="next"' in headers["Link"]

    _, _, body = read(sandbox, f"?since={position_of(3)}&limit=3")
    assert [e["event"]["eventid"] for e in json.loads(body)["events"]] == ["e3", "e4"]
    status, headers, _ = read(sandbox, f"?since={position_of(5)}")
    assert status == 204 and headers["retry-after"] == "10" and 'rel="validate"' in headers["Link"]


def test_latest_jumps_to_the_end_and_seek_reaches_back(sandbox):
    sandbox.journal.append({"eventid": "old"})
    sandbox.clock_.seconds = 3 * 3600
    sandbox.journal.append({"eventid": "new"})
    assert read(sandbox, "?latest=true")[0] == 204
    _, _, body = read(sandbox, "?seek=-PT1H")
    assert [e["event"]["eventid"] for e in json.loads(body)["events"]] == ["new"]
    assert read(sandbox, f"?seek=-PT1H&since={position_of(1)}")[0] == 400  # not together


def test_positions_older_than_seven_days_are_gone(sandbox):
    sandbox.journal.append({"eventid": "a"})
    sandbox.journal.append({"eventid": "b"})
    sandbox.clock_.seconds = 6 * DAY
    sandbox.journal.append({"eventid": "c"})
    sandbox.clock_.seconds = 7.5 * DAY

    assert read(sandbox, f"?since={position_of(1)}")[0] == 410
    _, _, body = read(sandbox)
    assert [e["event"]["eventid"] for e in json.loads(body)["events"]] == ["c"]  # the oldest kept


def test_pages_are_capped_at_one_and_a_half_megabytes(sandbox):
    for n in range(4):
        sandbox.journal.append({"eventid": f"e{n}", "data": "x" * 600_000})
    _, _, body = read(sandbox, "?limit=4")
    assert json.loads(body)["_page"]["count"] == 2


def test_an_outage_drill_makes_the_registration_unstable_then_disabled_while_the_journal_keeps_everything(tmp_path):
    options = {
        "io_url": f"http://127.0.0.1:{free_port()}/x",
        "protocol": "io",
        "streams": "activity",
        "rate": 5.0,
        "count": 400,
        "time_scale": 3600.0,
        "key_port": 0,
        "queue_size": 1000,
        "seed": 3,
        "outage_for": 10**6,
    }
    config = simulator_config.from_options(options, tmp_path)
    adobe = AdobeServer(lambda: 0.0, 3600.0).start()
    try:
        summary = runner.run(config, clock=VirtualClock(), keyring=KeyRing(tmp_path / "keys"), adobe_server=adobe)
        (registration,) = adobe.describe()
    finally:
        adobe.close()

    (stream,) = summary["streams"]
    assert [state for _at, state in stream["state_changes"]] == ["unstable", "disabled"]
    assert stream["statuses"] == {"602": stream["requests"]} and stream["dropped_by_reason"]["disabled"] > 0
    assert registration["journaled"] == 400 and registration["state"] == "disabled"
