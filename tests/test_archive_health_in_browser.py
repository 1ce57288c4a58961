"""The overview's stream health with an archive destination, in real headless Chromium: each source's
archive reads ok, behind or failing, wide and at 390 px (screenshots in var/screenshots/)."""

import json

import pytest

from tests.browser import CREATE_ADMIN, needs_chromium, wait_for
from tests.processes import bare_env, daphne, manage, stop_embedded_redis
from tests.screenshots import PHONE, WIDE, screenshot
from tests.test_dashboard_in_browser import page

__all__ = ["page"]  # the overview's browser tests' page fixture (browser and logged_in: tests/browser.py)

pytestmark = [pytest.mark.slow, needs_chromium]

# Three sources: all archived; the oldest day not archived (as if the hourly run had not got to it); a
# day whose upload failed.
STATES = """
from datetime import timedelta
from streams import archive
from streams.models import ArchivedDay, Source
archive.archive_due()
behind, failing = Source.objects.get(name="Acme behind"), Source.objects.get(name="Acme failing")
ArchivedDay.objects.filter(source=behind).order_by("day").first().delete()
day = ArchivedDay.objects.filter(source=failing).order_by("day").first()
day.checked_at, day.error = None, "S3 answered 403 (AccessDenied)"
day.save()
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("archive-health-browser")
    (var_dir / "archive").mkdir()
    env = bare_env(var_dir, FLUXO_ARCHIVE_DEST=str(var_dir / "archive"), FLUXO_RETENTION_DAYS="3")
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", CREATE_ADMIN)
    for name, munchkin in (("Acme ok", "111-AAA-111"), ("Acme behind", "222-BBB-222"), ("Acme failing", "333-CCC-333")):
        json.loads(manage(env, "add_source", name, "--munchkin-id", munchkin, "--json"))
    manage(env, "shell", "-c", STATES)
    with daphne(env) as base:
        yield {"env": env, "base": base}
    stop_embedded_redis(var_dir)


def archive_cells(page):
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('#health tbody tr')).map("
        "tr => [tr.cells[0].textContent, tr.querySelector('td.archive') && tr.querySelector('td.archive').textContent])"
    )


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["wide", "390px"])
def test_stream_health_shows_each_source_s_archive_ok_behind_or_failing(site, page, viewport):
    page.set_viewport_size(viewport)
    page.goto(site["base"] + "/")
    wait_for(page, "() => document.querySelectorAll('#health td.archive').length === 3")

    cells = dict(archive_cells(page))

    assert cells["Acme ok"].startswith("ok (last ")
    assert cells["Acme behind"].startswith("behind: 1 day (last ")
    assert cells["Acme failing"].startswith("failing: 1 day (last ")
    assert page.locator("#health th", has_text="Archive").count() == 1
    assert not page.errors
    screenshot(page, f"overview-archive-{'wide' if viewport is WIDE else '390'}")
    if viewport is PHONE:  # the table scrolls sideways at this width: its last column, as one scrolled there
        page.evaluate(
            "() => { const t = document.getElementById('health'); t.scrollLeft = t.parentElement.scrollLeft = 1e4; }"
        )
        screenshot(page, "overview-archive-390-scrolled")
