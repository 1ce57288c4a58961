"""The load generator: keep-alive HTTP/1.1 clients in threads, closed-loop and open-loop.

Closed loop (``saturate``): C senders, each posting its next body as soon as the previous one is
acknowledged: the server's maximum rate at that concurrency. Open loop (``steady``): requests
scheduled at a fixed rate whatever the server does, each latency counted from its scheduled time
(so a server that falls behind shows it, instead of slowing the sender down: no coordinated omission).
"""

import http.client
import itertools
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    """What one phase measured; latencies in seconds."""

    requests: int = 0
    events: int = 0
    errors: dict = field(default_factory=dict)
    latencies: list = field(default_factory=list)
    elapsed: float = 0.0
    exhausted: bool = False
    client_cpu: float = 0.0  # seconds of this process's CPU during the phase

    def record(self, status, events, latency):
        if status == 200:
            self.requests += 1
            self.events += events
            self.latencies.append(latency)
        else:
            self.errors[status] = self.errors.get(status, 0) + 1

    def percentile(self, p):
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        # Nearest rank: the smallest value with at least p% of the samples at or below it.
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def rate(self, what="events"):
        return (self.events if what == "events" else self.requests) / self.elapsed if self.elapsed else 0.0


class Connection:
    """One keep-alive connection; reopened after an error (as a real sender would)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.http = http.client.HTTPConnection(host, port, timeout=60)

    def post(self, path, body, headers):
        try:
            self.http.request("POST", path, body=body, headers=headers)
            response = self.http.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            self.http.close()
            self.http = http.client.HTTPConnection(self.host, self.port, timeout=60)
            return type(exc).__name__

    def get(self, path):
        self.http.request("GET", path)
        response = self.http.getresponse()
        response.read()
        return response.status

    def close(self):
        self.http.close()


@dataclass
class Target:
    host: str
    port: int
    path: str
    headers: dict
    events_per_request: int


def _send(connection, target, item):
    body, extra = item if isinstance(item, tuple) else (item, {})
    return connection.post(target.path, body, {**target.headers, **extra})


class _Phase:
    """Shared bookkeeping of one phase: the next body, the results, the clock."""

    def __init__(self, target, items):
        self.target, self.items = target, items
        self.next_index = itertools.count()
        self.lock = threading.Lock()
        self.result = Result()

    def take(self):
        index = next(self.next_index)  # itertools.count is atomic under the GIL
        if index >= len(self.items):
            self.result.exhausted = True
            return None
        return self.items[index]

    def record(self, status, latency):
        with self.lock:
            self.result.record(status, self.target.events_per_request, latency)


def saturate(target, items, concurrency, duration):
    """Closed loop: ``concurrency`` senders back to back for ``duration`` seconds (or until items run out)."""
    phase = _Phase(target, items)
    connections = [Connection(target.host, target.port) for _ in range(concurrency)]
    cpu0, start = os.times(), time.perf_counter()
    deadline = start + duration

    def sender(connection):
        while time.perf_counter() < deadline:
            item = phase.take()
            if item is None:
                return
            sent = time.perf_counter()
            status = _send(connection, target, item)
            phase.record(status, time.perf_counter() - sent)

    _run_threads(sender, connections)
    return _finish(phase, connections, cpu0, start)


def steady(target, items, rate, duration, pool=32):
    """Open loop: ``rate`` requests a second for ``duration`` seconds, latency from the scheduled time."""
    phase = _Phase(target, items)
    connections = [Connection(target.host, target.port) for _ in range(pool)]
    work = queue.SimpleQueue()
    cpu0, start = os.times(), time.perf_counter()

    def sender(connection):
        while (job := work.get()) is not None:
            scheduled, item = job
            status = _send(connection, target, item)
            phase.record(status, time.perf_counter() - scheduled)

    threads = _start_threads(sender, connections)
    _schedule(phase, work, start, rate, duration)
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    return _finish(phase, connections, cpu0, start)


def _schedule(phase, work, start, rate, duration):
    for n in range(int(rate * duration)):
        scheduled = start + n / rate
        pause = scheduled - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        item = phase.take()
        if item is None:
            return
        work.put((scheduled, item))


def _start_threads(function, connections):
    threads = [threading.Thread(target=function, args=(c,), daemon=True) for c in connections]
    for thread in threads:
        thread.start()
    return threads


def _run_threads(function, connections):
    for thread in _start_threads(function, connections):
        thread.join()


def _finish(phase, connections, cpu0, start):
    phase.result.elapsed = time.perf_counter() - start
    cpu1 = os.times()
    phase.result.client_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    for connection in connections:
        connection.close()
    return phase.result


def wait_until_serving(host, port, path, timeout=60.0, probes=16):
    """True once ``probes`` fresh connections in a row get 200 for ``path`` (every worker is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(_probe(host, port, path) == 200 for _ in range(probes)):
                return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def _probe(host, port, path):
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
