"""Static files: versioned names cached for good, gzip for clients that take it, no collectstatic."""

import gzip
import re
from pathlib import Path

from django.conf import settings
from django.templatetags.static import static

from fluxo import static_files

PLOTLY = settings.SITE_FILES_DIR / "static" / "vendor" / "plotly.min.js"
VERSIONED_PLOTLY = re.compile(r"/static/vendor/plotly\.min\.[0-9a-f]{12}\.js")


def body_of(response):
    return b"".join(response.streaming_content)


def test_the_overview_references_plotly_and_its_own_files_by_versioned_names(client, admin_user, db):
    client.force_login(admin_user)
    html = client.get("/").content.decode()
    assert VERSIONED_PLOTLY.search(html)
    assert "/static/vendor/plotly.min.js" not in html
    assert re.search(r'/static/css/fluxo\.[0-9a-f]{12}\.css"', html)
    assert re.search(r'/static/js/overview\.[0-9a-f]{12}\.js"', html)


def test_the_versioned_plotly_is_sent_gzipped_and_cached_for_good(client):
    url = static("vendor/plotly.min.js")
    response = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response["Vary"]
    assert response["Cache-Control"] == "max-age=315360000, public, immutable"
    compressed = body_of(response)
    assert int(response["Content-Length"]) == len(compressed) < PLOTLY.stat().st_size / 2
    assert gzip.decompress(compressed) == PLOTLY.read_bytes()


def test_a_client_that_takes_no_gzip_gets_the_file_as_it_is(client):
    response = client.get(static("vendor/plotly.min.js"))
    assert response.status_code == 200
    assert not response.has_header("Content-Encoding")
    assert body_of(response) == PLOTLY.read_bytes()


def test_the_plain_name_still_answers_with_a_short_cache(client):
    response = client.get("/static/vendor/plotly.min.js", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Cache-Control"] == "max-age=60, public"
    assert response["Content-Encoding"] == "gzip"


def test_a_wrong_version_is_not_served(client):
    assert client.get("/static/vendor/plotly.min.000000000000.js").status_code == 404


def test_the_name_changes_with_the_content(tmp_path):
    path = tmp_path / "app.js"
    path.write_text("one")
    first = static_files.content_hash(str(path))
    path.write_text("two!")
    second = static_files.content_hash(str(path))
    assert first != second
    assert static_files.versioned("js/app.js", first) == f"js/app.{first}.js"


def test_a_file_compression_does_not_pay_for_gets_no_copy(tmp_path):
    tiny = tmp_path / "tiny.js"
    tiny.write_text("x")
    assert static_files.gzip_copy(str(tiny), "tiny.abc.js", tmp_path / "gz") is None
    assert static_files.gzip_copy(str(PLOTLY), "vendor/p.abc.js", tmp_path / "gz").stat().st_size > 0


def test_under_debug_pages_use_the_plain_names(settings):
    settings.DEBUG = True
    assert static("vendor/plotly.min.js") == "/static/vendor/plotly.min.js"


def test_at_start_up_copies_of_superseded_versions_are_deleted_and_only_in_their_folder(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    folder = tmp_path / static_files.GZIP_DIR_NAME
    stale = folder / "vendor" / "plotly.min.0123456789ab.js.gz"
    left_scratch = folder / "css" / ".fluxo.0123456789ab.css.gz.999999999.1"
    for path in (stale, left_scratch):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"old")
    beside = tmp_path / "plotly.min.0123456789ab.js.gz"  # in VAR_DIR, outside the copies' folder
    beside.write_bytes(b"not ours")
    middleware = static_files.Middleware(lambda request: None)
    current = folder / f"{static_files.versioned_name('vendor/plotly.min.js')}.gz"
    assert current.exists() and str(current) in middleware.gzip_copies.values()
    assert not stale.exists() and not left_scratch.exists()
    assert beside.read_bytes() == b"not ours"
    assert {str(p) for p in folder.rglob("*") if p.is_file()} == set(middleware.gzip_copies.values())


def test_a_copy_deleted_under_a_running_process_is_sent_plain(tmp_path, settings, client):
    settings.VAR_DIR = tmp_path
    middleware = static_files.Middleware(lambda request: None)
    url = static("vendor/plotly.min.js")
    Path(middleware.gzip_copies[url]).unlink()  # as a newer process sharing the folder would
    response = middleware.files[url].get_response("GET", {"HTTP_ACCEPT_ENCODING": "gzip"})
    assert not any(name == "Content-Encoding" for name, _ in response.headers)
    assert response.file.read() == PLOTLY.read_bytes()
    response.file.close()
