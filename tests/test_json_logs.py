"""FLUXO_LOG_FORMAT=json: one JSON object per line, request ids end to end, and no secret in any log.

A real daphne and a real Celery worker run with JSON logs at DEBUG while every kind of credential
Fluxo takes is used: a legacy-push API token (header and ?token=), OAuth 2 client credentials and the
bearer they give, signed Adobe I/O deliveries, a password login, a read-API token and the metrics
token. Then every line the processes wrote is parsed and grepped for each of those secrets.
"""

import json
import re
import secrets
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar
from pathlib import Path

import orjson
import pytest
from django.conf import settings

from fluxo import logs
from tests.conftest import KeyServer
from tests.ingest import activity, http_push
from tests.processes import SOLO_WORKER, bare_env, celery, daphne, http, manage, stop_embedded_redis, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "pw-" + secrets.token_urlsafe(18)
METRICS_TOKEN = "metrics-" + secrets.token_urlsafe(24)
REQUIRED = {"time", "level", "logger", "message"}


@pytest.fixture
def system(tmp_path, key_pairs):
    keys = KeyServer()
    for pair in key_pairs:
        keys.serve(pair)
    env = bare_env(
        tmp_path,
        FLUXO_LOG_FORMAT="json",
        FLUXO_LOG_LEVEL="DEBUG",
        FLUXO_METRICS_TOKEN=METRICS_TOKEN,
        ADOBE_IO_KEY_BASE_URL=keys.url,
        FLUXO_ALLOW_PRIVATE_URLS="true",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    manage(env, "migrate", "--noinput")
    token_source = json.loads(manage(env, "add_source", "Token", "--munchkin-id", "123-ABC-456", "--json"))
    oauth_source = json.loads(
        manage(env, "add_source", "OAuth", "--munchkin-id", "987-XYZ-654", "--oauth-fluxo", "--json")
    )
    manage(
        env,
        "shell",
        "-c",
        "from streams.models import Source; Source.objects.filter(name='Token').update(allow_query_token=True)",
    )
    manage(env, "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    api_token = manage(env, "create_api_token", "admin").split()[-1]
    env.pop("DJANGO_SUPERUSER_PASSWORD")
    yield env, token_source, oauth_source, api_token
    keys.close()
    stop_embedded_redis(tmp_path)


def oauth_token(base, oauth):
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": oauth["client_id"], "client_secret": oauth["client_secret"]}
    ).encode()
    status, _, body = http(
        "POST", base + oauth["token_url"], form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200, body
    return orjson.loads(body)["access_token"]


def signed_io(base, source, key_pairs):
    body = orjson.dumps([{"eventid": str(uuid.uuid4()), "event": {"specversion": "1.0", "type": "x", "data": {}}}])
    signatures = [pair.sign(body) for pair in key_pairs]
    headers = {
        "Content-Type": "application/json",
        "x-adobe-public-key1-path": key_pairs[0].path,
        "x-adobe-public-key2-path": key_pairs[1].path,
        "x-adobe-digital-signature-1": signatures[0],
        "x-adobe-digital-signature-2": signatures[1],
    }
    status, _, answer = http("POST", base + source["endpoints"]["adobe_io"], body, headers)
    assert status == 200, answer
    return signatures


def log_in(base):
    """A browser's password login (CSRF cookie and form field included); the session cookie value."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/accounts/login/").read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": csrf}).encode()
    opener.open(urllib.request.Request(base + "/accounts/login/", data=form, headers={"Referer": base + "/"}))
    session = {cookie.name: cookie.value for cookie in jar}.get("sessionid")
    assert session, "the login did not give a session"
    assert opener.open(base + "/readyz").status == 200
    return [session, csrf]


def worker_log(var_dir):
    return "\n".join(path.read_text() for path in sorted(var_dir.glob("celery-*.log")))


def json_lines(path):
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    assert lines, f"{path} is empty"
    documents = [json.loads(line) for line in lines]  # each line on its own is one JSON object
    for document in documents:
        assert set(document) >= REQUIRED, document
    return documents


def test_a_full_run_logs_json_lines_with_request_ids_and_no_secret(system, key_pairs, tmp_path):
    env, token_source, oauth_source, api_token = system
    used = [token_source["api_token"], oauth_source["oauth"]["client_secret"], PASSWORD, api_token, METRICS_TOKEN]
    # -v 0: daphne's own access log (whole URLs, query strings included) off, as the Procfile and fluxo.serve run it.
    with daphne(env, args=("-v", "0")) as base, celery(env, *SOLO_WORKER, "--loglevel", "DEBUG"):
        wait_for(lambda: "ready." in worker_log(tmp_path), timeout=60)
        http_push(base, token_source, [activity(1)])
        # The token in the query string alone, no Authorization header.
        http_push(base, token_source, [activity(1)], token="", query=f"?token={token_source['api_token']}")
        bearer = oauth_token(base, oauth_source["oauth"])
        http_push(base, oauth_source, [activity(1)], token=bearer)
        used += [bearer, *signed_io(base, token_source, key_pairs)]
        used += log_in(base)
        status, headers, _ = http(
            "GET", base + "/api/v1/events?limit=5", headers={"Authorization": f"Bearer {api_token}"}
        )
        assert status == 200
        status, headers, _ = http(
            "GET", base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}", "X-Request-Id": "scrape-1"}
        )
        assert (status, headers["X-Request-Id"]) == (200, "scrape-1")
        # The worker heard the batches and evaluated them: its logs are part of the run.
        wait_for(lambda: re.search(r"alerts\.evaluate\[[^]]+\] succeeded", worker_log(tmp_path)), timeout=60)
    logs_written = sorted(tmp_path.glob("daphne-*.log")) + sorted(tmp_path.glob("celery-*.log"))
    web = json_lines(logs_written[0])
    # The worker's start banner is Celery's (plain, on stdout); every log record is a JSON line.
    assert [json.loads(line) for line in worker_log(tmp_path).splitlines() if line.startswith("{")]
    everything = "\n".join(path.read_text() for path in logs_written)
    for secret in used:
        assert secret not in everything, f"a secret ({secret[:4]}…) was logged"
    access = [line for line in web if line["logger"] == "fluxo.request"]
    pushes = [line for line in access if line["path"].endswith("/marketo-push/")]
    assert len(pushes) == 3
    assert all(line["status"] == 200 and "latency_ms" in line and line["request_id"] for line in pushes)
    assert {line["source"] for line in pushes} == {token_source["id"], oauth_source["id"]}
    assert len({line["request_id"] for line in access}) == len(access)  # one id per request


def test_a_sane_request_id_is_kept_and_echoed_and_any_other_is_replaced(tmp_path):
    env = bare_env(tmp_path, FLUXO_LOG_FORMAT="json")
    manage(env, "migrate", "--noinput")
    try:
        with daphne(env) as base:
            assert (
                http("GET", base + "/healthz", headers={"X-Request-Id": "lb-42.a_b"})[1]["X-Request-Id"] == "lb-42.a_b"
            )
            for bad in ("has space", "x" * 65, "semi;colon"):
                echoed = http("GET", base + "/healthz", headers={"X-Request-Id": bad})[1]["X-Request-Id"]
                assert echoed != bad and re.fullmatch(r"[0-9a-f]{32}", echoed)
    finally:
        stop_embedded_redis(tmp_path)


def test_a_task_queued_during_a_request_logs_with_that_request_id(tmp_path, db):
    """The worker shares this test process's Redis, so a task published here reaches it."""
    from alerts import tasks

    env = bare_env(tmp_path, FLUXO_LOG_FORMAT="json", REDIS_URL=settings.FLUXO_REDIS_URL)
    manage(env, "migrate", "--noinput")
    request_id = f"req-{uuid.uuid4().hex}"
    queue = f"test-{request_id}"  # its own queue: no other test's task is taken from a shared Redis
    with celery(env, *SOLO_WORKER, "--queues", queue):
        token = logs.REQUEST_ID.set(request_id)
        try:
            # No such delivery: the task runs and does nothing.
            task_id = tasks.deliver.apply_async((987654321,), queue=queue).id
        finally:
            logs.REQUEST_ID.reset(token)

        def task_lines():
            text = "\n".join(p.read_text() for p in tmp_path.glob("celery-*.log"))
            # Log records only: the start banner names the queue, which holds the id.
            return [json.loads(line) for line in text.splitlines() if line.startswith("{") and request_id in line]

        lines = wait_for(lambda: [line for line in task_lines() if "succeeded" in line["message"]], timeout=60)
    assert lines[0]["request_id"] == request_id
    # Only that task's lines carry it: not the next task the worker logs.
    assert all(f"alerts.deliver[{task_id}]" in line["message"] for line in task_lines())
