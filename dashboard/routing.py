from django.urls import path

from dashboard.consumers import LiveConsumer
from dashboard.groups import SOCKET_PATH

websocket_urlpatterns = [
    path(SOCKET_PATH.lstrip("/"), LiveConsumer.as_asgi()),
]
