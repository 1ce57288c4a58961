"""Opening Adobe's asynchronous validation URLs, which must be fetched within 5 minutes."""

import logging
import re
import urllib.error
import urllib.request
from datetime import timedelta

from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from streams.models import ValidationRequest

log = logging.getLogger(__name__)

TTL = timedelta(minutes=5)
TIMEOUT = 10
# Validation posts kept per source. They need no signature, so anyone who knows a source's URL can
# send them: the newest are kept (Adobe's is opened within seconds of arriving), the rest deleted.
KEPT_PER_SOURCE = 20


# Adobe's documented validation endpoint, with an optional query of URL characters only. Matched on
# the text as received: urlsplit() would strip leading blanks and drop tabs and newlines, so a URL
# that only looks like Adobe's once cleaned up is not taken for one.
ADOBE_VALIDATION_URL = re.compile(
    r"\Ahttps://csm\.adobe\.io/csm/registrations/validate(\?[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*)?\Z"
)


def is_adobe_validation_url(url):
    """True only for Adobe's documented validation URL: the one URL Fluxo opens (anything else would
    be SSRF) and the only one a page shows as a link (anything else may be a sender's trap)."""
    return isinstance(url, str) and ADOBE_VALIDATION_URL.match(url) is not None


def keep(source, url):
    """Record a validation request for ``source`` and drop all but its newest KEPT_PER_SOURCE, atomically."""
    with transaction.atomic():
        ValidationRequest.objects.create(source=source, url=url)
        mine = ValidationRequest.objects.filter(source=source)
        oldest_kept = mine.order_by("-id").values_list("id", flat=True)[KEPT_PER_SOURCE - 1 : KEPT_PER_SOURCE]
        mine.filter(id__lt=Subquery(oldest_kept)).delete()  # no row at that place: NULL, none deleted


def open_pending(now=None, opener=urllib.request.urlopen):
    """Open every pending, unexpired validation URL on Adobe's host; record the outcome of each."""
    now = now or timezone.now()
    pending = ValidationRequest.objects.filter(opened_at=None, outcome="", received_at__gte=now - TTL)
    opened = 0
    for request in pending:
        if not is_adobe_validation_url(request.url):
            request.outcome = "not opened: not Adobe's validation address"
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
