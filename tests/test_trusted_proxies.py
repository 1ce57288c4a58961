"""One setting, FLUXO_TRUSTED_PROXIES, decides when X-Forwarded-For, -Proto and -Host are believed."""

import asyncio
import contextlib
import json
import urllib.parse
from http.client import HTTPConnection

import pytest
from django.core.exceptions import ImproperlyConfigured

from fluxo import proxies
from tests.ingest import activity, http_post
from tests.processes import ROOT, bare_env, daphne, http, manage, post_login, stop_embedded_redis
from tests.test_settings import settings_with

SPOOFED = {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "fluxo.example.com"}


def scope(peer, headers, kind="http"):
    encoded = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return {"type": kind, "client": (peer, 50000), "scheme": "http" if kind == "http" else "ws", "headers": encoded}


def seen(peer, headers, trusted, kind="http"):
    """The scope the application behind TrustedProxies receives."""
    received = {}

    async def app(scope, receive, send):
        received.update(scope)

    asyncio.run(
        proxies.TrustedProxies(app, trusted)(scope(peer, {"Host": "127.0.0.1:8000", **headers}, kind), None, None)
    )
    return received, dict(received["headers"])


# --- The rule ------------------------------------------------------------------------------------


def test_an_untrusted_peers_forwarding_headers_are_dropped_unread():
    received, headers = seen("127.0.0.1", SPOOFED, trusted=[])
    assert received["client"] == ("127.0.0.1", 50000)
    assert received["scheme"] == "http"
    assert headers == {b"host": b"127.0.0.1:8000"}


def test_a_trusted_proxys_forwarding_headers_are_applied_then_dropped():
    received, headers = seen("10.0.0.5", SPOOFED, trusted=["10.0.0.0/24"])
    assert received["client"] == ("1.2.3.4", 0)
    assert received["scheme"] == "https"
    assert headers == {b"host": b"fluxo.example.com"}


def test_the_client_is_the_right_most_address_no_trusted_proxy_wrote():
    # The client wrote 6.6.6.6 itself; the outer proxy (10.0.0.7) appended what it saw, the inner one too.
    forwarded = {"X-Forwarded-For": "6.6.6.6, 1.2.3.4, 10.0.0.7"}
    received, _ = seen("10.0.0.5", forwarded, trusted=["10.0.0.0/24"])
    assert received["client"][0] == "1.2.3.4"
    assert proxies.forwarded_client("10.0.0.5", "unknown, 10.0.0.7", proxies.parse_networks(["10.0.0.0/24"])) == (
        "10.0.0.7"
    )


def test_a_websocket_behind_a_tls_proxy_is_wss():
    received, _ = seen("::1", {"X-Forwarded-Proto": "https"}, trusted=["::1"], kind="websocket")
    assert received["scheme"] == "wss"


@pytest.mark.parametrize("value", ["10.0.0.1/8", "proxy.example.com", "10.0.0.300"])
def test_a_bad_address_or_cidr_is_refused(value):
    with pytest.raises(ImproperlyConfigured, match="FLUXO_TRUSTED_PROXIES"):
        proxies.parse_networks([value])


def test_a_bad_setting_stops_start_up(tmp_path):
    result = settings_with(tmp_path, ["DEBUG"], FLUXO_TRUSTED_PROXIES="10.0.0.0/8,nonsense")
    stop_embedded_redis(tmp_path)
    assert result.returncode != 0
    assert "FLUXO_TRUSTED_PROXIES: 'nonsense' is not an IP address or a CIDR network" in result.stderr


def test_the_web_process_lets_fluxo_decide_which_proxy_is_trusted():
    """daphne's --proxy-headers believes anybody's X-Forwarded-For: neither launcher passes it."""
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    assert "--proxy-headers" not in web
    from fluxo import serve

    with pytest.raises(SystemExit):
        serve.parse_args(["--workers", "1", "--", "--proxy-headers"])


# --- The real web process --------------------------------------------------------------------------


@contextlib.contextmanager
def web_process(var_dir, **variables):
    """A real daphne started as the Procfile starts it, with a source holding two events, and a reader."""
    env = bare_env(var_dir, **variables)
    manage(env, "migrate", "--noinput")
    source = json.loads(manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_superuser('ada', 'a@x.io', 'pw-ada-123')",
    )
    reader = manage(env, "create_api_token", "ada").split()[-1]
    try:
        with daphne(env) as base:
            assert http_post(base, source, [activity(1), activity(1)])[0] == 200
            yield base, env, {"Authorization": f"Bearer {reader}"}
    finally:
        stop_embedded_redis(var_dir)


def first_answer(base, path, headers):
    """The answer itself, not the page a redirect leads to (urllib would follow it)."""
    connection = HTTPConnection(urllib.parse.urlsplit(base).netloc, timeout=15)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse()
    finally:
        connection.close()


def recorded_addresses(env):
    """The client addresses of the failed logins, as the admins' command lists them."""
    return [line.split("\t")[0] for line in manage(env, "axes_list_attempts").splitlines()]


@pytest.mark.slow
def test_an_untrusted_peer_cannot_claim_https_a_host_or_an_address(tmp_path):
    with web_process(tmp_path) as (base, env, reader):
        status, _headers, body = http("GET", base + "/api/v1/events?limit=1", headers={**reader, **SPOOFED})
        assert status == 200
        assert json.loads(body)["next"].startswith(base + "/api/v1/events?")  # built from Host, over http
        post_login(base, "ada", "wrong", headers={**SPOOFED, "Referer": base + "/"})
        assert recorded_addresses(env) == ["127.0.0.1"]


@pytest.mark.slow
def test_behind_an_https_public_url_an_untrusted_peer_claiming_https_is_still_redirected(tmp_path):
    with web_process(tmp_path, FLUXO_PUBLIC_URL="https://fluxo.example.com") as (base, _env, reader):
        answer = first_answer(base, "/api/v1/events?limit=1", {**reader, **SPOOFED})
        assert answer.status == 301
        assert answer.headers["Location"] == "https://" + base.removeprefix("http://") + "/api/v1/events?limit=1"


@pytest.mark.slow
def test_a_trusted_proxys_forwarding_headers_are_believed(tmp_path):
    variables = {"FLUXO_PUBLIC_URL": "https://fluxo.example.com", "FLUXO_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"}
    with web_process(tmp_path, **variables) as (base, env, reader):
        status, _headers, body = http("GET", base + "/api/v1/events?limit=1", headers={**reader, **SPOOFED})
        assert status == 200
        assert json.loads(body)["next"].startswith("https://fluxo.example.com/api/v1/events?")
        status, _headers, _body = post_login(
            base, "ada", "wrong", headers={**SPOOFED, "Origin": "https://fluxo.example.com"}
        )
        assert status == 200
        assert recorded_addresses(env) == ["1.2.3.4"]
