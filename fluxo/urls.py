from django.contrib import admin
from django.urls import include, path
from oauth2_provider import views as oauth_views

from alerts import api as alerts_api
from fluxo import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("", include("streams.urls")),
    path("", include("dashboard.urls")),
    path("alerts/", include("alerts.urls")),
    path("api/v1/alerts", alerts_api.alerts_snapshot, name="api-alerts"),
    # Fluxo as the identity provider a customer can hand to Marketo (client-credentials grant only).
    path("oauth/token/", oauth_views.TokenView.as_view(), name="oauth2_token"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
