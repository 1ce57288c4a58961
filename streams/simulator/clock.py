"""Clocks the simulator's loop runs on: the real one, and a virtual one for tests.

The loop asks its clock for the time and waits on it for the next thing to happen: a timer falling
due or a request finishing. The virtual clock jumps straight to the next timer whenever nothing is in
flight, so a test walks through Adobe's 24-hour retry window in the time its requests take, and the
times it reads are exactly the scheduled ones.
"""

import queue
import time

# The real clock wakes at least this often, so that a stop request is noticed.
MAX_REAL_WAIT = 0.25
# A request in flight under the virtual clock gets this long in real time before the loop gives up
# waiting for it (longer than any request timeout the simulator uses).
MAX_VIRTUAL_BLOCK = 120.0


class RealClock:
    virtual = False

    def __init__(self):
        self._start = time.monotonic()

    def now(self):
        """Seconds since the clock was made."""
        return time.monotonic() - self._start

    def wait(self, completions, due, busy):
        """The next finished request from ``completions``; queue.Empty when ``due`` came first."""
        timeout = MAX_REAL_WAIT if due is None else min(MAX_REAL_WAIT, max(0.0, due - self.now()))
        return completions.get(timeout=timeout)


class VirtualClock:
    """Time that passes only when the loop has nothing to wait for but a timer."""

    virtual = True

    def __init__(self, start=0.0):
        self._now = start

    def now(self):
        return self._now

    def advance(self, seconds):
        self._now += seconds

    def wait(self, completions, due, busy):
        if busy:
            # A real request is in flight: virtual time stands still until it answers.
            return completions.get(timeout=MAX_VIRTUAL_BLOCK)
        try:
            return completions.get_nowait()
        except queue.Empty:
            if due is None:
                raise
            self._now = max(self._now, due)
            raise
