"""Group commit: concurrent requests of one web process share one statement and one commit.

The first request that finds no statement running leads: it takes what is queued (itself included,
up to a bound), runs it as one statement, hands each request its own result, wakes them, and hands
the lead to the oldest request still queued. The rest wait for their result, or for the lead. A lone
request leads at once, so grouping adds no wait while ingest is quiet; under load the statement's
fixed cost (executor start, the batch sequence, the commit's WAL flush, the round trip) is paid once
for several requests. streams.announce groups its Redis pipelines the same way.

Nothing is acknowledged early: a request gets its result only after the statement that holds its
rows has returned, committed. When a shared statement fails, its requests each run alone, so a
request whose data PostgreSQL refuses fails by itself, and an outage answers each with its own 503.
"""

import threading

_WAITING, _DONE, _FAILED, _ALONE = "waiting", "done", "failed", "alone"


class _Slot:
    __slots__ = ("job", "result", "size", "state", "wake")

    def __init__(self, job, size):
        self.job, self.size, self.state, self.result = job, size, _WAITING, None
        # Released once, when the job's group is done or when it is to lead the next group: each
        # waiting thread is woken for its own reason only, never by every statement that ends.
        self.wake = threading.Lock()
        self.wake.acquire()


class Combiner:
    """Runs jobs through ``run_many(jobs) -> results`` (one result a job, in order), grouping
    concurrent ones; ``run_one(job)`` is what a job of a failed group runs by itself.

    A leader that finishes hands the lead to the oldest job still queued, if any, and wakes the jobs
    of its group, one by one: with one condition for all (as before), each statement's end woke every
    waiting thread to look at its own state, and under load most went back to sleep.
    """

    def __init__(self, run_many, run_one, max_jobs, max_size):
        self._run_many, self._run_one = run_many, run_one
        self._max_jobs, self._max_size = max_jobs, max_size
        self._lock = threading.Lock()
        self._pending = []
        self._leading = False

    def submit(self, job, size):
        """The job's result, once a statement holding it has returned (raises what that raised)."""
        slot = _Slot(job, size)
        with self._lock:
            self._pending.append(slot)
            waits, self._leading = self._leading, True
        if waits:
            slot.wake.acquire()
        if slot.state is _WAITING:  # no one leads: this one does, and its group holds it
            self._lead(slot)
        if slot.state is _ALONE:
            return self._run_one(job)
        if slot.state is _FAILED:
            raise slot.result
        return slot.result

    def _lead(self, own):
        """Run one group, the oldest queued jobs (``own`` among them), then pass the lead on."""
        with self._lock:
            group = self._take()
        try:
            self._run(group)
        finally:
            with self._lock:
                successor = self._pending[0] if self._pending else None
                self._leading = successor is not None
            for slot in group:
                if slot is not own:
                    slot.wake.release()
            if successor is not None:
                successor.wake.release()

    def _take(self):
        """The oldest pending jobs, at most max_jobs and (after the first) max_size in all."""
        count, size = 0, 0
        for slot in self._pending[: self._max_jobs]:
            if count and size + slot.size > self._max_size:
                break
            count, size = count + 1, size + slot.size
        group, self._pending = self._pending[:count], self._pending[count:]
        return group

    def _run(self, group):
        try:
            results = self._run_many([slot.job for slot in group])
        except BaseException as exc:
            # One job: its own failure (a retry would pay an outage's timeout twice). Several: each
            # alone, so the failure lands only on the jobs it belongs to.
            for slot in group:
                slot.state, slot.result = (_FAILED, exc) if len(group) == 1 else (_ALONE, None)
            if not isinstance(exc, Exception):
                raise
            return
        for slot, result in zip(group, results, strict=True):
            slot.state, slot.result = _DONE, result
