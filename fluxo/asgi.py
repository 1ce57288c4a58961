import asyncio
import contextvars
import gc
import io
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
# Django must be set up before anything imports models (the websocket routes do).
django_asgi_app = get_asgi_application()

from fluxo import embedded_redis  # noqa: E402

# The web process starts (or finds) the embedded Redis when the settings use it; SystemExit if refused.
embedded_redis.start_for_process()

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from fluxo import logs, metrics  # noqa: E402
from fluxo.proxies import TrustedProxies  # noqa: E402
from fluxo.routing import websocket_urlpatterns  # noqa: E402

# Threads that run the ingest requests of one process. Each holds a pooled database connection only
# while it handles a request, so this also caps what ingest takes of the pool (max_size 16).
INGEST_THREADS = 8


class IngestHandler(ASGIHandler):
    """Django for the ingest URLs alone: no middleware, and one thread hand-off per request.

    Django's ASGIHandler hands off to a thread three times per request for a sync view (the
    request_started receivers, the view, response.close() with the request_finished receivers), each
    time in a thread created for that request; with the middleware stack, twice more per middleware.
    Here the whole request (its signals, the view, closing it, so the database connection goes back to
    the pool) runs in one call on a fixed pool of threads, and the event loop only reads the body and
    sends the answer. The receivers use no session, CSRF or user, and make their own JSON errors.

    The view runs to its end even if the sender hangs up meanwhile: what it commits it has decided
    to acknowledge, and its connection is returned in the same thread, never left mid-statement.
    """

    def __init__(self):
        super().__init__()
        self._threads = ThreadPoolExecutor(max_workers=INGEST_THREADS, thread_name_prefix="ingest")

    async def __call__(self, scope, receive, send):
        # No ThreadSensitiveContext: nothing here runs in Django's thread-sensitive mode.
        await self.handle(scope, receive, send)

    def load_middleware(self, is_async=False):
        # The sync chain whatever Django asks for: handle() below only calls the sync get_response().
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        self._middleware_chain = convert_exception_to_response(self._get_response)

    async def read_body(self, receive):
        """A body that came in one message (fluxo.daphne_main sends bodies up to 1 MiB so) as an
        in-memory file over those bytes; otherwise Django's spooled file, as before."""
        first = await receive()
        if first["type"] == "http.request" and not first.get("more_body", False):
            return io.BytesIO(first.get("body", b""))  # shares the bytes: no copy
        return await super().read_body(_replaying(first, receive))

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        response = await self._respond_in_thread(scope, body_file)
        await self.send_response(response, send)

    def _respond_in_thread(self, scope, body_file):
        """respond() on an ingest thread, in a copy of this request's context (its request id and notes,
        fluxo.logs). asyncio's own hand-off: asgiref's sync_to_async around it cost 10 to 20 µs of CPU a
        request more (BENCHMARKS.md, "Sixth round"), and nothing here needs what it adds. Cancelled (the
        sender gone) before a thread takes it, the job never runs; once running, it runs to its end."""
        in_context = contextvars.copy_context().run
        return asyncio.get_running_loop().run_in_executor(self._threads, in_context, self.respond, scope, body_file)

    def respond(self, scope, body_file):
        """The whole request in this thread, as Django's sync handlers do it; returns a closed response."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        response = None
        try:
            request, response = self.create_request(scope, body_file)
            if request is not None:
                response = self.get_response(request)
        finally:
            body_file.close()
            if response is None:  # get_response() raised (it turns exceptions into responses): still finish
                signals.request_finished.send(sender=self.__class__)
            else:
                response._handler_class = self.__class__
                response.close()  # request_finished: close_old_connections() returns the connection
        return response


def _replaying(first, receive):
    """``receive`` with ``first``, already received, given back first."""
    pending = [first]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


ingest_asgi_app = IngestHandler()


async def http_application(scope, receive, send):
    handler = ingest_asgi_app if scope["path"].startswith("/ingest/") else django_asgi_app
    await handler(scope, receive, send)


# Every connection, ingest and WebSocket included, sees the client as FLUXO_TRUSTED_PROXIES says. Around
# it, for every HTTP request: the request id, the access line, the receivers' counters, and whether the
# TCP peer is this host with no proxy in between (what /metrics judges by), before the client is rewritten.
application = logs.Observed(
    TrustedProxies(
        ProtocolTypeRouter(
            {
                "http": http_application,
                "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
            }
        )
    ),
    on_ingest=metrics.ingest_answered,
)


def _freeze_what_start_up_made():
    """Keep the long-lived objects of start-up out of every later garbage collection.

    A full (oldest-generation) collection walks every tracked object: in a web process that is the
    modules, Django's apps, models and URL patterns, hundreds of thousands of them, and it stops every
    thread for 60 to 170 ms (bench/tail.py), a legacy push's own service time again; a 500-activity
    push allocates enough to set one off every few seconds per process. Frozen, they are never
    walked: 5 to 20 ms. The URL patterns load lazily, so they are loaded first.
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the views and the admin's URLs)
    gc.collect()
    gc.freeze()


metrics.start_process(web=True)
_freeze_what_start_up_made()
