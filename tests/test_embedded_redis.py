"""The embedded Redis: found or started by whichever process comes first, and recovered when stale;
never started by importing the settings; refused on PostgreSQL unless FLUXO_EMBEDDED_REDIS allows it;
run in the foreground by the Procfile, and then gone when its process is."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.db import connection

from fluxo import embedded_redis
from tests.processes import BIN, ROOT, bare_env, embedded_redis_servers_under, stop_embedded_redis, wait_for


@pytest.fixture
def var_dir(tmp_path):
    yield tmp_path
    stop_embedded_redis(tmp_path)


def pid_of(var_dir):
    return int((var_dir / "redis.pid").read_text())


def ping(sock):
    return redis.Redis(unix_socket_path=str(sock), socket_timeout=2).ping()


def test_it_starts_a_real_redis_on_a_unix_socket(var_dir):
    sock = embedded_redis.ensure_running(var_dir)
    assert sock == var_dir / "redis.sock"
    assert ping(sock)
    client = redis.Redis(unix_socket_path=str(sock))
    client.set("k", "v")
    assert client.get("k") == b"v"


def test_a_second_process_finds_the_running_server(var_dir):
    embedded_redis.ensure_running(var_dir)
    first = pid_of(var_dir)
    subprocess.run(
        [sys.executable, "-c", f"from fluxo import embedded_redis; embedded_redis.ensure_running({str(var_dir)!r})"],
        cwd=ROOT,
        check=True,
        timeout=30,
    )
    assert pid_of(var_dir) == first


def test_a_stale_socket_left_by_a_killed_server_is_recovered(var_dir):
    embedded_redis.ensure_running(var_dir)
    os.kill(pid_of(var_dir), signal.SIGKILL)
    time.sleep(0.2)
    # Leave a socket file behind that nothing listens on, as a crash can.
    (var_dir / "redis.sock").unlink(missing_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(var_dir / "redis.sock"))
    stale.close()
    sock = embedded_redis.ensure_running(var_dir)
    assert ping(sock)


def test_an_orphaned_server_that_no_longer_answers_is_replaced(var_dir):
    embedded_redis.ensure_running(var_dir)
    hung = pid_of(var_dir)
    os.kill(hung, signal.SIGSTOP)  # alive, holding its socket, answering nothing
    try:
        sock = embedded_redis.ensure_running(var_dir)
        assert ping(sock)
        assert pid_of(var_dir) != hung
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGKILL)


def test_processes_starting_at_once_share_one_server(var_dir):
    code = f"from fluxo import embedded_redis; print(embedded_redis.ensure_running({str(var_dir)!r}))"

    def start(_):
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(start, range(4)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    servers = subprocess.run(["pgrep", "-f", f"{var_dir}/redis.sock"], capture_output=True, text=True).stdout.split()
    assert len(servers) == 1


def run(var_dir, *args, **variables):
    env = {**bare_env(var_dir, **variables), "DJANGO_SETTINGS_MODULE": "fluxo.settings"}
    return subprocess.run([*args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_importing_the_settings_starts_no_redis(var_dir):
    result = run(var_dir, sys.executable, "-c", "import django; django.setup(); import fluxo.urls")
    assert result.returncode == 0, result.stderr
    assert not (var_dir / "redis.sock").exists()
    assert embedded_redis_servers_under(var_dir) == []


def test_the_web_process_starts_the_embedded_redis_it_uses(var_dir):
    result = run(var_dir, sys.executable, "-c", "import fluxo.asgi")
    assert result.returncode == 0, result.stderr
    assert ping(var_dir / "redis.sock")


POSTGRES = "postgres://postgres@127.0.0.1:5432/fluxo"
CELERY = str(BIN / "celery")


@pytest.mark.parametrize(
    "command",
    [
        (sys.executable, "-c", "import fluxo.asgi"),
        (CELERY, "-A", "fluxo", "worker", "--pool", "solo"),
        (CELERY, "-A", "fluxo", "beat"),
        (sys.executable, "-m", "fluxo.embedded_redis", "serve"),
        (sys.executable, "-m", "fluxo.embedded_redis", "wait"),
    ],
    ids=["web", "worker", "beat", "procfile-redis", "procfile-wait"],
)
def test_on_postgresql_without_redis_url_the_processes_refuse_the_embedded_redis(var_dir, command):
    result = run(var_dir, *command, DATABASE_URL=POSTGRES, FLUXO_EMBEDDED_REDIS=None)
    assert result.returncode == 1
    assert "REDIS_URL is not set" in result.stderr
    assert "FLUXO_EMBEDDED_REDIS=1" in result.stderr
    assert embedded_redis_servers_under(var_dir) == []


def test_on_postgresql_without_redis_url_commands_that_need_no_redis_still_run(var_dir):
    result = run(var_dir, sys.executable, "manage.py", "check", DATABASE_URL=POSTGRES, FLUXO_EMBEDDED_REDIS=None)
    assert result.returncode == 0, result.stderr
    assert embedded_redis_servers_under(var_dir) == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="migrates the suite's PostgreSQL database")
def test_on_postgresql_without_redis_url_migrate_still_runs(var_dir, db):
    url = f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}"
    result = run(
        var_dir, sys.executable, "manage.py", "migrate", "--noinput", DATABASE_URL=url, FLUXO_EMBEDDED_REDIS=None
    )
    assert result.returncode == 0, result.stderr
    assert embedded_redis_servers_under(var_dir) == []


def test_fluxo_embedded_redis_allows_it_on_postgresql_for_development(var_dir):
    result = run(var_dir, sys.executable, "-c", "import fluxo.asgi", DATABASE_URL=POSTGRES, FLUXO_EMBEDDED_REDIS="1")
    assert result.returncode == 0, result.stderr
    assert ping(var_dir / "redis.sock")


@contextlib.contextmanager
def serving(var_dir):
    """``python -m fluxo.embedded_redis serve`` (the Procfile's redis line) until it answers."""
    server = subprocess.Popen(
        [sys.executable, "-m", "fluxo.embedded_redis", "serve"],
        cwd=ROOT,
        env={**bare_env(var_dir), "DJANGO_SETTINGS_MODULE": "fluxo.settings"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: embedded_redis.answers(var_dir) or server.poll() is not None, timeout=30)
        assert server.poll() is None, server.stderr.read()
        yield server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def test_served_in_the_foreground_it_stops_with_its_process(var_dir):
    with serving(var_dir) as server:
        assert len(embedded_redis_servers_under(var_dir)) == 1
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        wait_for(lambda: embedded_redis_servers_under(var_dir) == [], timeout=10)


def test_served_in_the_foreground_it_dies_with_its_process_even_when_that_is_killed(var_dir):
    with serving(var_dir) as server:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        wait_for(lambda: embedded_redis_servers_under(var_dir) == [], timeout=10)


def test_the_procfile_lines_wait_for_the_served_redis(var_dir):
    with serving(var_dir):
        result = run(var_dir, sys.executable, "-m", "fluxo.embedded_redis", "wait")
        assert result.returncode == 0, result.stderr
