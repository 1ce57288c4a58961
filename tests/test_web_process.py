"""The web process as an operator runs it: daphne, DEBUG off, only SECRET_KEY and ALLOWED_HOSTS set."""

import contextlib
import gzip
import json
import os
import re
import socket
import sqlite3

import psycopg
import pytest

from tests.conftest import payload
from tests.ingest import http_post
from tests.processes import TcpProxy, bare_env, daphne, http, manage, stop_embedded_redis

pytestmark = pytest.mark.slow


def _postgres_answers():
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        return False
    return True


needs_postgres = pytest.mark.skipif(not _postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432")


@pytest.fixture
def var_dir(tmp_path):
    yield tmp_path
    stop_embedded_redis(tmp_path)


def _push(base, source):
    return http_post(base, source, payload("lads_legacy_push_batch.json"))


def test_a_bare_web_process_serves_endpoints_pages_and_static_files(var_dir):
    env = bare_env(var_dir)
    manage(env, "migrate", "--noinput")
    source = json.loads(manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    with daphne(env) as base:
        status, _, body = _push(base, source)
        assert (status, json.loads(body)) == (200, {"accepted": 3, "duplicates": 0})
        status, _, body = http("GET", base + source["endpoints"]["adobe_io"] + "?challenge=abc-123")
        assert (status, json.loads(body)) == (200, {"challenge": "abc-123"})
        assert http("GET", base + "/accounts/login/")[0] == 200
        assert http("GET", base + "/admin/login/")[0] == 200
        status, _, css = http("GET", base + "/static/css/fluxo.css")
        assert status == 200 and b"--accent" in css
        # Versioned names cached for good, and gzip, with no collectstatic run: STATIC_ROOT stays empty.
        status, _, login = http("GET", base + "/accounts/login/")
        versioned_css = re.search(rb"/static/css/fluxo\.[0-9a-f]{12}\.css", login).group().decode()
        status, headers, gzipped = http("GET", base + versioned_css, headers={"Accept-Encoding": "gzip"})
        assert (status, headers["Content-Encoding"]) == (200, "gzip")
        assert "immutable" in headers["Cache-Control"] and gzip.decompress(gzipped) == css
        assert not any((var_dir / "static").iterdir())
        assert http("GET", base + "/static/admin/css/base.css")[0] == 200
        status, _, page = http("GET", base + "/")  # urllib follows the redirect to the login page
        assert status == 200 and b"Log in" in page
    stored = sqlite3.connect(var_dir / "fluxo.sqlite3").execute("select count(*) from streams_event").fetchone()[0]
    assert stored == 3


def test_it_starts_while_the_database_is_unreachable_and_answers_503(var_dir):
    env = bare_env(var_dir, DATABASE_URL="postgres://postgres@127.0.0.1:1/fluxo")  # nothing listens on port 1
    with daphne(env) as base:
        batch, auth = payload("lads_legacy_push_batch.json"), {"Authorization": "Bearer any-token"}
        status, headers, body = http("POST", base + "/ingest/some-key/marketo-push/", batch, auth)
        assert status == 503
        assert headers["Retry-After"]
        assert json.loads(body)["error"] == "unavailable"
        assert http("GET", base + "/ingest/some-key/adobe-io/?challenge=abc")[0] == 503
        # The legacy GET needs no database at all.
        assert http("GET", base + "/ingest/some-key/marketo-push/")[0] == 200


@pytest.fixture
def scratch_database():
    name = f"fluxo_webproc_{os.getpid()}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@needs_postgres
def test_it_recovers_by_itself_when_the_database_comes_back(var_dir, scratch_database):
    direct = bare_env(var_dir, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{scratch_database}")
    manage(direct, "migrate", "--noinput")
    source = json.loads(manage(direct, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    proxy = TcpProxy(5432).start()
    env = {**direct, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{proxy.port}/{scratch_database}"}
    try:
        with daphne(env) as base:
            assert _push(base, source)[0] == 200
            proxy.cut()  # the database goes away, with the web process's open connection
            assert _push(base, source)[0] == 503
            proxy = TcpProxy(5432, port=proxy.port).start()  # and comes back
            status, _, body = _push(base, source)
            assert status == 200
            assert json.loads(body) == {"accepted": 0, "duplicates": 3}
    finally:
        with contextlib.suppress(OSError):
            proxy.cut()
