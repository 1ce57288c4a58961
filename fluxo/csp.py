"""The Content-Security-Policy on every response Django sends: pages, the admin, login, errors.

The policy itself is fluxo.pages.PAGE_POLICY (scripts from this origin's files only, never inline or
eval'd; inline styles for Plotly). Nothing Fluxo serves runs an inline script: data reaches the
scripts through ``json_script``, a JSON ``<script>`` the browser never runs. A template that needs an
inline script would need a nonce added here, not a looser policy. The receivers' JSON answers
(/ingest/, which runs no middleware) are not pages and carry none.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from fluxo.pages import PAGE_POLICY

HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware:
    """Gives every response the page policy, unless a view set a policy of its own.

    Both sync and async, so that under ASGI it costs no thread hand-off (MiddlewareMixin would make one).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return _with_policy(self.get_response(request))

    async def _acall(self, request):
        return _with_policy(await self.get_response(request))


def _with_policy(response):
    response.headers.setdefault(HEADER, PAGE_POLICY)
    return response
