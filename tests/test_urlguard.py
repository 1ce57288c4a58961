"""The SSRF guard on URLs that admins type: private addresses refused, at form time and at connect time."""

import http.server
import threading
import urllib.error

import pytest

from fluxo import urlguard


@pytest.fixture
def private_urls_refused(settings):
    settings.FLUXO_ALLOW_PRIVATE_URLS = False


@pytest.fixture
def local_server():
    """A real HTTP server on 127.0.0.1 that records what reaches it; /redirect answers 302."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/target")
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 (an address judged, not bound)
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "2002:7f00:1::1",
        "64:ff9b::a00:1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",
        "ff02::1",
    ],
)
def test_it_judges_non_public_addresses_private(address):
    assert not urlguard.is_public(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_it_judges_public_addresses_public(address):
    assert urlguard.is_public(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/jwks",
        "https://10.0.0.5/introspect",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/jwks",
        "http://[::ffff:127.0.0.1]/jwks",
        "http://localhost/jwks",
        "http://2130706433/jwks",
    ],
)
def test_validate_url_refuses_private_addresses(private_urls_refused, url):
    with pytest.raises(urlguard.UnsafeURL):
        urlguard.validate_url(url)


@pytest.mark.parametrize(
    "url",
    ["ftp://8.8.8.8/x", "file:///etc/passwd", "gopher://8.8.8.8/", "http:///nohost", "https://user:pw@8.8.8.8/", "x"],
)
def test_validate_url_refuses_other_schemes_missing_hosts_and_credentials(private_urls_refused, url):
    with pytest.raises(urlguard.UnsafeURL):
        urlguard.validate_url(url)


def test_validate_url_accepts_a_public_address(private_urls_refused):
    urlguard.validate_url("https://93.184.215.14/.well-known/jwks.json")


def test_validate_url_accepts_private_addresses_when_allowed(settings):
    settings.FLUXO_ALLOW_PRIVATE_URLS = True
    urlguard.validate_url("http://127.0.0.1:9/jwks")


def test_a_fetch_to_loopback_is_refused_at_connect_time_and_never_arrives(private_urls_refused, local_server):
    url, hits = local_server
    with pytest.raises(urlguard.UnsafeURL):
        urlguard.open_url(url + "/jwks", timeout=2)
    with pytest.raises(urlguard.UnsafeURL):
        urlguard.open_url(url.replace("127.0.0.1", "localhost") + "/jwks", timeout=2)
    assert hits == []


def test_a_fetch_reaches_a_local_server_when_private_urls_are_allowed(settings, local_server):
    settings.FLUXO_ALLOW_PRIVATE_URLS = True
    url, hits = local_server
    with urlguard.open_url(url + "/jwks", timeout=2) as response:
        assert response.read() == b"hello"
    assert hits == ["/jwks"]


def test_redirects_are_not_followed(settings, local_server):
    settings.FLUXO_ALLOW_PRIVATE_URLS = True
    url, hits = local_server
    with pytest.raises(urllib.error.HTTPError) as raised:
        urlguard.open_url(url + "/redirect", timeout=2)
    assert raised.value.code == 302
    assert hits == ["/redirect"]


def test_schemes_other_than_http_are_never_opened(settings):
    settings.FLUXO_ALLOW_PRIVATE_URLS = True
    with pytest.raises(urlguard.UnsafeURL):
        urlguard.open_url("file:///etc/passwd", timeout=2)
