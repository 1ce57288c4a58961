"""Shared fixtures: personas, sources, Adobe signing keys served by a real local HTTP server."""

import base64
import http.server
import threading
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.contrib.auth.models import Group

from fluxo import embedded_redis
from streams import announce, signatures
from streams.auth import issue_api_token
from streams.models import Source
from tests.browser import browser, logged_in  # noqa: F401 (the browser tests' fixtures, registered here)
from tests.processes import stop_embedded_redis_servers_under

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name):
    return (PAYLOADS / name).read_bytes()


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """Test users' passwords need no key stretching; PBKDF2 would cost most of the suite's time."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_sessionstart(session):
    """The suite's own embedded Redis (no REDIS_URL), started before collection (test modules import
    fluxo.asgi, which would start one) and stopped when the session ends, if this session started it."""
    try:
        var_dir = embedded_redis.embedded_dir()
    except SystemExit as refused:  # PostgreSQL without REDIS_URL or FLUXO_EMBEDDED_REDIS
        raise pytest.UsageError(str(refused)) from None
    if var_dir is not None and not embedded_redis.answers(var_dir):
        embedded_redis.ensure_running(var_dir)
        session.config.stash[_STARTED_REDIS] = var_dir


def pytest_sessionfinish(session):
    var_dir = session.config.stash.get(_STARTED_REDIS, None)
    if var_dir is not None:
        embedded_redis.stop(var_dir)


_STARTED_REDIS = pytest.StashKey()


@pytest.fixture(autouse=True, scope="session")
def _no_embedded_redis_left(tmp_path_factory):
    """Stops every embedded Redis that the tests' processes started under the session's temporary
    folders and a failing test left behind, so that no redis-server of a test run outlives it."""
    yield
    stop_embedded_redis_servers_under(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Key cache and Redis pause are per process; a test must not inherit another's."""
    signatures.clear_cache()
    announce._paused_until = 0.0
    yield
    signatures.clear_cache()


@pytest.fixture
def redis_client():
    client = announce.client()
    for key in client.scan_iter("fluxo:*"):
        client.delete(key)
    return client


@pytest.fixture
def source(db):
    return Source.objects.create(name="Acme", munchkin_id="123-ABC-456")


@pytest.fixture
def other_source(db):
    return Source.objects.create(name="Acme EU", munchkin_id="987-XYZ-654")


@pytest.fixture
def teammate(source, django_user_model):
    """Sees Acme through a viewer group, and nothing else."""
    group = Group.objects.create(name="Acme viewers")
    source.viewer_groups.add(group)
    user = django_user_model.objects.create_user("teammate", password="pw-teammate-1")
    user.groups.add(group)
    return user


@pytest.fixture
def stranger(django_user_model):
    """In no viewer group: sees no source."""
    return django_user_model.objects.create_user("stranger", password="pw-stranger-1")


@pytest.fixture
def cookie_for(db):
    """The session cookie of ``user``, logged in on a browser of their own (for sockets)."""

    def make(user):
        from django.test import Client

        theirs = Client()  # one per person: logging another one in would end the first one's session
        theirs.force_login(user)
        return f"sessionid={theirs.cookies['sessionid'].value}"

    return make


@pytest.fixture
def api_token(source):
    return issue_api_token(source)


class KeyPair:
    def __init__(self):
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.path = f"/prod/keys/pub-key-{uuid.uuid4()}.pem"
        self.pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, body):
        return base64.b64encode(self.private.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


class KeyServer:
    """A stand-in for Adobe's key host: serves the PEMs it is given, 404 otherwise, 500 on demand."""

    def __init__(self):
        self.keys = {}
        self.fail_with = None
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if server.fail_with:
                    self.send_response(server.fail_with)
                    self.end_headers()
                    return
                pem = server.keys.get(self.path)
                self.send_response(200 if pem else 404)
                self.end_headers()
                if pem:
                    self.wfile.write(pem)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, pair):
        self.keys[pair.path] = pair.pem

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def key_pairs():
    return KeyPair(), KeyPair()


@pytest.fixture
def key_server(settings, key_pairs):
    server = KeyServer()
    for pair in key_pairs:
        server.serve(pair)
    settings.ADOBE_IO_KEY_BASE_URL = server.url
    yield server
    server.close()


@pytest.fixture
def signed_headers(key_pairs):
    """Headers Adobe would send for ``body``, both signatures valid unless told otherwise."""

    def make(body, first=True, second=True):
        one, two = key_pairs
        return {
            "HTTP_X_ADOBE_PUBLIC_KEY1_PATH": one.path,
            "HTTP_X_ADOBE_PUBLIC_KEY2_PATH": two.path,
            "HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": one.sign(body if first else body + b" "),
            "HTTP_X_ADOBE_DIGITAL_SIGNATURE_2": two.sign(body if second else body + b" "),
        }

    return make
