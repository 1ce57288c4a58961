"""The journal client against the sandbox's Adobe side (IMS, journal), in this process, on a clock the test moves.

Events go through the real store; the webhook copies through the real receiver.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from streams import journal, secretbox
from streams.models import AdobeRegistration, Batch, Event, JournalCursor, JournalGap
from streams.simulator.adobe import DAY
from tests.ingest import io_post
from tests.journal_sandbox import (
    BACKFILL,
    CONTINUOUS,
    REGISTRATION,
    SECRET,
    adobe,
    backfill,
    clock,
    journaled,
    registration,
)

__all__ = ["adobe", "clock", "registration"]  # fixtures


def stored_once(source, elements):
    """True when every element is stored exactly once (by its eventid) and nothing else is."""
    uids = list(Event.objects.filter(source=source).values_list("event_uid", flat=True))
    return sorted(uids) == sorted(e["eventid"] for e in elements)


def test_a_backfill_brings_back_every_journaled_event_once(registration, source, adobe):
    elements = journaled(adobe, source, 1200)

    progress = backfill(registration)

    assert (progress.at_end, progress.stored, progress.pages) == (True, 1200, 4)  # 3 pages of 500 or fewer, a 204
    assert stored_once(source, elements)
    cursor = JournalCursor.objects.get(registration=registration, kind=BACKFILL)
    assert cursor.finished_at is not None and cursor.events_stored == 1200
    assert set(Batch.objects.values_list("protocol", flat=True)) == {"journal"}
    assert all(batch.meta["late"] for batch in Batch.objects.all())


def test_a_second_backfill_over_the_same_range_stores_nothing_new(registration, source, adobe):
    elements = journaled(adobe, source, 300)
    backfill(registration)

    again = backfill(registration)

    assert (again.stored, again.duplicates) == (0, 300)
    assert stored_once(source, elements)


def test_events_the_webhook_delivered_are_not_stored_again(
    registration, source, adobe, client, key_server, signed_headers
):
    elements = journaled(adobe, source, 200)
    io_post(client, source, signed_headers, elements[50:120])  # the webhook got some before the outage

    progress = backfill(registration)

    assert (progress.stored, progress.duplicates) == (130, 70)
    assert stored_once(source, elements)


def test_a_worker_killed_mid_page_resumes_without_loss_or_duplicates(registration, source, adobe, monkeypatch):
    elements = journaled(adobe, source, 1200)
    advance = journal._advance
    calls = []

    def killed_on_the_second_page(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the events of this page are stored, its cursor not yet: all rolled back
        advance(*args)

    monkeypatch.setattr(journal, "_advance", killed_on_the_second_page)
    with pytest.raises(KeyboardInterrupt):
        backfill(registration)
    assert Event.objects.count() == 500  # the first page only

    monkeypatch.setattr(journal, "_advance", advance)
    resumed = journal.run(registration.id, BACKFILL)  # from the cursor, not from the start

    assert (resumed.stored, resumed.duplicates) == (700, 0)
    assert stored_once(source, elements)


def test_a_job_whose_lease_was_taken_over_commits_nothing(registration, source, adobe, monkeypatch):
    journaled(adobe, source, 600)
    journal.start_backfill(registration.id)

    def another_job_takes_over(progress):
        AdobeRegistration.objects.filter(pk=registration.id).update(lease_owner="someone else")

    progress = journal.run(registration.id, BACKFILL, on_page=another_job_takes_over)

    assert progress.busy and "another journal job holds it" in progress.error
    assert Event.objects.count() == 500  # the page after the takeover was rolled back


def test_a_job_waiting_on_a_slow_adobe_renews_its_short_lease_so_no_other_job_takes_over(
    registration, source, adobe, monkeypatch, settings
):
    journaled(adobe, source, 10)
    settings.FLUXO_JOURNAL_LEASE_SECONDS = 1
    adobe.page_delay = 1.5  # every page takes longer than the lease
    renew, intruders = journal._renew_lease, []

    def renewed_then_another_job_tries(registration_id, owner, now):
        renew(registration_id, owner, now)
        if not Event.objects.exists():  # while the first page is still awaited
            intruders.append(journal._take_lease(registration_id, "a second job"))

    monkeypatch.setattr(journal, "_renew_lease", renewed_then_another_job_tries)
    progress = backfill(registration)

    assert progress.at_end and progress.stored == 10 and not progress.busy
    assert len(intruders) >= 2 and not any(intruders)


def test_only_one_job_per_registration_at_a_time(registration, source, adobe):
    journaled(adobe, source, 10)
    assert journal._take_lease(registration.id, "first")

    assert journal.run(registration.id, CONTINUOUS).busy
    assert Event.objects.count() == 0


def test_backfill_and_continuous_keep_their_own_cursors(registration, source, adobe):
    elements = journaled(adobe, source, 700)
    journal.run(registration.id, CONTINUOUS, max_pages=1)

    progress = backfill(registration)

    assert (progress.stored, progress.duplicates) == (200, 500)
    cursors = dict(JournalCursor.objects.values_list("kind", "entries_read"))
    assert cursors == {CONTINUOUS: 500, BACKFILL: 700}
    assert stored_once(source, elements)


def test_continuous_polling_honours_the_retry_after_at_the_end(registration, source, adobe):
    registration.mode = AdobeRegistration.Mode.SAFETY_NET
    registration.save()
    journaled(adobe, source, 20)

    first = journal.poll_due()
    second = journal.poll_due()  # within the 204's retry-after (10 s): not polled

    assert first[registration.id]["stored"] == 20 and first[registration.id]["at_end"]
    assert second == {}


def test_an_expired_position_restarts_from_the_oldest_and_records_the_gap(
    registration, source, adobe, clock, monkeypatch
):
    monkeypatch.setattr(journal, "PAGE_LIMIT", 50)
    journaled(adobe, source, 100, seed=1)
    journal.run(registration.id, CONTINUOUS, max_pages=1)  # 50 read, then Fluxo is away for a week
    clock.seconds = 3 * DAY
    later = journaled(adobe, source, 100, seed=2)
    clock.seconds = 7.5 * DAY  # the first 100 are no longer kept

    progress = journal.run(registration.id, CONTINUOUS)

    assert (progress.gaps, progress.stored, progress.at_end) == (1, 100, True)
    gap = JournalGap.objects.get(registration=registration)
    assert gap.kind == CONTINUOUS and gap.expired_position and "may be lost" in gap.detail
    stored = set(Event.objects.values_list("event_uid", flat=True))
    assert {e["eventid"] for e in later} <= stored and len(stored) == 150


def test_an_ims_token_expiring_mid_backfill_is_renewed(registration, source, adobe):
    elements = journaled(adobe, source, 1200)

    progress = backfill(registration, on_page=lambda progress: adobe.expire_tokens())

    assert progress.at_end and progress.stored == 1200
    assert adobe.requests["token"] >= 2
    assert stored_once(source, elements)


def test_a_token_is_reused_until_shortly_before_it_expires(registration, source, adobe):
    journaled(adobe, source, 1200)

    backfill(registration)
    backfill(registration)

    assert adobe.requests["token"] == 1


def test_server_errors_are_retried(registration, source, adobe):
    elements = journaled(adobe, source, 300)
    adobe.fail_next(2, 503)

    progress = backfill(registration)

    assert progress.at_end and progress.error == ""
    assert stored_once(source, elements)


def test_server_errors_beyond_the_retries_end_the_run_and_the_next_resumes(registration, source, adobe):
    elements = journaled(adobe, source, 300)
    adobe.fail_next(4, 500)  # the run's attempts, no more

    failed = backfill(registration)
    resumed = journal.run(registration.id, BACKFILL)

    assert "answered 500" in failed.error and failed.stored == 0
    assert resumed.at_end and stored_once(source, elements)


def test_bad_credentials_stop_the_journal_with_a_clear_reason_and_never_log_the_secret(
    registration, source, adobe, caplog
):
    journaled(adobe, source, 50)
    registration.client_secret_encrypted = secretbox.seal("wrong-secret-value")
    registration.save()

    with caplog.at_level(logging.DEBUG):
        progress = backfill(registration)

    registration.refresh_from_db()
    assert registration.journal_state == AdobeRegistration.Journal.STOPPED
    assert "Adobe IMS refused the credentials (401, invalid_client)" in registration.stopped_reason
    assert progress.stopped == registration.stopped_reason
    assert Event.objects.count() == 0
    assert "wrong-secret-value" not in caplog.text and SECRET not in caplog.text
    assert journal.run(registration.id, BACKFILL).busy  # stopped until someone acts
    AdobeRegistration.objects.filter(pk=registration.id).update(client_secret_encrypted=secretbox.seal(SECRET))
    journal.resume(registration.id)
    assert journal.run(registration.id, BACKFILL).stored == 50


def test_a_journal_url_off_the_journal_host_is_refused(registration, source, adobe, settings):
    registration.journal_url = "https://attacker.example/events/organizations/o/integrations/c/r"
    registration.save()

    progress = backfill(registration)

    assert "must be on" in progress.stopped
    assert adobe.requests["token"] == 0  # no token fetched, so none could leak


def test_a_next_link_to_another_host_is_never_followed(registration, adobe):
    with pytest.raises(journal.Stopped, match="left the journal host"):
        journal.read_page(registration, "http://127.0.0.2:1/events/organizations/o/integrations/c/r")


def test_odd_entries_are_stored_as_the_webhook_would_and_an_unreadable_one_as_other(registration, source, adobe):
    elements = journaled(adobe, source, 3)
    bare = {k: v for k, v in elements[0].items() if k not in ("eventid", "recipientclientid")}
    adobe.journal.append(bare)  # a bare CloudEvent, without Adobe's eventid
    adobe.journal.append("not an event")
    adobe.journal.append({"event": {"body": {"type": 7}}, "eventid": "odd-1"})
    journaled(adobe, source, 2, seed=3)

    progress = backfill(registration)
    again = backfill(registration)

    assert (progress.entries, progress.malformed, progress.at_end) == (8, 1, True)
    (malformed,) = [e for e in Event.objects.all() if journal.MALFORMED_FLAG in e.flags]
    assert malformed.stream == "other" and '"event":"not an event"' in malformed.raw  # the entry, as read
    assert Event.objects.get(event_uid="odd-1").flags == ["no_munchkin_id", "no_type"]
    assert again.stored == 0  # the ones without an eventid are keyed by their position


def test_a_client_secret_cannot_be_stored_without_a_key(settings):
    settings.FLUXO_SECRETS_KEY = ""
    with pytest.raises(secretbox.NoKey, match="FLUXO_SECRETS_KEY"):
        secretbox.seal("s3cret")


def test_a_client_secret_is_stored_encrypted_and_read_back(settings):
    settings.FLUXO_SECRETS_KEY = secretbox.new_key()
    sealed = secretbox.seal("s3cret")
    assert "s3cret" not in sealed and secretbox.unseal(sealed) == "s3cret"
    settings.FLUXO_SECRETS_KEY = secretbox.new_key()
    with pytest.raises(secretbox.Unreadable):
        secretbox.unseal(sealed)


def test_the_state_for_metrics_gives_each_cursors_lag(registration, source, adobe):
    journaled(adobe, source, 600)
    journal.run(registration.id, CONTINUOUS, max_pages=1)

    newest = JournalCursor.objects.get().newest_event_at
    (behind,) = journal.state(now=newest + timedelta(minutes=5))
    journal.run(registration.id, CONTINUOUS)
    (caught_up,) = journal.state()

    assert behind["cursor"] == CONTINUOUS and behind["lag_seconds"] == 300.0
    assert caught_up["lag_seconds"] == 0.0 and caught_up["entries_read"] == 600 and caught_up["state"] == "idle"


class _Sender:
    """The sandbox's registration state as a sender keeps it (Active, Unstable, Disabled)."""

    def __init__(self, state):
        self.registration = type("State", (), {"state": state})()


def test_adobe_registration_state_is_polled_and_a_disabled_one_is_reported(registration, adobe):
    from streams import registration_health

    journal_, _, client_id = adobe.registrations[REGISTRATION]
    adobe.registrations[REGISTRATION] = (journal_, _Sender("disabled"), client_id)
    registration.registration_path = adobe.registration_path(REGISTRATION)
    registration.save()

    registration_health.poll_adobe_states()

    registration.refresh_from_db()
    assert (registration.adobe_webhook_status, registration.adobe_enabled) == ("hook_unreachable", False)
    health = registration_health.estimate(registration)
    assert health.level == "disabled" and "re-enable it in the Adobe Developer Console" in health.advice


def test_the_gap_report_shows_the_silence_and_what_the_journal_brought_back(
    registration, source, adobe, client, key_server, signed_headers
):
    from streams import registration_health
    from streams.models import Batch as BatchRow

    elements = journaled(adobe, source, 100)
    io_post(client, source, signed_headers, elements[:10])
    BatchRow.objects.filter(protocol="io").update(received_at=timezone.now() - timedelta(hours=5))
    backfill(registration)

    (gap,) = registration_health.gap_report(source, now=timezone.now() + timedelta(minutes=5))

    assert gap.duration >= timedelta(hours=4, minutes=59) and not gap.beyond_journal
    in_gap = Event.objects.filter(batch__protocol="journal", occurred_at__gte=gap.start, occurred_at__lt=gap.end)
    assert gap.recovered == in_gap.count() == 90


def test_a_journal_that_keeps_answering_410_ends_the_run_rather_than_looping(registration, source, adobe):
    journaled(adobe, source, 10)
    adobe.fail_next(5, 410)

    progress = backfill(registration)

    assert progress.gaps == journal.MAX_GAPS_PER_RUN and "keeps answering 410" in progress.error
    assert JournalGap.objects.count() == journal.MAX_GAPS_PER_RUN
