"""Bodies over FLUXO_MAX_BODY_BYTES are refused before they are read, by the web process as it runs.

The server is started as the operator starts it (``python -m fluxo.serve``, and the Procfile's web
line), with the limit at 1 MiB; requests are written on raw sockets so that a test controls exactly
how much of a body is sent, and when.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
import redis

from streams.announce import counters_key, rejections_key
from tests.ingest import activity
from tests.processes import ROOT, bare_env, free_port, manage, stop_embedded_redis, wait_for

pytestmark = pytest.mark.slow

LIMIT = 1024 * 1024
TOO_LARGE = {"error": "too_large", "detail": f"the body is over {LIMIT} bytes"}
# Long enough for any answer on a loaded machine; an answer that waits for the body never comes.
ANSWER_TIMEOUT = 20


class Server:
    def __init__(self, port, worker_pid, var_dir, source):
        self.port, self.worker_pid, self.var_dir, self.source = port, worker_pid, var_dir, source

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_TIMEOUT)
        return sock


def _children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m fluxo.serve --workers 1`` with a 1 MiB limit, a migrated SQLite and one source."""
    var_dir = tmp_path_factory.mktemp("body-limits")
    env = bare_env(var_dir, FLUXO_MAX_BODY_BYTES=str(LIMIT))
    manage(env, "migrate", "--noinput")
    source = json.loads(manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    log = var_dir / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fluxo.serve", "--workers", "1", "--bind", "127.0.0.1:0"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        port = int(wait_for(lambda: re.search(r"on 127\.0\.0\.1:(\d+)", log.read_text()), timeout=60)[1])
        worker = wait_for(lambda: _children(proc.pid), timeout=60)[0]
        wait_for(lambda: _listening(port), timeout=60)
        yield Server(port, worker, var_dir, source)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stop_embedded_redis(var_dir)


def _listening(port):
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _head(path, *headers):
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def _until_closed(sock):
    """Everything the server sends until it closes the connection (a reset counts as closed).

    TimeoutError when the server keeps it open, waiting for more of the body.
    """
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def _parse(answer):
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1").lower(), body


def _dechunked(body):
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        size = int(size, 16)
        if size == 0:
            return out
        out, body = out + rest[:size], rest[size + 2 :]
    return out


def _push_path(server):
    return server.source["endpoints"]["legacy_push"]


def _push_body(server, size):
    """A legacy push of exactly ``size`` bytes (JSON allows the leading blanks)."""
    body = orjson.dumps({"munchkinId": "123-ABC-456", "activities": [activity(1, lead="7")]})
    return b" " * (size - len(body)) + body


def _auth(server):
    return f"Authorization: Bearer {server.source['api_token']}"


def test_a_declared_length_over_the_limit_is_answered_413_after_the_headers_alone(server):
    with server.connect() as sock:
        # The sender: 200 MB declared, the body trickling in (here: its first bytes, then nothing).
        sock.sendall(_head("/ingest/unknown-key/marketo-push/", "Content-Length: 209715200"))
        sock.sendall(b"[" * 1000)
        status, head, body = _parse(_until_closed(sock))
    assert status == 413
    assert "content-type: application/json" in head and "connection: close" in head
    assert json.loads(body) == TOO_LARGE


def test_expect_100_continue_gets_the_413_instead_of_a_go_ahead(server):
    with server.connect() as sock:
        sock.sendall(_head(_push_path(server), f"Content-Length: {LIMIT + 1}", "Expect: 100-continue"))
        answer = _until_closed(sock)
    assert _parse(answer)[0] == 413
    assert b"100 Continue" not in answer


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(server):
    with server.connect() as sock:
        sock.sendall(_head(_push_path(server), "Transfer-Encoding: chunked", _auth(server)))
        piece = b"x" * 65536
        with contextlib.suppress(ConnectionError):  # the server may close while we still send
            for _ in range(LIMIT // len(piece) + 2):
                sock.sendall(_chunk(piece))
        # No last chunk: the client never finishes, the server answers anyway.
        status, _, body = _parse(_until_closed(sock))
    assert (status, json.loads(body)) == (413, TOO_LARGE)


def test_a_refusal_on_a_source_url_is_counted_for_that_source(server):
    counters = redis.Redis(unix_socket_path=str(server.var_dir / "redis.sock"))
    key = counters_key(server.source["id"])
    before = int(counters.hget(key, "rejected_too_large") or 0)
    with server.connect() as sock:
        sock.sendall(_head(_push_path(server), f"Content-Length: {LIMIT * 50}", _auth(server)))
        assert _parse(_until_closed(sock))[0] == 413
    # At least one more: the module's earlier refusals on this source are counted asynchronously too,
    # and one may land after ``before`` was read.
    wait_for(lambda: int(counters.hget(key, "rejected_too_large") or 0) >= before + 1, timeout=20)
    # Kept for the source's refused requests: the headers with the token redacted, the body never read.
    newest = orjson.loads(counters.lindex(rejections_key(server.source["id"]), 0))
    assert ["Authorization", "Bearer [redacted]"] in newest["headers"]
    assert server.source["api_token"] not in json.dumps(newest)
    assert (newest["status"], newest["body"]) == (413, None)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_stored(server, framing):
    body = _push_body(server, LIMIT)
    with server.connect() as sock:
        if framing == "chunked":
            sock.sendall(_head(_push_path(server), "Transfer-Encoding: chunked", "Connection: close", _auth(server)))
            sock.sendall(b"".join(_chunk(body[i : i + 65536]) for i in range(0, len(body), 65536)) + b"0\r\n\r\n")
        else:
            sock.sendall(_head(_push_path(server), f"Content-Length: {len(body)}", "Connection: close", _auth(server)))
            sock.sendall(body)
        status, head, answer = _parse(_until_closed(sock))
    if "transfer-encoding: chunked" in head:
        answer = _dechunked(answer)
    assert (status, json.loads(answer)) == (200, {"accepted": 1, "duplicates": 0})


def test_one_byte_over_the_limit_is_refused(server):
    body = _push_body(server, LIMIT + 1)
    with server.connect() as sock:
        sock.sendall(_head(_push_path(server), f"Content-Length: {len(body)}", _auth(server)))
        with contextlib.suppress(ConnectionError):
            sock.sendall(body)
        assert _parse(_until_closed(sock))[0] == 413


def test_a_push_labelled_as_a_form_still_reaches_the_receiver(server):
    # Twisted used to parse a POST with a form's Content-Type itself, and answer a body that is not
    # a form with its own 400 before the receiver saw it. The receivers judge a body by its content.
    body = orjson.dumps({"munchkinId": "123-ABC-456", "activities": [activity(2, lead="7")]})
    form = "Content-Type: multipart/form-data; boundary=x"
    with server.connect() as sock:
        head = _head(_push_path(server), form, f"Content-Length: {len(body)}", "Connection: close", _auth(server))
        sock.sendall(head + body)
        status, head, answer = _parse(_until_closed(sock))
    if "transfer-encoding: chunked" in head:
        answer = _dechunked(answer)
    assert (status, json.loads(answer)) == (200, {"accepted": 1, "duplicates": 0})


def test_pages_and_websockets_still_work(server):
    env = bare_env(server.var_dir, FLUXO_MAX_BODY_BYTES=str(LIMIT))
    session = manage(env, "shell", "-c", _MAKE_SESSION).split()[-1]  # the shell prints a banner first
    with server.connect() as sock:
        sock.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert _parse(_until_closed(sock))[0] == 200
    with server.connect() as sock:
        handshake = (
            "GET /ws/live/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{server.port}\r\nCookie: sessionid={session}\r\n\r\n"
        )
        sock.sendall(handshake.encode("ascii"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")


_MAKE_SESSION = """
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.create_user("ws-user", password="not-used-here-123")
session = SessionStore()
session["_auth_user_id"] = str(user.pk)
session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
session["_auth_user_hash"] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


# --- Memory ------------------------------------------------------------------------------------------

CONCURRENT = 8
LARGE = 8 * LIMIT


def _status_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _send_large(server, chunked, barrier):
    """Connect, send the headers, wait for the others, then try to send a whole LARGE body."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {LARGE}"
    piece = b"x" * 65536
    with server.connect() as sock:
        sock.sendall(_head(_push_path(server), framing, _auth(server)))
        barrier.wait()
        with contextlib.suppress(ConnectionError, TimeoutError):
            for _ in range(LARGE // len(piece)):
                sock.sendall(_chunk(piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            _until_closed(sock)


def _large_bodies_at_once(server, count):
    barrier = threading.Barrier(count)
    threads = [threading.Thread(target=_send_large, args=(server, i % 2 == 1, barrier)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)


def test_concurrent_large_bodies_cost_the_process_less_than_twice_the_limit_each(server):
    pid = server.worker_pid
    _large_bodies_at_once(server, 2)  # warm-up: the counting thread, its connections, the allocator
    # Reset the kernel's peak-RSS mark of the worker (VmHWM), so that it records this test's peak.
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _status_kib(pid, "VmRSS")
    _large_bodies_at_once(server, CONCURRENT)
    growth = (_status_kib(pid, "VmHWM") - before) * 1024
    print(f"peak RSS growth: {growth / 2**20:.1f} MiB for {CONCURRENT} bodies of {LARGE / 2**20:.0f} MiB")
    assert growth < 2 * LIMIT * CONCURRENT


# --- The Procfile's web line -------------------------------------------------------------------------


def test_the_procfile_web_process_refuses_too(tmp_path):
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("web:"))
    port = free_port()
    # The web command itself, after its wait for the Procfile's redis line (the web process starts
    # the embedded Redis it needs by itself).
    command = line.removeprefix("web:").split("|| exit 1;", 1)[-1]
    env = bare_env(tmp_path, FLUXO_MAX_BODY_BYTES=str(LIMIT), FLUXO_SIMULATE="0", FLUXO_PORT=str(port))
    with (tmp_path / "web.log").open("w") as out:
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _listening(port), timeout=60)
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
            sock.sendall(_head("/ingest/any-key/adobe-io/", "Content-Length: 209715200"))
            status, _, body = _parse(_until_closed(sock))
        assert (status, json.loads(body)) == (413, TOO_LARGE)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        stop_embedded_redis(tmp_path)
