"""No Fluxo process outlives `make run` (honcho with the Procfile) or a test run: the embedded Redis neither."""

import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests import processes
from tests.processes import BIN, ROOT, bare_env, embedded_redis_servers_under, free_port, wait_for

pytestmark = pytest.mark.slow


def descendants(pid):
    """Every process below ``pid`` (children, their children, ...)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def alive(pids):
    return [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]


def _zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def started(var_dir, log):
    text = log.read_text()
    return "beat: Starting" in text and "ready" in text and embedded_redis_servers_under(var_dir)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_make_run_stopped_leaves_no_process_behind(tmp_path, signum):
    port = free_port()
    # DEBUG: the Procfile then lets Celery say when the worker and the beat have started.
    env = bare_env(tmp_path, FLUXO_SIMULATE="0", FLUXO_PORT=str(port), FLUXO_LOG_LEVEL="DEBUG")
    log = tmp_path / "honcho.log"
    with open(log, "w") as out:
        honcho = subprocess.Popen(
            [str(BIN / "honcho"), "start", "-f", "Procfile"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        processes._wait_until_listening(port, honcho, log)
        wait_for(lambda: started(tmp_path, log), timeout=90)
        children = descendants(honcho.pid)
        assert len(children) >= 5, log.read_text()  # redis (and its server), web, worker, beat, simulate

        honcho.send_signal(signum)
        honcho.wait(timeout=60)
        wait_for(lambda: not alive(children), timeout=15)
        assert embedded_redis_servers_under(tmp_path) == []
    finally:
        if honcho.poll() is None:  # the test failed: kill what it started, children first
            for pid in [*alive(descendants(honcho.pid)), honcho.pid]:
                subprocess.run(["kill", "-9", str(pid)], check=False)
            honcho.wait(timeout=10)


LEAKY_TESTS = """
from fluxo import embedded_redis


import fluxo.asgi  # starts (or finds) the embedded Redis as the suite's modules that import it do


def test_uses_the_suites_redis(redis_client):
    assert redis_client.ping()


def test_starts_a_server_of_its_own_and_leaves_it(tmp_path):
    embedded_redis.ensure_running(tmp_path)
"""


PYTEST = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
# The suite's fixtures, the session's embedded Redis among them.
CONFTEST = (
    "from tests.conftest import (  # noqa: F401\n"
    "    _fresh_process_state, _no_embedded_redis_left, pytest_sessionfinish, pytest_sessionstart, redis_client\n"
    ")\n"
)


def test_a_test_run_leaves_no_embedded_redis_behind(tmp_path):
    """Its own Redis and the ones its tests' processes started (in their temporary folders)."""
    (tmp_path / "tests").mkdir()
    leaky = tmp_path / "tests" / "test_leaky.py"
    leaky.write_text(textwrap.dedent(LEAKY_TESTS))
    (tmp_path / "tests" / "conftest.py").write_text(CONFTEST)
    var_dir = tmp_path / "var"
    # Short: a unix socket's path has at most 107 bytes, and pytest's folders nest deep.
    basetemp = Path(tempfile.mkdtemp(prefix="fluxo-bt-"))
    result = subprocess.run(
        [*PYTEST, "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), "--basetemp", str(basetemp), str(leaky)],
        cwd=ROOT,
        env=bare_env(var_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert embedded_redis_servers_under(var_dir) == []
    assert embedded_redis_servers_under(basetemp) == []
    shutil.rmtree(basetemp)
