"""One HTTP request as a sender makes it, reduced to what the delivery rules need to know.

Stdlib only. Connections are kept alive per worker thread and per host. Adobe's timeout spans the
whole attempt, connection set-up included: the socket timeout bounds each step, and an answer that
arrives after the deadline anyway counts as a timeout. Requests go only to the URL given.
"""

import http.client
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# Adobe's codes for attempts that got no HTTP answer (reference, section 3.5).
NETWORK_ERROR = 602
TIMED_OUT = 604
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Answer:
    status: int  # the HTTP status, or NETWORK_ERROR / TIMED_OUT
    body: bytes = b""
    error: str = ""

    @property
    def ok(self):
        return 200 <= self.status < 300


class Client:
    def __init__(self):
        self._local = threading.local()

    def post(self, url, body, headers, timeout):
        """POST ``body`` to ``url``; never raises for network trouble (it is an Answer)."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        deadline = time.monotonic() + timeout
        for reused in (True, False):
            connection, was_open = self._connection(parts, timeout, fresh=not reused)
            try:
                return self._exchange(connection, target, body, headers, deadline)
            except (OSError, http.client.HTTPException) as exc:
                self._forget(parts)
                # A kept-alive connection the server had closed fails at once: retry on a new one.
                if not (was_open and _stale(exc)) or time.monotonic() >= deadline:
                    return _failure(exc)
        return Answer(NETWORK_ERROR, error="unreachable")

    def _exchange(self, connection, target, body, headers, deadline):
        connection.timeout = max(0.001, deadline - time.monotonic())
        if connection.sock is not None:
            connection.sock.settimeout(connection.timeout)
        connection.request("POST", target, body=body, headers={**headers, "Content-Length": str(len(body))})
        response = connection.getresponse()
        answer = response.read(MAX_ANSWER_BYTES)
        response.read()  # drain, so the connection can be reused
        if response.will_close:
            self._forget_connection(connection)
        if time.monotonic() > deadline:
            return Answer(TIMED_OUT, error="answered after the timeout")
        return Answer(response.status, answer)

    def _connection(self, parts, timeout, fresh):
        pool = self._pool()
        key = (parts.scheme, parts.netloc)
        if fresh or key not in pool:
            self._forget(parts)
            kind = _HTTPSConnection if parts.scheme == "https" else _HTTPConnection
            pool[key] = kind(parts.hostname, parts.port, timeout=timeout)
            return pool[key], False
        return pool[key], True

    def _pool(self):
        if not hasattr(self._local, "pool"):
            self._local.pool = {}
        return self._local.pool

    def _forget(self, parts):
        connection = self._pool().pop((parts.scheme, parts.netloc), None)
        if connection is not None:
            connection.close()

    def _forget_connection(self, connection):
        pool = self._pool()
        for key, kept in list(pool.items()):
            if kept is connection:
                del pool[key]
        connection.close()


class _NoDelay:
    """http.client sends the headers and the body in two writes: without TCP_NODELAY, Nagle's algorithm
    and the server's delayed ACK hold the body back about 40 ms on every request."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPConnection(_NoDelay, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_NoDelay, http.client.HTTPSConnection):
    pass


def _stale(exc):
    return isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))


def _failure(exc):
    if isinstance(exc, TimeoutError):
        return Answer(TIMED_OUT, error="timed out")
    return Answer(NETWORK_ERROR, error=exc.__class__.__name__)
