"""The embedded Redis: found or started by whichever process comes first, and recovered when stale."""

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

from fluxo import embedded_redis
from tests.processes import ROOT, stop_embedded_redis


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
