import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
# Django must be set up before anything imports models (the websocket routes do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from fluxo.routing import websocket_urlpatterns  # noqa: E402


class IngestHandler(ASGIHandler):
    """Django for the ingest URLs alone, without the middleware stack.

    Under ASGI every sync middleware costs a thread hand-off each way on every request (about
    8 ms of CPU per push for the eight in settings, measured by bench/stages.py); the receivers
    use none of them: no session, no CSRF, no user, and their own JSON errors.
    """

    def load_middleware(self, is_async=False):
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)


ingest_asgi_app = IngestHandler()


async def http_application(scope, receive, send):
    handler = ingest_asgi_app if scope["path"].startswith("/ingest/") else django_asgi_app
    await handler(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
