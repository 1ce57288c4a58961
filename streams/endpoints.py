"""The URLs a customer gives Adobe and Marketo for a source."""

from django.conf import settings
from django.urls import reverse


def paths(source):
    return {
        "adobe_io": reverse("ingest-adobe-io", args=[source.ingest_key]),
        "legacy_push": reverse("ingest-marketo-push", args=[source.ingest_key]),
    }


def absolute(path, request=None):
    """FLUXO_PUBLIC_URL + path when it is set (behind a TLS proxy), else built from the request."""
    if settings.FLUXO_PUBLIC_URL:
        return settings.FLUXO_PUBLIC_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return path
