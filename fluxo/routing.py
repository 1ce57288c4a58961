"""WebSocket routes of every app, gathered here so that asgi.py stays glue."""

from dashboard.routing import websocket_urlpatterns as dashboard_routes

websocket_urlpatterns = [*dashboard_routes]
