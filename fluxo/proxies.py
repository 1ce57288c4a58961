"""Which proxy is believed: ``FLUXO_TRUSTED_PROXIES`` decides, in this one place, for every request.

The web process sees the TCP peer. Only when that peer is a trusted proxy are its ``X-Forwarded-For``,
``-Proto`` and ``-Host`` believed: :class:`TrustedProxies` rewrites the ASGI scope (client address,
scheme, Host header) before Django or Channels see it, so ``REMOTE_ADDR``, ``request.is_secure()``,
``request.build_absolute_uri()``, the login throttle and the WebSocket scope all tell the truth. From
any other peer those headers are dropped, so nothing downstream can be fooled by them; Django itself
is never told to read them (no ``SECURE_PROXY_SSL_HEADER``, no ``USE_X_FORWARDED_HOST``).

A leaf module: it imports no app, and reads Django's settings only when the ASGI app is built.
"""

import ipaddress

from django.core.exceptions import ImproperlyConfigured

# Dropped from every request, applied first when a trusted proxy sent them. ``Forwarded`` (RFC 7239)
# is dropped and not interpreted: the proxies Fluxo documents send the X-Forwarded-* family.
FORWARDING_HEADERS = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"forwarded"}
_SCHEMES = {"http": {"http": "http", "https": "https"}, "websocket": {"http": "ws", "https": "wss"}}


def parse_networks(items, name="FLUXO_TRUSTED_PROXIES"):
    """The ``ip_network`` of each address or CIDR in ``items``; ImproperlyConfigured names a bad one."""
    networks = []
    for item in items:
        try:
            # strict: 10.0.0.1/8 has host bits set, which is a typo for 10.0.0.1/32 or 10.0.0.0/8.
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or a CIDR network") from None
    return tuple(networks)


def parse_address(text):
    """An ``ip_address`` from ``text`` (a port after IPv4 or a bracketed IPv6 is allowed), or None."""
    text = (text or "").strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 to the networks it is checked against
    return address


def is_trusted(address, networks):
    """Whether ``address`` (text) lies in one of ``networks``."""
    parsed = parse_address(address) if address else None
    return parsed is not None and any(parsed in network for network in networks)


def forwarded_client(peer, forwarded_for, networks):
    """The client behind trusted proxies: the right-most ``X-Forwarded-For`` hop that is not one of them.

    Each proxy appends the address it was connected from, so the hops right of the first untrusted one
    (reading from the right) are our own proxies, and everything left of it was written by the client
    and is not believed. A hop that is no address (``unknown``) ends the walk at the proxy before it.
    """
    believed = peer
    for hop in reversed([hop for hop in forwarded_for.split(",") if hop.strip()]):
        address = parse_address(hop)
        if address is None:
            break
        believed = str(address)
        if not is_trusted(believed, networks):
            break
    return believed


def believed_scope(scope, networks):
    """``scope`` with the forwarding headers applied when its peer is trusted, and always removed."""
    forwarded, kept = {}, []
    for name, value in scope.get("headers", ()):
        if name.lower() in FORWARDING_HEADERS:
            forwarded.setdefault(name.lower(), []).append(value.decode("latin-1"))
        else:
            kept.append((name, value))
    peer = (scope.get("client") or (None, None))[0]
    if not is_trusted(peer, networks):
        return {**scope, "headers": kept} if forwarded else scope
    believed = {**scope, "headers": kept}
    if b"x-forwarded-for" in forwarded:
        believed["client"] = (forwarded_client(peer, ",".join(forwarded[b"x-forwarded-for"]), networks), 0)
    scheme = _last_value(forwarded.get(b"x-forwarded-proto")).lower()
    if scheme in _SCHEMES.get(scope["type"], {}):
        believed["scheme"] = _SCHEMES[scope["type"]][scheme]
    host = _last_value(forwarded.get(b"x-forwarded-host"))
    if host:
        believed["headers"] = [(n, v) for n, v in kept if n.lower() != b"host"] + [(b"host", host.encode("latin-1"))]
    return believed


def _last_value(values):
    """The value the nearest proxy wrote: the last one, should a proxy append rather than replace."""
    return values[-1].rpartition(",")[2].strip() if values else ""


class TrustedProxies:
    """ASGI middleware applying :func:`believed_scope` to every HTTP and WebSocket connection."""

    def __init__(self, app, networks=None):
        if networks is None:
            from django.conf import settings

            networks = settings.FLUXO_TRUSTED_PROXIES
        self.app, self.networks = app, parse_networks(networks)

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = believed_scope(scope, self.networks)
        return await self.app(scope, receive, send)


def client_address(request):
    """The client's address as Fluxo believes it (the peer, or what a trusted proxy said it is).

    What everything that judges by address uses (the login throttle; metrics to come).
    """
    return request.META.get("REMOTE_ADDR")


def scope_client_address(scope):
    """The same for an ASGI scope (a WebSocket consumer's ``self.scope``)."""
    return (scope.get("client") or (None, None))[0]
