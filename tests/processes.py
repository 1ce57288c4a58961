"""Helpers to run Fluxo's processes as a user would: manage.py commands and a real daphne server."""

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_env(var_dir, **extra):
    """Only what a bare web process needs: SECRET_KEY and ALLOWED_HOSTS (plus an isolated var/).

    FLUXO_EMBEDDED_REDIS=1 lets a test that adds a PostgreSQL DATABASE_URL keep the embedded Redis of
    its own var/ (pass ``FLUXO_EMBEDDED_REDIS=None`` to see the refusal).
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "FLUXO_VAR_DIR": str(var_dir),
        "FLUXO_EMBEDDED_REDIS": "1",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


_migrated_template = None


def manage(env, *args):
    """Run a management command in a subprocess with ``env``; its stdout, or AssertionError."""
    if args == ("migrate", "--noinput") and not env.get("DATABASE_URL"):
        return _migrate_sqlite(Path(env["FLUXO_VAR_DIR"]))
    return _manage(env, *args)


def _migrate_sqlite(var_dir):
    """Migrating takes seconds; a SQLite file migrated once per test run is copied instead."""
    global _migrated_template
    if _migrated_template is None:
        template_dir = Path(tempfile.mkdtemp(prefix="fluxo-migrated-"))
        _manage(bare_env(template_dir), "migrate", "--noinput")
        stop_embedded_redis(template_dir)
        _migrated_template = template_dir / "fluxo.sqlite3"
        with sqlite3.connect(_migrated_template) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(_migrated_template, var_dir / "fluxo.sqlite3")
    return ""


def _manage(env, *args):
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@contextlib.contextmanager
def daphne(env, args=()):
    """The web process as make run starts it (daphne through fluxo.daphne_main) on a free loopback
    port, with ``args`` for daphne; yields its base URL."""
    port = free_port()
    log = open(Path(env["FLUXO_VAR_DIR"]) / f"daphne-{port}.log", "w")  # noqa: SIM115
    command = [sys.executable, "-m", "fluxo.daphne_main", "-b", "127.0.0.1", "-p", str(port), *args]
    process = subprocess.Popen(
        [*command, "fluxo.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_listening(port, process, log.name)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def serve(env, workers=2, args=()):
    """``python -m fluxo.serve --workers N`` on a free loopback port; yields its base URL."""
    port = free_port()
    log = open(Path(env["FLUXO_VAR_DIR"]) / f"serve-{port}.log", "w")  # noqa: SIM115
    command = [sys.executable, "-m", "fluxo.serve", "--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
    process = subprocess.Popen([*command, "--", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_listening(port, process, log.name)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_until_listening(port, process, log_name):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daphne exited with {process.returncode}:\n{Path(log_name).read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"daphne did not start listening:\n{Path(log_name).read_text()}")


def http(method, url, body=None, headers=None, timeout=15):
    """(status, headers, body bytes) of one real HTTP request; 4xx/5xx are answers, not errors."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def stop_embedded_redis(var_dir):
    """Kill the embedded Redis a test's processes started under ``var_dir``."""
    pid_file = Path(var_dir) / "redis.pid"
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def embedded_redis_servers_under(folder):
    """Pids of the redis-server processes whose unix socket lies under ``folder``.

    redis-server retitles itself "PATH/redis-server unixsocket:SOCKET", so the socket is read from that.
    """
    prefix = str(Path(folder).resolve()) + os.sep
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            words = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        if not words or not words[0].endswith("redis-server"):
            continue
        sockets = [w.removeprefix("unixsocket:") for w in words if w.startswith("unixsocket:")]
        if any(sock.startswith(prefix) for sock in sockets):
            pids.append(int(proc.name))
    return pids


def stop_embedded_redis_servers_under(folder):
    """Kill what a test's processes left running under ``folder`` (a failed test skips its teardown)."""
    for pid in embedded_redis_servers_under(folder):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class TcpProxy:
    """Forwards a loopback port to another; ``cut()`` drops every connection and stops listening.

    Stands between a process and the shared PostgreSQL so a test can take "the database" away
    and bring it back without stopping the server other tests use.
    """

    def __init__(self, target_port, port=None):
        self.target_port = target_port
        self.port = port or free_port()
        self._conns = []
        self._listener = None
        self._lock = threading.Lock()

    def start(self):
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self):
        # shutdown() wakes the thread blocked in accept(); close() alone would leave it accepting.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()


# One task at a time in the worker's own process, serving every queue: what the tests that start a
# worker run.
QUEUES = "alerts,deliveries,maintenance"
SOLO_WORKER = ("worker", "-Q", QUEUES, "--pool", "solo", "--without-mingle", "--without-gossip", "--loglevel", "INFO")


@contextlib.contextmanager
def celery(env, *args):
    """A real Celery process (``worker --pool solo …`` or ``beat``) with ``env``; yields the Popen."""
    name = args[0] if args else "worker"
    log = open(Path(env["FLUXO_VAR_DIR"]) / f"celery-{name}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [str(BIN / "celery"), "-A", "fluxo", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    process.log_path = Path(log.name)  # what it printed so far: process.log_path.read_text()
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def wait_for(check, timeout=60, interval=0.2):
    """Poll ``check()`` until it returns something truthy; that value, or AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"gave up after {timeout} s waiting for {getattr(check, '__name__', check)}")


def post_login(base, username, password, headers=None):
    """One POST to the real login page as a browser makes it (its CSRF cookie and token first)."""
    from http.cookies import SimpleCookie
    from re import search
    from urllib.parse import urlencode

    _status, answer, body = http("GET", base + "/accounts/login/", headers=headers)
    cookie = SimpleCookie(answer["Set-Cookie"])["csrftoken"].value
    token = search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password})
    sent = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookie}"}
    sent.update(headers or {"Referer": base + "/"})
    return http("POST", base + "/accounts/login/", form.encode(), sent)
