"""The sandbox Marketo against a live Fluxo: a real daphne serving fluxo.asgi, started with
ADOBE_IO_KEY_BASE_URL pointed at the simulator's key server, sources made with `add_source --json`.

The live server runs on SQLite, or on a scratch PostgreSQL database when the suite runs with a
PostgreSQL DATABASE_URL (the second pass of `make test`). The outage drill runs in that pass: it cuts
a TCP proxy standing between the web process and its database, so that Fluxo answers 503.
"""

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from rich.console import Console

from streams.simulator import config as simulator_config
from streams.simulator import runner, status
from streams.simulator.clock import VirtualClock
from streams.simulator.keys import KeyRing
from tests.processes import ROOT, TcpProxy, bare_env, daphne, free_port, manage, stop_embedded_redis

pytestmark = pytest.mark.slow

SOURCES = {
    "outage": "777-GGG-777",
    "count": "111-AAA-111",
    "count-eu": "111-AAA-222",
    "replay": "222-BBB-222",
    "wrong-token": "333-CCC-333",
    "forged": "444-DDD-444",
    "rotation": "555-EEE-555",
    "oauth": "666-FFF-666",
}
MAKE_SOURCES = """
import io, json
from django.core.management import call_command
made = {}
for name, munchkin in %r.items():
    out = io.StringIO()
    extra = ["--oauth-fluxo"] if name == "oauth" else []
    call_command("add_source", name, "--munchkin-id", munchkin, "--json", *extra, stdout=out)
    made[name] = json.loads(out.getvalue())
print(json.dumps(made))
"""


class LiveFluxo:
    """A migrated database, the sources, and a daphne web process pointed at the simulator's key server."""

    def __init__(self, var_dir, database=None):
        self.var_dir = Path(var_dir)
        self.key_port = free_port()
        self.database = database  # a ScratchDatabase, or None for SQLite
        self.env = bare_env(var_dir, ADOBE_IO_KEY_BASE_URL=f"http://127.0.0.1:{self.key_port}")
        if database:
            self.env["DATABASE_URL"] = database.url
        self.keyring = None
        self.proxy = None
        self.sources = {}
        self._stack = contextlib.ExitStack()

    def start(self, web_database_url=None, sources=SOURCES):
        manage(self.env, "migrate", "--noinput")
        output = manage(self.env, "shell", "--no-imports", "-c", MAKE_SOURCES % (sources,))
        self.sources = json.loads(output.strip().splitlines()[-1])
        for name, document in self.sources.items():
            (self.var_dir / f"{name}.json").write_text(json.dumps(document))
        web_env = {**self.env, "DATABASE_URL": web_database_url} if web_database_url else self.env
        self.base = self._stack.enter_context(daphne(web_env))
        self.keyring = KeyRing(self.var_dir / "simulator")  # where `manage.py simulate` keeps them too
        return self

    def stop(self):
        self._stack.close()
        stop_embedded_redis(self.var_dir)

    def source_file(self, name):
        return str(self.var_dir / f"{name}.json")

    def stored(self, name):
        """(rows, distinct event ids, distinct activity keys) stored for a source's Munchkin ID."""
        query = (
            "select count(*), count(distinct event_uid), count(distinct activity_key)"
            " from streams_event where munchkin_id = %s"
        )
        munchkin = self.sources[name]["munchkin_id"]
        if self.database:
            with psycopg.connect(self.database.direct) as conn:
                return conn.execute(query, (munchkin,)).fetchone()
        with contextlib.closing(sqlite3.connect(self.var_dir / "fluxo.sqlite3")) as conn:
            return conn.execute(query.replace("%s", "?"), (munchkin,)).fetchone()

    def options(self, name, **overrides):
        """The simulate command's options, as argparse would give them, for one source."""
        options = {
            "base_url": self.base,
            "source_json": [self.source_file(name)],
            "protocol": "io",
            "rate": 200.0,
            "time_scale": 60.0,
            "key_port": self.key_port,
            "queue_size": 100_000,
            "seed": 7,
        }
        options.update(overrides)
        return options

    def simulate(self, name, clock=None, on_start=None, **overrides):
        """An in-process run; its summary."""
        config = simulator_config.from_options(self.options(name, **overrides), self.var_dir)
        return runner.run(config, clock=clock, keyring=self.keyring, on_start=on_start)


class ScratchDatabase:
    """A PostgreSQL database made for one module and dropped after it."""

    def __init__(self, label):
        given = os.environ.get("DATABASE_URL", "")
        server = urlsplit(given) if given.startswith("postgres") else urlsplit("postgres://postgres@127.0.0.1:5432/x")
        self.name = f"fluxo_sim_{label}_{os.getpid()}"
        self.server = f"postgresql://{server.netloc}"
        self.direct = f"{self.server}/{self.name}"
        self.url = f"postgres://{server.netloc}/{self.name}"
        self.port = server.port or 5432
        self.userinfo = server.netloc.rsplit("@", 1)[0] + "@" if "@" in server.netloc else ""
        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def through(self, port):
        """The URL of this database reached through a proxy listening on 127.0.0.1:``port``."""
        return f"postgres://{self.userinfo}127.0.0.1:{port}/{self.name}"

    def drop(self):
        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def fluxo(tmp_path_factory):
    """On PostgreSQL, the web process reaches its database through a TCP proxy the outage test cuts."""
    on_postgres = os.environ.get("DATABASE_URL", "").startswith("postgres")
    database = ScratchDatabase("live") if on_postgres else None
    live = LiveFluxo(tmp_path_factory.mktemp("fluxo"), database)
    live.proxy = TcpProxy(database.port).start() if database else None
    try:
        yield live.start(web_database_url=database.through(live.proxy.port) if database else None)
    finally:
        live.stop()
        if database:
            with contextlib.suppress(OSError):
                live.proxy.cut()
            database.drop()


def run_command(fluxo, *args):
    """`manage.py simulate` in a subprocess, as a user runs it: (exit code, summary or None, stderr)."""
    command = [sys.executable, "manage.py", "simulate", "--json", "--quiet", "--key-port", str(fluxo.key_port), *args]
    result = subprocess.run(command, cwd=ROOT, env=fluxo.env, capture_output=True, text=True, timeout=120)
    summary = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, summary, result.stderr


def by(summary, protocol, stream="activity"):
    (found,) = [s for s in summary["streams"] if s["protocol"] == protocol and s["stream"] == stream]
    return found


# --- Everything arrives, exactly once -----------------------------------------------------------------


def test_n_generated_events_are_stored_once_each_even_when_sent_on_both_protocols(fluxo):
    code, summary, stderr = run_command(
        fluxo,
        "--base-url", fluxo.base,
        "--source-json", fluxo.source_file("count"),
        "--source-json", fluxo.source_file("count-eu"),
        "--protocol", "both",
        "--count", "150",
        "--rate", "300",
        "--time-scale", "60",
    )  # fmt: skip
    assert code == 0, stderr
    assert summary["generated"] == 300 and summary["exit_code"] == 0
    for name in ("count", "count-eu"):
        rows, _event_ids, activity_keys = fluxo.stored(name)
        assert rows == 150
        munchkin = fluxo.sources[name]["munchkin_id"]
        mine = [s for s in summary["streams"] if s["source"] == munchkin]
        activities = by({"streams": mine}, "io")["generated"]
        assert activity_keys == activities  # each activity once, though both protocols delivered it
        assert by({"streams": mine}, "legacy")["generated"] == activities
        # Every activity was refused once as a duplicate, by whichever protocol came second.
        assert (
            by({"streams": mine}, "io")["receiver_duplicates"] + by({"streams": mine}, "legacy")["receiver_duplicates"]
            == activities
        )


def test_a_replay_with_reused_ids_stores_nothing_new_and_a_new_run_stores_new_data(fluxo):
    first = fluxo.simulate("replay", protocol="both", count=80, reuse_ids=True)
    assert first["exit_code"] == 0 and fluxo.stored("replay")[0] == 80
    replay = fluxo.simulate("replay", protocol="both", count=80, reuse_ids=True)
    assert replay["exit_code"] == 0  # Fluxo acknowledges a redelivery like a delivery
    assert fluxo.stored("replay")[0] == 80
    handed = replay["deliveries"]["handed_to_senders"]
    assert sum(stream["receiver_duplicates"] for stream in replay["streams"]) == handed
    fresh = fluxo.simulate("replay", protocol="io", count=80)  # the same seed, fresh ids
    assert fresh["exit_code"] == 0 and fluxo.stored("replay")[0] == 160


def test_oauth_client_credentials_from_fluxos_own_token_endpoint(fluxo):
    summary = fluxo.simulate("oauth", protocol="legacy", count=60)
    assert summary["exit_code"] == 0, summary
    assert fluxo.stored("oauth")[0] == 60


# --- Fault drills -----------------------------------------------------------------------------------------


def test_a_wrong_token_pauses_the_legacy_push(fluxo):
    seen = {}
    summary = fluxo.simulate(
        "wrong-token",
        clock=VirtualClock(),
        protocol="legacy",
        count=10,
        api_token="not-the-token",
        time_scale=1,
        duration=1000,
        on_start=lambda run: seen.setdefault("run", run),
    )
    legacy = by(summary, "legacy")
    assert legacy["statuses"] == {"401": 6}  # the first try, 3 retries, then a try every 3 minutes
    tries = [attempt.at for attempt in seen["run"].senders[0].stats.attempts]
    assert [at - tries[0] for at in tries] == pytest.approx([0, 180, 360, 540, 720, 900])
    assert [state for _at, state in legacy["state_changes"]] == ["retrying", "paused"]
    assert legacy["state"] == "paused" and legacy["queued"] == 10
    assert summary["exit_code"] == 1
    assert fluxo.stored("wrong-token")[0] == 0


def test_forged_signatures_are_refused_and_the_events_dropped_as_adobe_would(fluxo):
    seen = {}
    summary = fluxo.simulate("forged", count=40, forge=True, on_start=lambda run: seen.setdefault("run", run))
    assert summary["deliveries"] == {"handed_to_senders": 40, "acknowledged": 0, "dropped": 40, "unfinished": 0}
    for stream in summary["streams"]:
        # Fluxo has not needed the second key yet: while one request fetches it, concurrent ones may
        # get a 503 (the key-fetch limits) and are retried; every delivery ends refused with a 401.
        assert "401" in stream["statuses"] and set(stream["statuses"]) <= {"401", "503"}
        assert stream["retried"] == stream["statuses"].get("503", 0)
        assert stream["dropped"] == stream["dropped_by_reason"].get("not_retryable", 0)
    assert summary["exit_code"] == 1
    assert fluxo.stored("forged")[0] == 0
    shown = Console(record=True, width=200, file=io.StringIO())
    shown.print(status.table(seen["run"].stats))
    text = shown.export_text()
    assert "HTTP 401" in text
    assert "dropped=40" in status.plain_line(seen["run"].stats)


def test_key_rotation_drops_nothing(fluxo):
    seen, before = {}, set(fluxo.keyring.paths)
    summary = fluxo.simulate(
        "rotation", duration=2, rate=100, rotate_keys_every=0.3, on_start=lambda run: seen.setdefault("run", run)
    )
    assert summary["exit_code"] == 0, summary
    assert summary["key_rotations"] >= 3 and not before & set(summary["key_paths"])
    assert set(seen["run"].key_server.fetched) - before, "Fluxo fetched a key at its new path"
    assert fluxo.stored("rotation")[0] == summary["generated"] > 0


# --- Fluxo answering 503 while its database is away --------------------------------------------------------


@pytest.fixture
def fluxo_behind_a_proxy(fluxo):
    if fluxo.proxy is None:
        pytest.skip("the database outage drill runs in the PostgreSQL pass (DATABASE_URL=postgres://...)")
    return fluxo


def test_while_fluxo_answers_503_the_senders_retry_and_nothing_is_lost(fluxo_behind_a_proxy):
    live = fluxo_behind_a_proxy
    live.proxy.cut()  # the database goes away before the first event

    def restore_once_both_protocols_retried(run):
        def watch():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(stats.retried >= 2 for stats in run.stats):
                time.sleep(0.05)
            live.proxy = TcpProxy(live.database.port, port=live.proxy.port).start()

        threading.Thread(target=watch, daemon=True).start()

    summary = live.simulate(
        "outage",
        protocol="both",
        streams="activity,audit",
        count=120,
        rate=400,
        time_scale=600,
        on_start=restore_once_both_protocols_retried,
    )
    assert summary["exit_code"] == 0, summary
    for stream in summary["streams"]:
        assert stream["statuses"].get("503", 0) >= 2 and stream["dropped"] == 0, stream
    assert live.stored("outage")[0] == 120
