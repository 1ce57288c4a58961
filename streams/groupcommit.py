"""Group commit: concurrent requests of one web process share one statement and one commit.

The first request that finds no statement running leads: it takes what is queued (itself included,
up to a bound), runs it as one statement, hands each request its own result and wakes the others.
The rest wait for their result, or lead the next statement. A lone request leads at once, so
grouping adds no wait while ingest is quiet; under load the statement's fixed cost (executor start,
the batch sequence, the commit's WAL flush, the round trip) is paid once for several requests.
streams.announce groups its Redis pipelines the same way.

Nothing is acknowledged early: a request gets its result only after the statement that holds its
rows has returned, committed. When a shared statement fails, its requests each run alone, so a
request whose data PostgreSQL refuses fails by itself, and an outage answers each with its own 503.
"""

import threading

_WAITING, _DONE, _FAILED, _ALONE = "waiting", "done", "failed", "alone"


class _Slot:
    __slots__ = ("job", "result", "size", "state")

    def __init__(self, job, size):
        self.job, self.size, self.state, self.result = job, size, _WAITING, None


class Combiner:
    """Runs jobs through ``run_many(jobs) -> results`` (one result a job, in order), grouping
    concurrent ones; ``run_one(job)`` is what a job of a failed group runs by itself."""

    def __init__(self, run_many, run_one, max_jobs, max_size):
        self._run_many, self._run_one = run_many, run_one
        self._max_jobs, self._max_size = max_jobs, max_size
        # One condition for all waiters: a statement's end wakes every waiting thread to look at its
        # state. Waking only the group's threads and handing the lead to the oldest queued job was
        # measured slower (BENCHMARKS.md, issue 15, fifth round): the next statement then waits for
        # one chosen thread to get the GIL, where now whichever thread runs first leads.
        self._changed = threading.Condition(threading.Lock())
        self._pending = []
        self._leading = False

    def submit(self, job, size):
        """The job's result, once a statement holding it has returned (raises what that raised)."""
        slot = _Slot(job, size)
        with self._changed:
            self._pending.append(slot)
            while slot.state is _WAITING:
                if self._leading:
                    self._changed.wait()
                else:
                    self._lead()
        if slot.state is _ALONE:
            return self._run_one(job)
        if slot.state is _FAILED:
            raise slot.result
        return slot.result

    def _lead(self):
        """Run one group with the lock released; called and returning with it held."""
        self._leading = True
        group = self._take()
        self._changed.release()
        try:
            self._run(group)
        finally:
            self._changed.acquire()
            self._leading = False
            self._changed.notify_all()

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
