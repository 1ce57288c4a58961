"""One simulator run: generators feeding senders on one loop, until done, and what became of it.

A run ends when everything generated has been acknowledged or dropped (``--count``), when the
generation time is over and what was queued had ``drain`` more seconds (``--duration``), or when it is
stopped. The exit code: 0 when every event handed to a sender was acknowledged, else 1.
"""

import threading
import uuid
from dataclasses import dataclass, field

from streams.simulator import adobe, io_sender, keys, legacy_sender, transport
from streams.simulator.clock import RealClock
from streams.simulator.generators import ACTIVITY, Generator
from streams.simulator.loop import Loop
from streams.simulator.stats import Stats
from streams.simulator.status import Display

FEED_MIN_STEP = 0.005  # at high rates, events are released in small groups rather than one timer each
STATUS_EVERY = 0.25


class Feed:
    """Releases one generator's events at their arrival times and routes them to the senders."""

    def __init__(self, loop, generator, count, routes, start):
        self.loop = loop
        self.generator = generator
        self.count = count
        self.routes = routes  # stream -> [senders]
        self.start = start
        self.generated = 0
        self.stopped = False
        self._next = next(generator)

    def release(self):
        elapsed = self.loop.now() - self.start
        while not self.done and self._next.offset <= elapsed:
            for sender in self.routes[self._next.stream]:
                sender.offer(self._next)
            self.generated += 1
            self._next = next(self.generator)
        if not self.done:
            due = max(self.start + self._next.offset, self.loop.now() + FEED_MIN_STEP)
            self.loop.at(due, self.release)

    def stop(self):
        self.stopped = True

    @property
    def done(self):
        return self.stopped or (self.count is not None and self.generated >= self.count)


@dataclass
class Run:
    config: object
    loop: Loop
    feeds: list = field(default_factory=list)
    senders: list = field(default_factory=list)
    keyring: keys.KeyRing | None = None
    key_server: keys.KeyServer | None = None
    adobe: "adobe.AdobeServer | None" = None  # a string: the field would shadow the module
    interrupted: bool = False
    stop_requested: threading.Event = field(default_factory=threading.Event)
    generation_over_at: float | None = None

    @property
    def stats(self):
        return [sender.stats for sender in self.senders]


def run(config, clock=None, keyring=None, show_status=False, on_start=None, adobe_server=None):
    """Run the simulator as configured; return the summary dict (its ``exit_code`` included).

    ``on_start(run)`` is called once everything is listening and before the first event (tests use
    it to reach the run's state, and to stop it with ``run.stop_requested.set()``). An ``adobe_server``
    given is used and left running (tests read its journals after the run).
    """
    loop = Loop(clock or RealClock(), workers=_workers(config))
    state = Run(config, loop)
    try:
        _start_keys(state, keyring)
        state.adobe = adobe_server
        if adobe_server is None:
            _start_adobe(state)
        _build(state)
        if on_start:
            on_start(state)
        with Display(state.stats, enabled=show_status and not loop.clock.virtual) as display:
            if display.enabled:
                loop.every(STATUS_EVERY, display.refresh)
            _run_loop(state)
    finally:
        loop.close()
        if state.key_server:
            state.key_server.close()
        if state.adobe and adobe_server is None:
            state.adobe.close()
    return summary(state)


def _workers(config):
    per_target = (config.io_concurrency * 3 if config.uses_io else 0) + (1 if config.uses_legacy else 0)
    return max(4, per_target * len(config.targets) + 2)


def _start_keys(state, keyring):
    config = state.config
    if not (config.uses_io and config.io_streams()):
        return
    state.keyring = keyring or keys.KeyRing(config.key_dir)
    try:
        state.key_server = keys.KeyServer(state.keyring, config.key_port).start()
    except OSError as exc:
        raise KeyServerUnavailable(
            f"the key server cannot listen on 127.0.0.1:{config.key_port}: {exc.strerror}"
        ) from exc
    if config.rotate_keys_every:
        # Making an RSA key takes a while: on a worker, so that deliveries are not held up.
        state.loop.every(config.rotate_keys_every, lambda: state.loop.spawn(state.keyring.rotate, _ignore))


def _start_adobe(state):
    """IMS, the journals and the registration API, when I/O is simulated (on a port of its own)."""
    config = state.config
    if not (config.uses_io and config.io_streams()):
        return
    try:
        state.adobe = adobe.AdobeServer(
            state.loop.now, config.time_scale, config.adobe_port, config.adobe_client_secret
        ).start()
    except OSError as exc:
        raise KeyServerUnavailable(
            f"the Adobe server cannot listen on 127.0.0.1:{config.adobe_port}: {exc.strerror}"
        ) from exc


class KeyServerUnavailable(Exception):
    """The key port is taken: a configuration problem (exit code 2)."""


def _build(state):
    config, client = state.config, transport.Client()
    for target in config.targets:
        generator = Generator(
            target.munchkin_id,
            config.seed,
            target.client_id,
            streams=config.generated_streams(),
            rate=config.rate,
            reuse_ids=config.reuse_ids,
            bursts=config.bursts,
            daily_curve=config.daily_curve,
            time_scale=config.time_scale,
        )
        routes = {stream: [] for stream in config.generated_streams()}
        for stream in config.io_streams():
            routes[stream].append(_io_sender(state, target, stream, client))
        if config.uses_legacy:
            routes[ACTIVITY].append(_legacy_sender(state, target, generator, client))
        state.feeds.append(Feed(state.loop, generator, config.count, routes, state.loop.now()))
    for feed in state.feeds:
        state.loop.at(state.loop.now(), feed.release)
    if config.duration is not None:
        state.loop.at(config.duration, _wake_up)  # the loop checks whether to stop after each step


def _io_sender(state, target, stream, client):
    config = state.config
    options = io_sender.IoOptions(
        url=target.io_url,
        single=config.single,
        forged=config.forge,
        timeout=config.timeout or io_sender.TIMEOUT,
        time_scale=config.time_scale,
        concurrency=config.io_concurrency,
        provider=str(uuid.uuid5(uuid.NAMESPACE_URL, f"marketo:{target.munchkin_id}:{stream}")),
        outage=config.outage,
    )
    sender = io_sender.IoSender(state.loop, Stats(target.munchkin_id, "io", stream), options, state.keyring, client)
    if state.adobe:
        sender.journal = state.adobe.add(options.provider, target.client_id, sender)
    state.senders.append(sender)
    return sender


def _legacy_sender(state, target, generator, client):
    config = state.config
    options = legacy_sender.LegacyOptions(
        url=target.legacy_url,
        munchkin_id=target.munchkin_id,
        timeout=config.timeout or legacy_sender.TIMEOUT,
        time_scale=config.time_scale,
        queue_size=config.queue_size,
    )
    if target.oauth:
        auth = legacy_sender.ClientCredentials(
            target.oauth.token_url, target.oauth.client_id, target.oauth.client_secret
        )
    else:
        auth = legacy_sender.ApiToken(target.api_token)
    stats = Stats(target.munchkin_id, "legacy", ACTIVITY)
    start = state.loop.now()  # the feed's zero: generator offsets are counted from it

    def moment(loop_time):
        return generator.moment(loop_time - start)

    sender = legacy_sender.LegacySender(state.loop, stats, options, auth, client, generator.message_ids, moment)
    state.senders.append(sender)
    return sender


def _run_loop(state):
    try:
        state.loop.run(lambda: _should_stop(state))
    except KeyboardInterrupt:
        state.interrupted = True


def _should_stop(state):
    config, now = state.config, state.loop.now()
    if state.stop_requested.is_set():
        state.interrupted = True
        return True
    if config.duration is not None and now >= config.duration and state.generation_over_at is None:
        for feed in state.feeds:
            feed.stop()
        state.generation_over_at = now
        state.loop.at(now + config.drain, _wake_up)
    generating = not all(feed.done for feed in state.feeds)
    if not generating and all(stats.settled for stats in state.stats):
        return True
    if state.generation_over_at is not None and now >= state.generation_over_at + config.drain:
        return True
    return state.loop.clock.virtual and state.loop.idle


def _wake_up():
    pass


def _ignore(result):
    pass


def summary(state):
    config, all_stats = state.config, state.stats
    unfinished = sum(stats.queued for stats in all_stats)
    dropped = sum(stats.dropped for stats in all_stats)
    handed = sum(stats.generated for stats in all_stats)
    acknowledged = sum(stats.acknowledged for stats in all_stats)
    return {
        "seed": config.seed,
        "reuse_ids": config.reuse_ids,
        "protocol": config.protocol,
        "time_scale": config.time_scale,
        "elapsed_seconds": round(state.loop.now(), 3),
        "interrupted": state.interrupted,
        "generated": sum(feed.generated for feed in state.feeds),
        "deliveries": {
            "handed_to_senders": handed,
            "acknowledged": acknowledged,
            "dropped": dropped,
            "unfinished": unfinished,
        },
        "exit_code": 0 if handed == acknowledged else 1,
        "key_server": state.key_server.url if state.key_server else None,
        "key_paths": state.keyring.paths if state.keyring else [],
        "key_rotations": state.keyring.rotations if state.keyring else 0,
        "forged": config.forge,
        "adobe": {"url": state.adobe.url, "registrations": state.adobe.describe()} if state.adobe else None,
        "streams": [stats.as_json() for stats in all_stats],
    }
