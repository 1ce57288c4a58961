"""fluxo.serve: N daphne processes on one address, restarted when one dies, stopped together."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import processes

pytestmark = pytest.mark.slow


def _children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def launcher(tmp_path):
    """``python -m fluxo.serve --workers 2`` on a free port; yields (process, base URL)."""
    env = processes.bare_env(tmp_path)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fluxo.serve", "--workers", "2", "--bind", "127.0.0.1:0"],
            cwd=processes.ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        port = _wait_for(lambda: re.search(r"on 127\.0\.0\.1:(\d+)", log.read_text()))[1]
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: len(_children(proc.pid)) == 2 and _answers(base))
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        processes.stop_embedded_redis(tmp_path)


def _answers(base):
    try:
        return processes.http("GET", base + "/ingest/anything/marketo-push/", timeout=2)[0] == 200
    except OSError:
        return False


def test_it_serves_one_address_from_two_daphne_processes(launcher):
    proc, base = launcher
    workers = _children(proc.pid)
    assert len(workers) == 2
    assert all("daphne" in Path(f"/proc/{pid}/cmdline").read_text() for pid in workers)
    assert all(_answers(base) for _ in range(10))


def test_it_restarts_a_worker_that_dies(launcher):
    proc, base = launcher
    victim, survivor = _children(proc.pid)
    os.kill(victim, signal.SIGKILL)
    replaced = _wait_for(lambda: (c := _children(proc.pid)) and len(c) == 2 and victim not in c and c)
    assert survivor in replaced
    assert all(_wait_for(lambda: _answers(base)) for _ in range(10))


def test_sigterm_stops_the_launcher_and_every_worker(launcher):
    proc, _base = launcher
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_it_refuses_a_bind_address_without_a_port():
    result = subprocess.run(
        [sys.executable, "-m", "fluxo.serve", "--bind", "127.0.0.1"],
        cwd=processes.ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--bind must be HOST:PORT" in result.stderr
