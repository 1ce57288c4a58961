"""The simulator's single-threaded loop: timers, plus HTTP requests run on a worker pool.

Every piece of sender state is changed on the loop's thread only (timers and completion callbacks
run there), so the senders need no locks; the worker threads only make requests and sign bodies.
"""

import heapq
import itertools
import queue
from concurrent.futures import ThreadPoolExecutor


class Loop:
    def __init__(self, clock, workers=8):
        self.clock = clock
        self._timers = []
        self._order = itertools.count()
        self._completions = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simulate")
        self.in_flight = 0

    def now(self):
        return self.clock.now()

    def at(self, due, callback):
        heapq.heappush(self._timers, (due, next(self._order), callback))

    def after(self, delay, callback):
        self.at(self.now() + delay, callback)

    def every(self, interval, callback, first_delay=None):
        """Call ``callback`` every ``interval`` seconds until it returns False."""

        def tick():
            if callback() is not False:
                self.after(interval, tick)

        self.after(interval if first_delay is None else first_delay, tick)

    def spawn(self, work, then):
        """Run ``work()`` on a worker thread, then ``then(result)`` on the loop's thread."""
        self.in_flight += 1
        self._pool.submit(self._run_work, work, then)

    def _run_work(self, work, then):
        try:
            result = work()
        except BaseException as exc:  # delivered to the loop, which re-raises it there
            result = _Crashed(exc)
        self._completions.put((then, result))

    def run(self, should_stop):
        """Run timers and completions until ``should_stop()`` is true (checked after each step)."""
        while not should_stop():
            self._run_due_timers()
            if should_stop():
                return
            self._wait_once()

    def _run_due_timers(self):
        now = self.now()
        while self._timers and self._timers[0][0] <= now:
            _due, _order, callback = heapq.heappop(self._timers)
            callback()

    def _wait_once(self):
        due = self._timers[0][0] if self._timers else None
        try:
            then, result = self.clock.wait(self._completions, due, self.in_flight > 0)
        except queue.Empty:
            return
        self.in_flight -= 1
        if isinstance(result, _Crashed):
            raise result.exc
        then(result)

    @property
    def idle(self):
        """Nothing in flight and no timer pending: under a virtual clock nothing can happen any more."""
        return self.in_flight == 0 and not self._timers

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Crashed:
    def __init__(self, exc):
        self.exc = exc
