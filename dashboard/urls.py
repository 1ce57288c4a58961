from django.urls import path

from dashboard import event_views, lead_views, stream_views, views

urlpatterns = [
    path("", views.overview, name="home"),
    path("leads/", lead_views.tail_page, name="leads"),
    path("leads/<int:source_id>/<path:lead_id>/", lead_views.lead_page, name="lead"),
    path("events/", event_views.events_page, name="events"),
    path("events/search.csv", event_views.events_csv, name="events-csv"),
    path("events/<int:event_id>/", event_views.event_page, name="event"),
    path("audit/", stream_views.audit_page, name="audit"),
    path("notifications/", stream_views.notifications_page, name="notifications"),
    path("setup/", stream_views.setup_page, name="setup"),
    path("setup/<int:source_id>/refused/", stream_views.refused_requests_page, name="refused-requests"),
    path("api/v1/overview", views.overview_snapshot, name="api-overview"),
    path("api/v1/tail", lead_views.tail_snapshot, name="api-tail"),
    path("api/v1/audit", stream_views.audit_snapshot, name="api-audit"),
    path("api/v1/notifications", stream_views.notifications_snapshot, name="api-notifications"),
]
