"""Adobe registrations in the admin and on the Setup page: a write-only secret, the journal's state and health."""

import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from streams import secretbox
from streams.models import AdobeRegistration

pytestmark = pytest.mark.django_db
JOURNAL = "https://events-va6.adobe.io/events/organizations/o1/integrations/c1/r1"


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def key(settings):
    settings.FLUXO_SECRETS_KEY = secretbox.new_key()


def form(source, **fields):
    return {
        "name": "Acme activities",
        "source": source.id,
        "mode": "safety_net",
        "journal_url": JOURNAL,
        "ims_client_id": "client-1",
        "ims_org_id": "org@AdobeOrg",
        "client_secret": "the-client-secret",
        "cursors-TOTAL_FORMS": 0,
        "cursors-INITIAL_FORMS": 0,
        "gaps-TOTAL_FORMS": 0,
        "gaps-INITIAL_FORMS": 0,
        **fields,
    }


def test_the_client_secret_is_stored_encrypted_and_never_shown_back(admin_client, source, key):
    response = admin_client.post("/admin/streams/adoberegistration/add/", form(source))
    assert response.status_code == 302, response.content.decode()[:2000]
    registration = AdobeRegistration.objects.get()
    assert secretbox.unseal(registration.client_secret_encrypted) == "the-client-secret"
    assert "the-client-secret" not in registration.client_secret_encrypted

    page = admin_client.get(f"/admin/streams/adoberegistration/{registration.id}/change/").content.decode()
    assert "the-client-secret" not in page and registration.client_secret_encrypted not in page

    kept = admin_client.post(
        f"/admin/streams/adoberegistration/{registration.id}/change/", form(source, client_secret="")
    )
    assert kept.status_code == 302
    registration.refresh_from_db()
    assert secretbox.unseal(registration.client_secret_encrypted) == "the-client-secret"  # blank keeps it


def test_without_a_key_the_secret_is_refused_with_a_clear_message(admin_client, source, settings):
    settings.FLUXO_SECRETS_KEY = ""
    response = admin_client.post("/admin/streams/adoberegistration/add/", form(source))
    assert response.status_code == 200 and "set FLUXO_SECRETS_KEY" in response.content.decode()
    assert not AdobeRegistration.objects.exists()


def test_a_journal_url_off_adobes_journal_host_is_refused(admin_client, source, key):
    response = admin_client.post(
        "/admin/streams/adoberegistration/add/", form(source, journal_url="https://evil.example/events/organizations/x")
    )
    assert response.status_code == 200 and "must be on https://events-va6.adobe.io" in response.content.decode()


def test_the_setup_page_shows_a_stopped_journal_and_what_adobe_reported(admin_client, source, key):
    AdobeRegistration.objects.create(
        name="Acme activities",
        source=source,
        journal_url=JOURNAL,
        journal_state="stopped",
        stopped_reason="Adobe IMS refused the credentials (401, invalid_client): check the client id and secret",
        adobe_enabled=False,
        adobe_webhook_status="DISABLED",
        adobe_checked_at="2099-01-01T00:00:00Z",
    )
    page = admin_client.get(f"/admin/streams/source/{source.id}/setup/").content.decode()
    assert "Adobe IMS refused the credentials (401, invalid_client)" in page
    assert "<strong>disabled</strong>" in page and "re-enable it in the Adobe Developer Console" in page


def test_add_registration_reads_the_secret_from_the_environment(source, key, monkeypatch):
    monkeypatch.setenv("ACME_IMS_SECRET", "from-the-env")
    out = io.StringIO()
    call_command(
        "add_registration",
        "Acme activities",
        "--source",
        source.munchkin_id,
        "--journal-url",
        JOURNAL,
        "--ims-client-id",
        "client-1",
        "--client-secret-env",
        "ACME_IMS_SECRET",
        "--json",
        stdout=out,
    )
    document = json.loads(out.getvalue())
    assert document["has_credentials"] and "from-the-env" not in out.getvalue()
    assert secretbox.unseal(AdobeRegistration.objects.get().client_secret_encrypted) == "from-the-env"


def test_add_registration_refuses_a_journal_url_elsewhere(source, key):
    with pytest.raises(CommandError, match="must be on"):
        call_command("add_registration", "x", "--source", source.name, "--journal-url", "https://example.com/events")


def test_the_overviews_stream_health_says_where_each_registration_stands(client, source, key):
    from django.utils import timezone

    from tests.test_dashboard_overview import snapshot

    AdobeRegistration.objects.create(
        name="Acme activities",
        source=source,
        adobe_enabled=True,
        adobe_webhook_status="UNSTABLE",
        adobe_checked_at=timezone.now(),
    )
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))

    (row,) = snapshot(client)["health"]

    (registration,) = row["registrations"]
    assert registration["name"] == "Acme activities" and registration["level"] == "unstable"
    assert "will disable it in 24 hours" in registration["advice"]
