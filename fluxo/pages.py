"""What every page of Fluxo's own (the dashboards and the alerts pages) sends along: one policy, one place.

Pages load nothing from off the machine, and no script but our files runs (an injected one would be
refused even if escaping failed). Plotly sets inline styles, hence style-src 'unsafe-inline'.
fluxo.csp sends the same policy with every other response too (the admin, the login page, errors).
"""

from urllib.parse import urlencode

from django.urls import reverse

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def with_page_policy(response):
    """``response`` with the pages' Content-Security-Policy."""
    response["Content-Security-Policy"] = PAGE_POLICY
    return response


def event_url(event_id, received_at):
    """The event page of one stored event (dashboard), bounded by its received time so that its lookup
    reads one partition. ``received_at``: a datetime or its ISO 8601 text (None: looked up by id alone).

    Here, not in an app, because every app's rows link to it (the alerts pages must not import the dashboard).
    """
    path = reverse("event", args=[int(event_id)])
    if received_at is None:
        return path
    at = received_at if isinstance(received_at, str) else received_at.isoformat()
    return f"{path}?{urlencode({'at': at})}"
