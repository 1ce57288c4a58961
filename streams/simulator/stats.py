"""What each sender counts: the numbers of the live display, the JSON summary and the exit code.

Counts are of events, except ``requests`` and ``retried`` (attempts). Every event handed to a sender
ends up acknowledged or dropped; until then it is queued (waiting, in flight, or awaiting a retry).
"""

import collections
from dataclasses import dataclass, field

ATTEMPT_LOG = 5000


@dataclass
class Attempt:
    at: float  # loop time
    status: int
    events: int
    retry: int  # 0 for a first attempt
    error: str = ""


@dataclass
class Stats:
    source: str
    protocol: str  # "io" or "legacy"
    stream: str  # "activity", "audit", "notification"
    state: str = "active"
    generated: int = 0
    sent: int = 0  # events sent at least once
    acknowledged: int = 0
    retried: int = 0  # retry attempts
    requests: int = 0
    receiver_duplicates: int = 0  # what the receiver said it already had (Fluxo's "duplicates")
    dropped_by_reason: collections.Counter = field(default_factory=collections.Counter)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    attempts: collections.deque = field(default_factory=lambda: collections.deque(maxlen=ATTEMPT_LOG))
    last_error: str = ""
    state_changes: list = field(default_factory=list)  # (loop time, new state)

    def set_state(self, at, state):
        if state != self.state:
            self.state = state
            self.state_changes.append((at, state))

    @property
    def dropped(self):
        return sum(self.dropped_by_reason.values())

    @property
    def queued(self):
        return self.generated - self.acknowledged - self.dropped

    @property
    def settled(self):
        return self.queued == 0

    def drop(self, reason, count=1):
        if count:
            self.dropped_by_reason[reason] += count

    def record(self, at, answer, events, retry):
        self.requests += 1
        self.retried += retry > 0
        self.statuses[answer.status] += 1
        self.attempts.append(Attempt(at, answer.status, events, retry, answer.error))
        if not answer.ok:
            self.last_error = answer.error or f"HTTP {answer.status}"

    def as_json(self):
        return {
            "source": self.source,
            "protocol": self.protocol,
            "stream": self.stream,
            "state": self.state,
            "generated": self.generated,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "retried": self.retried,
            "queued": self.queued,
            "dropped": self.dropped,
            "dropped_by_reason": dict(sorted(self.dropped_by_reason.items())),
            "requests": self.requests,
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "receiver_duplicates": self.receiver_duplicates,
            "last_error": self.last_error,
            "state_changes": [[at, state] for at, state in self.state_changes],
        }
