"""A guard for URLs that admins type in (JWKS, token introspection): no private addresses (SSRF).

A leaf module: it imports no app. An admin form calls ``validate_url`` to refuse a bad URL early;
every fetch goes through ``open_url``, which checks the addresses again at connect time, because
DNS can change between the form and the fetch (or between two fetches). Redirects are never
followed, proxies never used, and only http and https are spoken. With
``settings.FLUXO_ALLOW_PRIVATE_URLS`` on (tests, an IdP on the same private network) only the
address check is skipped.
"""

import http.client
import ipaddress
import socket
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings

# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits: judge that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """A URL Fluxo refuses to fetch: wrong scheme, credentials in it, or a non-public address."""


def is_public(address):
    """True when ``address`` (text or ip_address) is a globally reachable unicast address.

    IPv4 embedded in IPv6 (IPv4-mapped, 6to4, NAT64) is judged by its IPv4 address, so
    ``::ffff:127.0.0.1`` is loopback here, whatever the Python version thinks.
    """
    ip = ipaddress.ip_address(address)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return is_public(embedded)
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
        or getattr(ip, "is_site_local", False)
    )


def _embedded_ipv4(ip):
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_syntax(url):
    """Refuse anything but a plain http(s) URL with a host; return the (host, port) it names."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("only http and https URLs are fetched")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("credentials in the URL are not allowed")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(host, port):
    """Every address ``host`` resolves to, each checked unless private URLs are allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve {host!r}: {exc}") from None
    if not infos:
        raise UnsafeURL(f"{host!r} resolves to no address")
    if not settings.FLUXO_ALLOW_PRIVATE_URLS:
        # All of them, not just the first: a name may mix a public and a private address.
        for *_rest, sockaddr in infos:
            if not is_public(sockaddr[0].split("%")[0]):
                raise UnsafeURL(f"{host!r} resolves to a private or reserved address ({sockaddr[0]})")
    return infos


def validate_url(url):
    """Raise UnsafeURL when ``url`` may not be fetched now (for form validation)."""
    resolve(*check_syntax(url))


def _guarded_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kwargs):
    """socket.create_connection, but only to addresses that pass the check at this very moment."""
    host, port = address
    last_error = None
    for family, socktype, proto, _name, sockaddr in resolve(host, port):
        sock = socket.socket(family, socktype, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _HTTPSConnection(http.client.HTTPSConnection):
    # The TLS handshake still uses the host name (SNI, certificate check): only the TCP target is pinned.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context)


def _opener():
    # No redirect handler (a 3xx is an HTTPError), no proxy handler, no file:, ftp: or data:.
    opener = urllib.request.OpenerDirector()
    for handler in (
        _HTTPHandler(),
        _HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ):
        opener.add_handler(handler)
    return opener


_OPENER = _opener()


def open_url(request, timeout):
    """Open a ``urllib.request.Request`` (or URL) through the guard.

    Raises UnsafeURL before any connection for a refused URL or address; otherwise behaves
    like ``urllib.request.urlopen`` (HTTPError for any non-2xx status, 3xx included).
    """
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    check_syntax(url)
    # An UnsafeURL raised at connect time is not an OSError, so urllib lets it through unwrapped.
    return _OPENER.open(request, timeout=timeout)
