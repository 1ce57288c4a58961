"""OAuth 2 on the legacy push: provider JWTs (JWKS), introspected opaque tokens, and Fluxo as the provider.

The customer's identity provider is a real HTTP server on 127.0.0.1 serving a JWKS and an RFC 7662
introspection endpoint; JWTs are signed with keys generated here; Fluxo's own tokens come from real
requests to /oauth/token/.
"""

import base64
import hashlib
import hmac
import http.server
import io
import json
import threading
import time
import urllib.parse
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from streams import oauth
from streams.credentials import replace_credentials
from streams.models import Event, Source
from tests.ingest import APRIL, activity, legacy_post, marketo_body

pytestmark = pytest.mark.django_db

ISSUER = "https://idp.example.com/"
AUDIENCE = "https://fluxo.example.com/push"


# --- The customer's identity provider -------------------------------------------------------------


class SigningKey:
    """A key pair as the provider holds it: signs tokens, publishes its public half as a JWK."""

    def __init__(self, kind="RSA", kid=None):
        self.kid = kid or str(uuid.uuid4())
        if kind == "RSA":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg, self.algorithm = "RS256", jwt.algorithms.RSAAlgorithm
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.alg, self.algorithm = "ES256", jwt.algorithms.ECAlgorithm

    def jwk(self):
        return {**self.algorithm.to_jwk(self.private.public_key(), as_dict=True), "kid": self.kid, "use": "sig"}

    def public_pem(self):
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, kid="same", alg=None, **claims):
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "marketo", "iat": now, "exp": now + 300, **claims}
        payload = {name: value for name, value in payload.items() if value is not None}
        headers = {"kid": self.kid if kid == "same" else kid}
        return jwt.encode(payload, self.private, algorithm=alg or self.alg, headers=headers)


class IdentityProvider:
    """Serves /jwks and POST /introspect; counts what it is asked; fails or stalls on demand."""

    def __init__(self):
        self.keys = []
        self.introspection = {}  # token -> the JSON answer
        self.client = ("fluxo-rs", "s3cret:/?")
        self.fail_with = None
        self.stall_seconds = 0
        self.jwks_body = None  # raw bytes served at /jwks instead of the keys
        self.jwks_requests = 0
        self.introspections = []  # (Authorization header, form) per request
        self._start()

    def _start(self):
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/jwks":
                    return self._answer(404, {})
                idp.jwks_requests += 1
                self._answer(200, {"keys": [key.jwk() for key in idp.keys]}, idp.jwks_body)

            def do_POST(self):
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                idp.introspections.append((self.headers.get("Authorization"), form))
                if self.headers.get("Authorization") != idp.basic():
                    return self._answer(401, {"error": "invalid_client"})
                self._answer(200, idp.introspection.get(form["token"][0], {"active": False}))

            def _answer(self, status, document, body=None):
                time.sleep(idp.stall_seconds)
                self.send_response(idp.fail_with or status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body or json.dumps(document).encode())

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def basic(self):
        pair = ":".join(urllib.parse.quote(part, safe="") for part in self.client)
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _fresh_oauth_state(settings):
    # The provider runs on 127.0.0.1: let the SSRF guard through (tests of the guard turn it off).
    settings.FLUXO_ALLOW_PRIVATE_URLS = True
    # Client secrets are still hashed, with a fast hasher: PBKDF2 costs a second per token request.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    oauth.clear_caches()
    yield
    oauth.clear_caches()


@pytest.fixture
def idp():
    provider = IdentityProvider()
    yield provider
    provider.stop()


@pytest.fixture
def rsa_key(idp):
    key = SigningKey("RSA")
    idp.keys.append(key)
    return key


@pytest.fixture
def jwt_source(source, idp):
    source.legacy_auth = Source.LegacyAuth.OAUTH_JWT
    source.oauth_jwks_url = f"{idp.url}/jwks"
    source.oauth_issuer = ISSUER
    source.oauth_audience = AUDIENCE
    replace_credentials(source)
    return source


@pytest.fixture
def introspection_source(source, idp):
    source.legacy_auth = Source.LegacyAuth.OAUTH_INTROSPECTION
    source.oauth_introspection_url = f"{idp.url}/introspect"
    source.oauth_introspection_client_id, source.oauth_introspection_client_secret = idp.client
    replace_credentials(source)
    return source


@pytest.fixture
def push(client):
    """One Click Link (marketoGUID ``guid``: the same again is a duplicate) pushed to ``source`` with
    ``token`` as the bearer; the response, refused or not."""

    def send(source, token, guid="g-1"):
        click = activity(3, lead=12345, name="Click Link", marketoGUID=guid, activityDate=APRIL)
        return legacy_post(client, source, token, marketo_body([click]))

    return send


def assert_refused(response, status=401):
    assert response.status_code == status
    assert not Event.objects.exists()


# --- JWTs from the customer's provider --------------------------------------------------------------


def test_a_valid_provider_jwt_is_accepted_and_the_push_stored(jwt_source, rsa_key, push):
    response = push(jwt_source, rsa_key.token())
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert Event.objects.get().activity_key == "123-ABC-456|g-1"


def test_an_es256_jwt_is_accepted(jwt_source, idp, push):
    key = SigningKey("EC")
    idp.keys.append(key)
    assert push(jwt_source, key.token()).status_code == 200


def test_an_audience_list_containing_the_source_audience_is_accepted(jwt_source, rsa_key, push):
    assert push(jwt_source, rsa_key.token(aud=["other", AUDIENCE])).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 3600},
        {"iss": "https://evil.example.com/"},
        {"aud": "https://someone-else.example.com/"},
        {"exp": None},
        {"iss": None},
        {"aud": None},
        {"nbf": int(time.time()) + 3600},
    ],
    ids=["expired", "wrong-issuer", "wrong-audience", "no-exp", "no-iss", "no-aud", "not-yet-valid"],
)
def test_a_jwt_with_bad_claims_is_refused(jwt_source, rsa_key, push, claims):
    assert_refused(push(jwt_source, rsa_key.token(**claims)))


def test_an_expiry_within_the_leeway_is_tolerated(jwt_source, rsa_key, push):
    assert push(jwt_source, rsa_key.token(exp=int(time.time()) - 5)).status_code == 200


def test_a_jwt_signed_by_another_key_under_a_known_kid_is_refused(jwt_source, rsa_key, push):
    impostor = SigningKey("RSA", kid=rsa_key.kid)
    assert_refused(push(jwt_source, impostor.token()))


def test_a_tampered_jwt_is_refused(jwt_source, rsa_key, push):
    header, payload, signature = rsa_key.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_refused(push(jwt_source, f"{header}.{forged}.{signature}"))


def test_an_unsigned_alg_none_jwt_is_refused_without_asking_the_provider(jwt_source, rsa_key, idp, push):
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}, None, algorithm="none",
        headers={"kid": rsa_key.kid},
    )  # fmt: skip
    assert_refused(push(jwt_source, unsigned))
    assert idp.jwks_requests == 0


def test_an_hs256_jwt_keyed_with_the_public_key_is_refused(jwt_source, rsa_key, push):
    # The classic confusion: the provider's public key used as an HMAC secret.
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": rsa_key.kid}).encode()).rstrip(b"=")
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signature = hmac.new(rsa_key.public_pem(), header + b"." + body, hashlib.sha256).digest()
    token = b".".join([header, body, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()
    assert_refused(push(jwt_source, token))


def test_an_rs256_jwt_presented_as_es256_is_refused(jwt_source, rsa_key, idp, push):
    ec_key = SigningKey("EC", kid=rsa_key.kid)
    assert_refused(push(jwt_source, ec_key.token()))


def test_a_symmetric_key_in_the_jwks_is_never_used(jwt_source, idp, push):
    secret = b"0123456789abcdef0123456789abcdef"

    class OctKey:
        kid = "shared"

        def jwk(self):
            return {"kty": "oct", "kid": "shared", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}

    idp.keys.append(OctKey())
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}, secret, algorithm="HS256",
        headers={"kid": "shared"},
    )  # fmt: skip
    assert_refused(push(jwt_source, token))


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "x" * 9000])
def test_garbage_bearer_tokens_are_refused(jwt_source, rsa_key, push, token):
    assert_refused(push(jwt_source, token))


def test_keys_are_cached_between_pushes(jwt_source, rsa_key, idp, push):
    assert push(jwt_source, rsa_key.token(), guid="g-1").status_code == 200
    assert push(jwt_source, rsa_key.token(), guid="g-2").status_code == 200
    assert idp.jwks_requests == 1


def test_an_unknown_kid_triggers_one_refresh_and_a_flood_of_them_no_more(jwt_source, rsa_key, idp, push):
    assert push(jwt_source, rsa_key.token(), guid="g-1").status_code == 200
    rotated = SigningKey("RSA")
    idp.keys.append(rotated)  # the provider rotates in a new key after Fluxo fetched its keys

    assert push(jwt_source, rotated.token(), guid="g-2").status_code == 200
    assert idp.jwks_requests == 2

    stranger = SigningKey("RSA")
    for _ in range(5):
        assert push(jwt_source, stranger.token(kid=str(uuid.uuid4())), guid="g-3").status_code == 401
    assert idp.jwks_requests == 2
    assert Event.objects.count() == 2


def test_an_unknown_kid_refreshes_again_once_the_interval_has_passed(jwt_source, rsa_key, idp, push, monkeypatch):
    monkeypatch.setattr(oauth, "UNKNOWN_KID_REFRESH_INTERVAL", 0)
    assert push(jwt_source, rsa_key.token(), guid="g-1").status_code == 200
    stranger = SigningKey("RSA")
    assert push(jwt_source, stranger.token(), guid="g-2").status_code == 401
    assert push(jwt_source, stranger.token(), guid="g-3").status_code == 401
    assert idp.jwks_requests == 3


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_a_provider_answering_an_error_gives_503_never_401(jwt_source, rsa_key, idp, push, status):
    idp.fail_with = status
    response = push(jwt_source, rsa_key.token())
    assert_refused(response, 503)
    assert response["Retry-After"]


def test_an_unreachable_provider_gives_503(jwt_source, rsa_key, idp, push):
    idp.stop()
    assert_refused(push(jwt_source, rsa_key.token()), 503)


def test_a_provider_that_does_not_answer_in_time_gives_503(jwt_source, rsa_key, idp, push, monkeypatch):
    monkeypatch.setattr(oauth, "FETCH_TIMEOUT", 0.2)
    idp.stall_seconds = 1
    assert_refused(push(jwt_source, rsa_key.token()), 503)


@pytest.mark.parametrize("body", [b"<html>maintenance</html>", b'{"keys": null}', b"[]"])
def test_a_provider_answering_something_other_than_a_jwks_gives_503(jwt_source, rsa_key, idp, push, body):
    idp.jwks_body = body  # the provider is broken; the token has not been judged
    assert_refused(push(jwt_source, rsa_key.token()), 503)


def test_a_jwks_without_a_usable_key_refuses_every_token(jwt_source, rsa_key, idp, push):
    idp.jwks_body = json.dumps({"keys": ["not-a-jwk", {"kty": "RSA", "kid": rsa_key.kid, "n": "x"}]}).encode()
    assert_refused(push(jwt_source, rsa_key.token()))


def test_keys_fetched_before_keep_working_while_the_provider_is_down(jwt_source, rsa_key, idp, push, monkeypatch):
    monkeypatch.setattr(oauth, "JWKS_TTL", 0)  # every push wants fresh keys
    assert push(jwt_source, rsa_key.token(), guid="g-1").status_code == 200
    idp.fail_with = 500
    monkeypatch.setattr(oauth, "RETRY_AFTER_FAILURE", 0)
    assert push(jwt_source, rsa_key.token(), guid="g-2").status_code == 200
    assert idp.jwks_requests == 2


def test_a_new_kid_while_the_provider_is_down_gives_503(jwt_source, rsa_key, idp, push):
    assert push(jwt_source, rsa_key.token(), guid="g-1").status_code == 200
    idp.fail_with = 500
    response = push(jwt_source, SigningKey("RSA").token(), guid="g-2")
    assert response.status_code == 503
    assert Event.objects.count() == 1


def test_a_provider_on_a_private_address_is_not_asked_when_private_urls_are_refused(
    jwt_source, rsa_key, idp, push, settings
):
    settings.FLUXO_ALLOW_PRIVATE_URLS = False
    assert_refused(push(jwt_source, rsa_key.token()), 503)
    assert idp.jwks_requests == 0


def test_a_jwt_source_without_an_audience_refuses_every_token(jwt_source, rsa_key, push):
    jwt_source.oauth_audience = ""
    jwt_source.auth_grace_hours = 0  # else the replaced settings still accept it (tests/test_auth_grace.py)
    replace_credentials(jwt_source)
    assert_refused(push(jwt_source, rsa_key.token()))


def test_a_jwt_source_does_not_accept_its_old_api_token(jwt_source, api_token, push):
    assert_refused(push(jwt_source, api_token))


# --- Opaque tokens checked by introspection ---------------------------------------------------------


def test_an_active_introspected_token_is_accepted(introspection_source, idp, push):
    idp.introspection["opaque-1"] = {"active": True, "exp": int(time.time()) + 600}
    assert push(introspection_source, "opaque-1").status_code == 200
    authorization, form = idp.introspections[0]
    assert authorization == idp.basic()  # the client id and secret, form-encoded, as HTTP Basic
    assert form == {"token": ["opaque-1"], "token_type_hint": ["access_token"]}


def test_an_inactive_introspected_token_is_refused(introspection_source, idp, push):
    idp.introspection["opaque-1"] = {"active": False}
    assert_refused(push(introspection_source, "opaque-1"))


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"active": "true"},
        {"active": 1},
        {"active": True, "exp": int(time.time()) - 3600},
        {"active": True, "exp": "soon"},
        [True],
    ],
    ids=["no-active", "string-active", "numeric-active", "expired", "odd-exp", "not-an-object"],
)
def test_anything_but_active_true_and_unexpired_is_refused(introspection_source, idp, push, answer):
    idp.introspection["opaque-1"] = answer
    assert_refused(push(introspection_source, "opaque-1"))


def test_introspection_checks_issuer_and_audience_when_the_source_names_them(introspection_source, idp, push):
    introspection_source.oauth_issuer, introspection_source.oauth_audience = ISSUER, AUDIENCE
    introspection_source.auth_grace_hours = 0  # else the replaced settings still accept them
    replace_credentials(introspection_source)
    idp.introspection["right"] = {"active": True, "iss": ISSUER, "aud": [AUDIENCE]}
    idp.introspection["wrong-aud"] = {"active": True, "iss": ISSUER, "aud": "https://other.example.com/"}
    idp.introspection["no-aud"] = {"active": True, "iss": ISSUER}
    idp.introspection["wrong-iss"] = {"active": True, "iss": "https://evil.example.com/", "aud": AUDIENCE}
    assert push(introspection_source, "right").status_code == 200
    for token in ("wrong-aud", "no-aud", "wrong-iss"):
        assert push(introspection_source, token, guid=token).status_code == 401


def test_a_positive_answer_is_cached_briefly(introspection_source, idp, push):
    idp.introspection["opaque-1"] = {"active": True, "exp": int(time.time()) + 600}
    assert push(introspection_source, "opaque-1", guid="g-1").status_code == 200
    assert push(introspection_source, "opaque-1", guid="g-2").status_code == 200
    assert len(idp.introspections) == 1


def test_a_positive_answer_is_never_cached_past_the_tokens_exp(introspection_source, idp, push):
    # Past exp but within the leeway: accepted once, and asked about again next time.
    idp.introspection["opaque-1"] = {"active": True, "exp": int(time.time()) - 5}
    assert push(introspection_source, "opaque-1", guid="g-1").status_code == 200
    assert push(introspection_source, "opaque-1", guid="g-2").status_code == 200
    assert len(idp.introspections) == 2


def test_a_negative_answer_is_not_cached(introspection_source, idp, push):
    assert push(introspection_source, "opaque-1").status_code == 401
    idp.introspection["opaque-1"] = {"active": True}
    assert push(introspection_source, "opaque-1").status_code == 200


@pytest.mark.parametrize("status", [500, 503])
def test_introspection_errors_give_503(introspection_source, idp, push, status):
    idp.introspection["opaque-1"] = {"active": True}
    idp.fail_with = status
    assert_refused(push(introspection_source, "opaque-1"), 503)


def test_wrong_introspection_credentials_give_503_not_401(introspection_source, idp, push):
    # The provider refusing Fluxo says nothing about Marketo's token: retry once the admin fixes it.
    introspection_source.oauth_introspection_client_secret = "wrong"
    introspection_source.auth_grace_hours = 0  # else the replaced (right) secret still works
    replace_credentials(introspection_source)
    idp.introspection["opaque-1"] = {"active": True}
    assert_refused(push(introspection_source, "opaque-1"), 503)


def test_an_unreachable_introspection_endpoint_gives_503(introspection_source, idp, push):
    idp.stop()
    assert_refused(push(introspection_source, "opaque-1"), 503)


# --- Fluxo as the identity provider -----------------------------------------------------------------


def basic(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture
def fluxo_token(client):
    """A real access token from /oauth/token/ (client-credentials grant)."""

    def get(client_id, secret):
        response = client.post(
            "/oauth/token/",
            {"grant_type": "client_credentials"},
            HTTP_AUTHORIZATION=basic(client_id, secret),
        )
        assert response.status_code == 200, response.content
        return response.json()["access_token"]

    return get


def test_a_fluxo_issued_token_is_accepted(source, push, fluxo_token):
    client_id, secret = oauth.create_fluxo_client(source)
    source.refresh_from_db()
    assert source.legacy_auth == Source.LegacyAuth.OAUTH_FLUXO
    assert push(source, fluxo_token(client_id, secret)).status_code == 200
    assert Event.objects.count() == 1


def test_the_client_secret_is_stored_hashed(source):
    client_id, secret = oauth.create_fluxo_client(source)
    stored = Application.objects.get(client_id=client_id)
    assert stored.client_secret != secret
    assert secret not in stored.client_secret
    assert (stored.client_type, stored.authorization_grant_type) == ("confidential", "client-credentials")


def test_the_token_endpoint_refuses_a_wrong_secret(source, client):
    client_id, _secret = oauth.create_fluxo_client(source)
    response = client.post(
        "/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(client_id, "wrong")
    )
    assert response.status_code == 401
    assert not AccessToken.objects.exists()


def test_the_client_id_and_secret_may_also_come_in_the_form(source, client, push):
    client_id, secret = oauth.create_fluxo_client(source)
    response = client.post(
        "/oauth/token/", {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )
    assert response.status_code == 200
    assert push(source, response.json()["access_token"]).status_code == 200


def test_an_expired_fluxo_token_is_refused(source, push, fluxo_token):
    token = fluxo_token(*oauth.create_fluxo_client(source))
    AccessToken.objects.update(expires=timezone.now() - timezone.timedelta(seconds=1))
    assert_refused(push(source, token))


def test_a_token_of_another_sources_client_is_refused(source, other_source, push, fluxo_token):
    oauth.create_fluxo_client(source)
    others = fluxo_token(*oauth.create_fluxo_client(other_source))
    assert_refused(push(source, others))
    assert push(other_source, others).status_code == 200


def test_an_unknown_bearer_is_refused_on_a_fluxo_source(source, push):
    oauth.create_fluxo_client(source)
    assert_refused(push(source, "made-up-token"))


def test_replacing_the_client_without_a_grace_period_stops_its_tokens(source, push, fluxo_token):
    source.auth_grace_hours = 0  # tests/test_auth_grace.py: what a grace period keeps working
    source.save()
    old = fluxo_token(*oauth.create_fluxo_client(source))
    with pytest.raises(oauth.ClientExists):
        oauth.create_fluxo_client(source)
    new = fluxo_token(*oauth.create_fluxo_client(source, replace=True))
    assert push(source, old).status_code == 401
    assert push(source, new).status_code == 200
    assert Application.objects.count() == 1


def test_tokens_are_found_by_checksum_when_their_plaintext_is_not_stored(source, push, fluxo_token, settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True}
    token = fluxo_token(*oauth.create_fluxo_client(source))
    assert AccessToken.objects.get().token == ""
    assert push(source, token).status_code == 200


def test_create_oauth_client_prints_one_json_document_with_the_secret(source, push, fluxo_token):
    out = io.StringIO()
    call_command("create_oauth_client", source.name, "--json", stdout=out)
    document = json.loads(out.getvalue())
    assert document["source_id"] == source.id
    assert document["token_url"] == "/oauth/token/"
    assert push(source, fluxo_token(document["client_id"], document["client_secret"])).status_code == 200


def test_create_oauth_client_refuses_to_replace_unless_asked(source):
    call_command("create_oauth_client", str(source.id), stdout=io.StringIO())
    with pytest.raises(CommandError, match="--replace"):
        call_command("create_oauth_client", source.name, stdout=io.StringIO())
    call_command("create_oauth_client", source.name, "--replace", stdout=io.StringIO())
    assert Application.objects.count() == 2  # the replaced one lives on through the grace period


def test_create_oauth_client_refuses_an_unknown_source(db):
    with pytest.raises(CommandError, match="no single source"):
        call_command("create_oauth_client", "nobody", stdout=io.StringIO())


def test_add_source_with_oauth_fluxo_prints_the_client_in_its_one_json_document(push, fluxo_token):
    out = io.StringIO()
    call_command("add_source", "Beta", "--munchkin-id", "123-ABC-456", "--oauth-fluxo", "--json", stdout=out)
    document = json.loads(out.getvalue())
    assert "api_token" not in document
    assert document["oauth"]["token_url"] == "/oauth/token/"
    source = Source.objects.get(pk=document["id"])
    assert source.legacy_auth == Source.LegacyAuth.OAUTH_FLUXO
    token = fluxo_token(document["oauth"]["client_id"], document["oauth"]["client_secret"])
    assert push(source, token).status_code == 200


# --- The admin -------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def change_form(source, **changes):
    form = {
        "name": source.name,
        "munchkin_id": source.munchkin_id,
        "legacy_auth": source.legacy_auth,
        "auth_grace_hours": str(source.auth_grace_hours),
        "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
        "tokens-TOTAL_FORMS": "0",
        "tokens-INITIAL_FORMS": "0",
        "tokens-MIN_NUM_FORMS": "0",
        "tokens-MAX_NUM_FORMS": "1000",
    }
    return {**form, **changes}


def test_the_admin_refuses_a_jwks_url_on_a_private_address(admin_client, source, settings):
    settings.FLUXO_ALLOW_PRIVATE_URLS = False
    form = change_form(
        source,
        legacy_auth="oauth_jwt",
        oauth_jwks_url="http://169.254.169.254/jwks",
        oauth_issuer=ISSUER,
        oauth_audience=AUDIENCE,
    )
    response = admin_client.post(f"/admin/streams/source/{source.pk}/change/", form)
    assert response.status_code == 200  # the form again, with the error
    assert b"private or reserved address" in response.content
    source.refresh_from_db()
    assert (source.legacy_auth, source.oauth_jwks_url) == ("token", "")


def test_the_admin_requires_issuer_and_audience_for_jwts(admin_client, source):
    form = change_form(source, legacy_auth="oauth_jwt", oauth_jwks_url="http://127.0.0.1:9/jwks")
    response = admin_client.post(f"/admin/streams/source/{source.pk}/change/", form)
    assert response.status_code == 200
    assert response.content.count(b"required for this kind of authentication") == 2
    source.refresh_from_db()
    assert source.legacy_auth == "token"


def test_the_admin_saves_a_complete_jwt_configuration(admin_client, source):
    form = change_form(
        source,
        legacy_auth="oauth_jwt",
        oauth_jwks_url="http://127.0.0.1:9/jwks",
        oauth_issuer=ISSUER,
        oauth_audience=AUDIENCE,
    )
    response = admin_client.post(f"/admin/streams/source/{source.pk}/change/", form)
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.legacy_auth == "oauth_jwt"


def test_the_admin_action_creates_a_client_and_shows_its_secret_once(admin_client, source, push, fluxo_token):
    response = admin_client.post(
        "/admin/streams/source/",
        {"action": "make_fluxo_oauth_provider", "_selected_action": [source.pk]},
        follow=True,
    )
    message = next(iter(response.context["messages"])).message
    client_id = message.split("client id ")[1].split(" ")[0]
    secret = message.rsplit(" ", 1)[1]
    assert "/oauth/token/" in message
    source.refresh_from_db()
    assert source.oauth_application.client_id == client_id
    assert push(source, fluxo_token(client_id, secret)).status_code == 200
