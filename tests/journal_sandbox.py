"""The sandbox's Adobe side (IMS, journals) in the test's process, on a clock the test moves; fixtures for it."""

import pytest

from streams import journal, secretbox
from streams.models import AdobeRegistration, JournalCursor
from streams.simulator.adobe import AdobeServer
from streams.simulator.generators import Generator

CLIENT_ID = "fluxo-sandbox"
REGISTRATION = "reg-activity"
SECRET = "sandbox-secret"
BACKFILL, CONTINUOUS = JournalCursor.Kind.BACKFILL, JournalCursor.Kind.CONTINUOUS


class Clock:
    def __init__(self):
        self.seconds = 0.0

    def now(self):
        return self.seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def adobe(settings, clock, monkeypatch):
    server = AdobeServer(clock.now).start()
    settings.ADOBE_IMS_URL = settings.ADOBE_IO_API_URL = settings.ADOBE_JOURNAL_URL = server.url
    settings.FLUXO_SECRETS_KEY = secretbox.new_key()
    monkeypatch.setattr(journal, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    journal.forget_tokens()
    server.journal = server.add(REGISTRATION, CLIENT_ID)
    yield server
    server.close()
    journal.forget_tokens()


@pytest.fixture
def registration(source, adobe):
    return AdobeRegistration.objects.create(
        name="Acme activities",
        source=source,
        journal_url=adobe.journal_url(REGISTRATION),
        ims_client_id=CLIENT_ID,
        ims_org_id="sandbox@AdobeOrg",
        client_secret_encrypted=secretbox.seal(SECRET),
    )


def journaled(adobe, source, count, seed=1):
    """``count`` generated events of the source's Munchkin ID, journaled; their I/O elements."""
    elements = [event.io for event in Generator(source.munchkin_id, seed, CLIENT_ID).take(count)]
    for element in elements:
        adobe.journal.append(element)
    return elements


def backfill(registration, **options):
    journal.start_backfill(registration.id)
    return journal.run(registration.id, BACKFILL, **options)
