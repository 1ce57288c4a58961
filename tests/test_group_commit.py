"""Group commit (issue 15): concurrent requests of one process share one statement and one commit,
each still answered with its own counts and batch row, and only after that commit."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from streams import groupcommit, store
from streams.models import Batch, Event, Source
from tests.test_partitions import io_rows, legacy_rows

# --- the combiner, with plain functions ---------------------------------------------------------------


class Recorder:
    """run_many for a Combiner: records each group; the first one waits until ``hold`` others queue."""

    def __init__(self, hold=0, fail_when=None):
        self.groups, self.hold, self.fail_when = [], hold, fail_when
        self.combiner = None

    def run_many(self, jobs):
        if not self.groups and self.hold:
            deadline = time.monotonic() + 10
            while len(self.combiner._pending) < self.hold and time.monotonic() < deadline:
                time.sleep(0.005)
        self.groups.append(list(jobs))
        if self.fail_when and self.fail_when(jobs):
            raise RuntimeError(f"refused {jobs}")
        return [job * 10 for job in jobs]


def start_in_order(combiner, threads):
    """Start each thread once the previous one has entered ``combiner.submit`` (so jobs queue in the
    threads' order however loaded the machine is), then wait for them all."""
    entered, submit = [], combiner.submit

    def counted(*args):
        entered.append(args)
        return submit(*args)

    combiner.submit = counted
    for index, thread in enumerate(threads):
        thread.start()
        deadline = time.monotonic() + 10
        while len(entered) <= index and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.005)  # from entering submit to queueing: a lock and an append
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)


def submit_all(combiner, jobs):
    """Submit each job from its own thread; {job: result or the exception it raised}."""
    outcome = {}

    def one(job):
        try:
            outcome[job] = combiner.submit(job, 1)
        except Exception as exc:
            outcome[job] = exc

    start_in_order(combiner, [threading.Thread(target=one, args=(job,)) for job in jobs])
    return outcome


def combined(recorder, run_one=None, max_jobs=32, max_size=5_000):
    recorder.combiner = groupcommit.Combiner(recorder.run_many, run_one or (lambda job: -job), max_jobs, max_size)
    return recorder.combiner


def test_a_lone_job_runs_at_once_by_itself():
    recorder = Recorder()
    assert combined(recorder).submit(7, 1) == 70
    assert recorder.groups == [[7]]


def test_jobs_queued_behind_a_running_statement_share_the_next_one_each_with_its_own_result():
    recorder = Recorder(hold=4)
    outcome = submit_all(combined(recorder), [1, 2, 3, 4, 5])
    assert outcome == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
    assert recorder.groups == [[1], [2, 3, 4, 5]]


def test_a_group_is_bounded_in_jobs_and_in_size():
    recorder = Recorder(hold=5)
    outcome = submit_all(combined(recorder, max_jobs=2), [1, 2, 3, 4, 5, 6])
    assert outcome == {n: n * 10 for n in range(1, 7)}
    assert recorder.groups == [[1], [2, 3], [4, 5], [6]]

    sized = Recorder(hold=3)
    combiner = combined(sized, max_size=2)
    assert submit_all(combiner, [1, 2, 3, 4]) == {1: 10, 2: 20, 3: 30, 4: 40}
    assert sized.groups == [[1], [2, 3], [4]]


def test_when_a_shared_statement_fails_each_of_its_jobs_runs_alone():
    recorder = Recorder(hold=3, fail_when=lambda jobs: 3 in jobs)
    outcome = submit_all(combined(recorder, run_one=lambda job: -job), [1, 2, 3, 4])
    assert outcome == {1: 10, 2: -2, 3: -3, 4: -4}  # run_one: what each job does by itself


def test_a_lone_job_that_fails_raises_its_own_error_to_its_own_request():
    recorder = Recorder(hold=1, fail_when=lambda jobs: jobs == [2])
    outcome = submit_all(combined(recorder), [1, 2])
    assert outcome[1] == 10
    assert isinstance(outcome[2], RuntimeError) and "refused [2]" in str(outcome[2])


def test_many_threads_submitting_at_once_each_get_their_own_result_and_none_is_left_waiting():
    """The lead passes from thread to thread: a hand-off lost would leave a thread waiting for ever."""
    groups = []

    def run_many(jobs):
        groups.append(len(jobs))
        time.sleep(0.0005 * (len(groups) % 3))  # statements of different lengths, so groups vary
        return [job * 10 for job in jobs]

    combiner = groupcommit.Combiner(run_many, lambda job: -job, max_jobs=4, max_size=10)
    outcome = {}

    def many(first):
        for job in range(first, first + 200):
            outcome[job] = combiner.submit(job, 1)

    threads = [threading.Thread(target=many, args=(n * 1000,), daemon=True) for n in range(12)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for thread in threads:
        thread.join(max(0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads)
    assert outcome == {job: job * 10 for n in range(12) for job in range(n * 1000, n * 1000 + 200)}
    assert sum(groups) == 12 * 200 and max(groups) <= 4 and not combiner._pending and not combiner._leading


# --- the grouped statement, on PostgreSQL ----------------------------------------------------------------

postgres = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="group commit is the PostgreSQL store's")


def job(source, rows, protocol, received_at):
    store.resolve_sources(rows, source)
    return store._Job(rows, source.id, protocol, received_at, {"job": protocol})


@postgres
@pytest.mark.django_db
def test_one_statement_stores_each_job_under_its_own_batch_and_time(source, other_source):
    now = timezone.now()
    jobs = [
        job(source, legacy_rows("g-1", "g-2"), "legacy", now),
        job(other_source, io_rows("g-1", munchkin="987-XYZ-654"), "io", now + timedelta(milliseconds=3)),
        job(source, io_rows("g-2", "g-3"), "io", now + timedelta(milliseconds=5)),  # g-2: job 0 has it
        job(source, legacy_rows("g-1"), "legacy", now + timedelta(milliseconds=6)),  # all duplicates
    ]
    results = store._store_jobs(jobs)

    assert [batch_id is None for batch_id, _ in results] == [False, False, False, True]
    batches = [Batch.objects.get(id=batch_id) for batch_id, _ in results[:3]]
    assert [(b.source_id, b.protocol, b.accepted, b.duplicates) for b in batches] == [
        (source.id, "legacy", 2, 0),
        (other_source.id, "io", 1, 0),
        (source.id, "io", 1, 1),
    ]
    assert [b.received_at for b in batches] == [j.received_at for j in jobs[:3]]
    assert [b.meta for b in batches] == [{"job": "legacy"}, {"job": "io"}, {"job": "io"}]
    assert [b.counts for b in batches] == [counts for _, counts in results[:3]]
    for b in batches:
        events = Event.objects.filter(batch_id=b.id)
        assert b.first_event_id == min(e.id for e in events)
        assert {e.received_at for e in events} == {b.received_at}
        assert {e.source_id for e in events} == {b.source_id}
    assert Event.objects.count() == 4
    assert results[3] == (None, [])


class Waiters:
    """Counts how many requests a group-commit statement holds, and holds the first one until
    ``hold`` others have queued behind it (so the test does not depend on timing to form a group)."""

    def __init__(self, monkeypatch, hold):
        self.sizes, self.hold = [], hold
        run_many = store._store_jobs
        self.combiner = groupcommit.Combiner(self.run_many, store._store_job, max_jobs=16, max_size=400)
        self._run_many = run_many
        monkeypatch.setattr(store, "_group", self.combiner)

    def run_many(self, jobs):
        if not self.sizes:
            deadline = time.monotonic() + 10
            while len(self.combiner._pending) < self.hold and time.monotonic() < deadline:
                time.sleep(0.005)
        self.sizes.append(len(jobs))
        return self._run_many(jobs)


def store_from_threads(calls):
    """Run store.store(*call) in a thread each, as daphne's request threads do; their Stored, in order."""
    stored = [None] * len(calls)

    def one(index, args):
        try:
            stored[index] = store.store(*args)
        finally:
            connections.close_all()

    start_in_order(store._group, [threading.Thread(target=one, args=(i, call)) for i, call in enumerate(calls)])
    return stored


@postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_are_committed_together_exactly_once(monkeypatch):
    source = Source.objects.create(name="Acme", munchkin_id="123-ABC-456")
    waiters = Waiters(monkeypatch, hold=3)
    now = timezone.now()
    stored = store_from_threads(
        [
            (legacy_rows("c-0"), source, "legacy", now),
            (legacy_rows("c-1", "c-2"), source, "legacy", now),
            (io_rows("c-2", "c-3"), source, "io", now),  # c-2 is the previous request's
            (io_rows("c-1", "c-4", "c-4"), source, "io", now),  # c-1 too, and c-4 twice
        ]
    )
    assert waiters.sizes == [1, 3]
    assert [(s.accepted, s.duplicates) for s in stored] == [(1, 0), (2, 0), (1, 1), (1, 2)]
    assert sorted(Event.objects.values_list("activity_key", flat=True)) == [f"123-ABC-456|c-{n}" for n in range(5)]
    assert Batch.objects.count() == 4
    assert sum(Batch.objects.values_list("accepted", flat=True)) == 5


@postgres
@pytest.mark.django_db(transaction=True)
def test_a_grouped_request_that_postgresql_refuses_fails_alone(monkeypatch):
    source = Source.objects.create(name="Acme", munchkin_id="123-ABC-456")
    waiters = Waiters(monkeypatch, hold=2)
    bad = legacy_rows("b-1")
    bad[0]["primary_attribute"] = "a NUL \x00 PostgreSQL's text cannot hold"
    now = timezone.now()
    outcome = []

    def guarded(rows, name):
        try:
            outcome.append((name, store.store(rows, source, "legacy", now).accepted))
        except Exception as exc:
            outcome.append((name, type(exc).__name__))
        finally:
            connections.close_all()

    calls = [(legacy_rows("ok-0"), "first"), (bad, "bad"), (legacy_rows("ok-1"), "good")]
    start_in_order(store._group, [threading.Thread(target=guarded, args=call) for call in calls])
    assert waiters.sizes[:2] == [1, 2]  # the bad and the good request shared a statement, which failed
    assert dict(outcome)["first"] == 1 and dict(outcome)["good"] == 1
    assert dict(outcome)["bad"] != 1
    assert set(Event.objects.values_list("activity_key", flat=True)) == {"123-ABC-456|ok-0", "123-ABC-456|ok-1"}


@postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_of_more_rows_than_a_group_takes_runs_alone(monkeypatch):
    source = Source.objects.create(name="Acme", munchkin_id="123-ABC-456")
    waiters = Waiters(monkeypatch, hold=0)
    many = legacy_rows(*(f"m-{n}" for n in range(store.GROUP_MAX_ROWS + 1)))
    assert store.store(many, source, "legacy", timezone.now()).accepted == store.GROUP_MAX_ROWS + 1
    assert waiters.sizes == []
    assert store.store(legacy_rows("m-x"), source, "legacy", timezone.now()).accepted == 1
    assert waiters.sizes == [1]


@postgres
@pytest.mark.django_db
def test_a_request_inside_a_transaction_is_not_grouped(source, monkeypatch):
    waiters = Waiters(monkeypatch, hold=0)
    assert connection.in_atomic_block  # the test's own transaction
    assert store.store(legacy_rows("t-1"), source, "legacy", timezone.now()).accepted == 1
    assert waiters.sizes == []


@postgres
@pytest.mark.django_db(transaction=True)
def test_group_commit_can_be_turned_off(monkeypatch, settings):
    settings.FLUXO_GROUP_COMMIT = False
    source = Source.objects.create(name="Acme", munchkin_id="123-ABC-456")
    waiters = Waiters(monkeypatch, hold=0)
    assert store.store(legacy_rows("o-1"), source, "legacy", timezone.now()).accepted == 1
    assert waiters.sizes == []
