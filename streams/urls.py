from django.urls import path, re_path

from streams import api, api_exports, openapi, receivers

_KEY = "(?P<ingest_key>[A-Za-z0-9_-]{1,64})"

urlpatterns = [
    path("ingest/<str:ingest_key>/adobe-io/", receivers.adobe_io, name="ingest-adobe-io"),
    path("ingest/<str:ingest_key>/marketo-push/", receivers.marketo_push, name="ingest-marketo-push"),
    # The same without the trailing slash: a sender's URL is not refused over a cosmetic quirk.
    re_path(rf"^ingest/{_KEY}/adobe-io$", receivers.adobe_io),
    re_path(rf"^ingest/{_KEY}/marketo-push$", receivers.marketo_push),
    path("api/v1/events", api.events, name="api-events"),
    path("api/v1/events.ndjson", api.events_ndjson, name="api-events-ndjson"),
    path("api/v1/events.csv", api_exports.events_csv, name="api-events-csv"),
    path("api/v1/events.parquet", api_exports.events_parquet, name="api-events-parquet"),
    path("api/v1/openapi.json", openapi.document_view, name="api-openapi"),
]
