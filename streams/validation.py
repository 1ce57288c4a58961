"""Opening Adobe's asynchronous validation URLs, which must be fetched within 5 minutes."""

import logging
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

from django.utils import timezone

from streams.models import ValidationRequest

log = logging.getLogger(__name__)

TTL = timedelta(minutes=5)
TIMEOUT = 10


def is_adobe_validation_url(url):
    """Only Adobe's documented validation endpoint is ever opened by Fluxo (anything else: SSRF)."""
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and parts.netloc == "csm.adobe.io"
        and parts.path == "/csm/registrations/validate"
        and not parts.fragment
    )


def open_pending(now=None, opener=urllib.request.urlopen):
    """Open every pending, unexpired validation URL on Adobe's host; record the outcome of each."""
    now = now or timezone.now()
    pending = ValidationRequest.objects.filter(opened_at=None, outcome="", received_at__gte=now - TTL)
    opened = 0
    for request in pending:
        if not is_adobe_validation_url(request.url):
            request.outcome = "not opened: not Adobe's validation host (open it by hand if you trust it)"
            request.save(update_fields=["outcome"])
            continue
        request.outcome = _open(request.url, opener)
        request.opened_at = timezone.now()
        request.save(update_fields=["outcome", "opened_at"])
        opened += 1
    return opened


def _open(url, opener):
    try:
        with opener(url, timeout=TIMEOUT) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        log.warning("could not open an Adobe validation URL: %s", exc.__class__.__name__)
        return f"failed: {exc.__class__.__name__}"
