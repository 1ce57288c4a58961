"""Validation URLs on the Setup pages: only Adobe's own address is a link; unsigned posts are bounded."""

import re
from html import unescape

import orjson
import pytest

from streams import validation
from streams.models import ValidationRequest

pytestmark = pytest.mark.django_db

ADOBE = "https://csm.adobe.io/csm/registrations/validate?id=g1&challenge=g2"
NOT_FROM_ADOBE = "not from Adobe"


def post_validation(client, source, url):
    body = orjson.dumps({"validationUrl": url})
    response = client.post(f"/ingest/{source.ingest_key}/adobe-io/", body, content_type="application/json")
    assert response.status_code == 200, response.content
    return response


def links(html):
    """Every link target of a page, as the browser reads it."""
    return [unescape(href) for href in re.findall(r"<a\s[^>]*href=\"([^\"]*)\"", html)]


@pytest.fixture
def setup_pages(client, admin_user, source):
    """The HTML of the dashboard's Setup page and of the source's Setup page in the admin."""

    def fetch():
        client.force_login(admin_user)
        pages = [client.get("/setup/"), client.get(f"/admin/streams/source/{source.id}/setup/")]
        assert [page.status_code for page in pages] == [200, 200]
        return [page.content.decode() for page in pages]

    return fetch


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "http://csm.adobe.io/csm/registrations/validate?id=g1",
        "https://csm.adobe.io.evil.example/csm/registrations/validate?id=g1",
        "https://evil.example/csm/registrations/validate?id=g1",
        "https://user@csm.adobe.io/csm/registrations/validate?id=g1",
        "https://csm.adobe.io/somewhere/else",
        "//csm.adobe.io/csm/registrations/validate?id=g1",
    ],
)
def test_an_unsigned_post_of_a_url_that_is_not_adobes_stays_text_marked_not_from_adobe(
    client, source, setup_pages, url
):
    post_validation(client, source, url)
    for html in setup_pages():
        assert url not in links(html)
        assert not [href for href in links(html) if href.lower().startswith(("javascript:", "data:", "//", "http"))]
        assert NOT_FROM_ADOBE in html
        assert "<script>alert(1)</script>" not in html


def test_adobes_own_validation_url_is_a_link_and_not_marked(client, source, setup_pages):
    post_validation(client, source, ADOBE)
    for html in setup_pages():
        assert ADOBE in links(html)
        assert NOT_FROM_ADOBE not in html


@pytest.mark.parametrize(
    ("url", "adobes"),
    [
        (ADOBE, True),
        ("https://csm.adobe.io/csm/registrations/validate", True),
        ("javascript:alert(1)", False),
        ("https://CSM.adobe.io/csm/registrations/validate?id=1", False),
        ("https://csm.adobe.io:8443/csm/registrations/validate?id=1", False),
        ("https://csm.adobe.io/csm/registrations/validate?id=1#x", False),
        (" https://csm.adobe.io/csm/registrations/validate?id=1", False),
        ("https://csm.adobe.io/csm/registrations/validate\n?id=1", False),
        ("", False),
    ],
)
def test_one_function_decides_what_is_adobes_validation_url(url, adobes):
    assert validation.is_adobe_validation_url(url) is adobes


def test_the_beat_does_not_open_what_the_page_does_not_link(source):
    ValidationRequest.objects.create(source=source, url="javascript:alert(1)")
    ValidationRequest.objects.create(source=source, url=ADOBE)
    opened = []

    class Answer:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def opener(url, timeout):
        opened.append(url)
        return Answer()

    assert validation.open_pending(opener=opener) == 1
    assert opened == [ADOBE]
    assert [v.from_adobe for v in ValidationRequest.objects.order_by("id")] == [False, True]


def test_only_the_last_20_validation_posts_of_a_source_are_kept(client, source, other_source):
    post_validation(client, other_source, ADOBE + "&n=other")
    for n in range(30):
        post_validation(client, source, f"{ADOBE}&n={n}")
    kept = ValidationRequest.objects.filter(source=source).order_by("id").values_list("url", flat=True)
    assert list(kept) == [f"{ADOBE}&n={n}" for n in range(10, 30)]
    assert ValidationRequest.objects.filter(source=other_source).count() == 1
