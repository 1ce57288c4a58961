"""daphne with request bodies capped before they are read: ``python -m fluxo.daphne_main [daphne args]``.

daphne (Twisted's HTTP parser underneath) reads a request's whole body, into memory or a temporary
file, before the ASGI application sees the request, and then hands all of it to the application at
once; daphne has no option to limit it. So a body the receivers refuse with 413 was read whole first
(a slow sender of a 200 MB one held the request open for as long as it liked), and its bytes were in
memory once more on their way to the application.

Here every request is checked while Twisted parses it: a declared ``Content-Length`` over
``FLUXO_MAX_BODY_BYTES`` is answered 413 as soon as the headers are in, a body without a declared
length (chunked) as soon as it passes the limit, and the connection is closed without reading the
rest. The application never sees such a request. On an ingest URL the refusal is still counted for
its source (the setup page's "too large"), off the reactor thread. Twisted no longer parses POST
bodies as forms (daphne never read what it parsed), and a body of up to 1 MiB is handed to the
application as one message, not in 8 KiB pieces. Everything else is daphne's own command line, unchanged.
"""

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from urllib.parse import unquote, urlsplit

import orjson
from daphne import server as daphne_server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from django.conf import settings
from twisted.web import http

log = logging.getLogger(__name__)

# daphne hands a body to the application in pieces of this size: a 500-activity push (about 340 KiB)
# in one message.
BODY_MESSAGE_BYTES = 1024 * 1024

# Refusals waiting to be counted; past this many (a flood of them) the rest are not counted.
_COUNTING_BACKLOG = 64
_counting_slots = threading.BoundedSemaphore(_COUNTING_BACKLOG)


def too_large_answer(limit):
    """The whole 413 response, in the receivers' JSON error shape; the connection closes after it."""
    body = orjson.dumps({"error": "too_large", "detail": f"the body is over {limit} bytes"})
    head = (
        "HTTP/1.1 413 Content Too Large\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class BodyLimitedRequest(WebRequest):
    """daphne's request, refused with a 413 as soon as its body is known to be over the limit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # An HTTP/2 stream (daphne serving TLS itself) cannot take a raw HTTP/1.1 answer: its bodies
        # are left to the receivers' own check, as under plain daphne.
        http1 = isinstance(self.channel, http.HTTPChannel)
        self.body_limit = settings.FLUXO_MAX_BODY_BYTES if http1 else math.inf
        self.body_received = 0
        self.refused = False
        # Twisted parses a POST's form body (urlencoded or multipart, through the email package) into
        # request.args, on the reactor thread, before daphne runs: daphne never reads args (Django parses
        # forms itself), so that was work for nothing, and a 10 MiB multipart body from anyone held every
        # request of the process for 0.2 s while it ran. Even a JSON body paid about 33 µs for parsing
        # its Content-Type with the email package.
        self._parsePOSTFormSubmission = False

    def gotLength(self, length):
        """Twisted calls this once the headers are in, with the declared length (None when chunked)."""
        if length is not None and length > self.body_limit:
            self._refuse()
            length = 0  # and no temporary file for a body that is not kept
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self.refused:
            return
        self.body_received += len(data)
        if self.body_received > self.body_limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        # A refused chunked body may still end in the bytes Twisted had already read: nothing to run.
        if not self.refused:
            super().requestReceived(command, path, version)

    def _refuse(self):
        self.refused = True
        # Twisted answers "Expect: 100-continue" right after gotLength(); the 413 is the answer instead.
        self.requestHeaders.removeHeader(b"Expect")
        if self.content is not None:
            self.content.close()  # what a chunked body had sent so far
        answer = too_large_answer(self.body_limit)
        channel = self.channel
        # As Twisted answers a malformed request: straight to the transport, then close. The transport
        # reads nothing more; the request line is still the channel's (the request gets it at the end).
        channel.transport.write(answer)
        channel.loseConnection()
        target = getattr(channel, "_path", b"")
        self._log_refusal(getattr(channel, "_command", b"?"), target, len(answer))
        method = getattr(channel, "_command", b"?")
        observe_refusal(method, target)
        count_refusal_later(target, self.body_limit, method, self._raw_headers())

    def _raw_headers(self):
        """The request's headers as text, for the refusal's record (streams.refused redacts them)."""
        return [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, values in self.requestHeaders.getAllRawHeaders()
            for value in values
        ]

    def _log_refusal(self, method, target, size):
        peer = self.channel.transport.getPeer()
        client = f"{peer.host}:{peer.port}" if hasattr(peer, "port") else None
        details = {
            "path": target.decode("ascii", "replace"),
            "status": 413,
            "method": method.decode("ascii", "replace"),
            "client": client,
            "time_taken": 0,
            "size": size,
        }
        try:
            self.server.log_action("http", "complete", details)
        except Exception:  # the access log must never break the answer
            log.exception("could not log a refused request")


def observe_refusal(method, target):
    """The refusal as fluxo.logs.Observed reports every answer the application gives: an access line and,
    on an ingest URL, the receivers' counters (the application never saw this request)."""
    from fluxo import logs, metrics  # late: fluxo.metrics needs the settings daphne has loaded by now

    path = urlsplit(target.decode("ascii", "replace")).path  # never the query string
    method = method.decode("ascii", "replace")
    if path.startswith("/ingest/"):
        metrics.ingest_answered(path, 413, "too_large", 0.0)
    fields = {"method": method, "path": path, "status": 413, "latency_ms": 0.0}
    logs.access_log.info("%s %s 413 (body over the limit, not read)", method, path, extra=fields)


class BodyLimitedHTTPFactory(HTTPFactory):
    def __init__(self, server):
        super().__init__(server)
        # daphne hands a body over in request_buffer_size pieces, 8 KiB unless told (its command line
        # cannot): 42 messages for a 500-activity push, each through the application's queue and
        # written into Django's spooled file (fluxo.asgi's ingest route takes one message as it is).
        # daphne queues every piece at once either way, so larger pieces hold no more memory.
        server.request_buffer_size = max(server.request_buffer_size, BODY_MESSAGE_BYTES)

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyLimitedRequest
        return protocol


@cache
def _counting_thread():
    # One thread: counting needs the database and Redis, which the reactor thread must never wait for.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="refusals")


def count_refusal_later(target, limit, method=b"POST", headers=()):
    if not _counting_slots.acquire(blocking=False):
        return
    future = _counting_thread().submit(count_refusal, target, limit, method, headers)
    future.add_done_callback(lambda _future: _counting_slots.release())


def count_refusal(target, limit, method=b"POST", headers=()):
    """Count a 413 for the source whose ingest URL ``target`` (the raw request target) is, if any, and
    keep its redacted headers for the source's refused requests (its body was never read)."""
    # Imported here: the models can be imported only once daphne has loaded fluxo.asgi (django.setup()).
    from django.db import DatabaseError, connections
    from django.urls import Resolver404, resolve
    from django.utils import timezone

    from streams import announce, refused
    from streams.models import Source

    try:
        url = urlsplit(target.decode("ascii"))
        ingest_key = resolve(unquote(url.path)).kwargs.get("ingest_key")
    except (UnicodeDecodeError, ValueError, Resolver404):
        return
    if ingest_key is None:
        return
    try:
        source_id = Source.objects.filter(ingest_key=ingest_key).values_list("id", flat=True).first()
        if source_id is not None:
            detail = f"the body is over {limit} bytes"
            declared = dict((name.lower(), value) for name, value in headers).get("content-length")
            declared = int(declared) if declared and declared.isdigit() else None
            described = refused.describe(method.decode("ascii", "replace"), headers, url.query, None, declared)
            announce.request_refused(source_id, "too_large", 413, detail, timezone.now(), described)
    except DatabaseError as exc:
        log.warning("could not count a refused body for %s (%s)", ingest_key, exc.__class__.__name__)
    finally:
        connections.close_all()  # this thread's connection goes back to the pool


def install():
    """Make daphne's Server build its HTTP factory from ours (it names the class inside run())."""
    daphne_server.HTTPFactory = BodyLimitedHTTPFactory


def main():
    install()
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
