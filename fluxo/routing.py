"""WebSocket routes of every app, gathered here so that asgi.py stays glue."""

websocket_urlpatterns = []
