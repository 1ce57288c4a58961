"""What every page of Fluxo's own (the dashboards and the alerts pages) sends along: one policy, one place.

Pages load nothing from off the machine, and no script but our files runs (an injected one would be
refused even if escaping failed). Plotly sets inline styles, hence style-src 'unsafe-inline'.
fluxo.csp sends the same policy with every other response too (the admin, the login page, errors).
"""

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def with_page_policy(response):
    """``response`` with the pages' Content-Security-Policy."""
    response["Content-Security-Policy"] = PAGE_POLICY
    return response
