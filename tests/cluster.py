"""Fluxo as several hosts on this machine, for the scale-out drill (tests/test_scale_out.py) and its long
version (bench/scaleout.py).

Each "host" has a loopback address of its own (127.0.0.0/8 is all loopback on Linux) and a var/
directory of its own, as separate machines would: the web hosts (``python -m fluxo.serve``) on
127.0.0.2, 127.0.0.3 …, nginx on 127.0.0.4 with deploy/nginx's proxy settings in front of them, the
workers and beats as processes of their own. PostgreSQL and Redis are the machine's, on 127.0.0.1:
the database host. A host is killed as a crash kills it: SIGKILL to its whole process group.

``python -m tests.cluster sandbox SPEC OUT`` runs the sandbox simulator with a tap on its senders
that records the id of every event acknowledged, so the drill can compare ids, not only counts;
``python -m tests.cluster browsers SESSION HOST:PORT …`` keeps live sockets open (Browsers).
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from tests import nginx

ROOT = Path(__file__).resolve().parent.parent
DATABASE_HOST = "127.0.0.1"  # where the machine's PostgreSQL and Redis listen
PROXY_HOST = "127.0.0.4"
WEB_HOSTS = ("127.0.0.2", "127.0.0.3")
MUNCHKIN_ID = "321-DRL-654"
WORKER_QUEUES = "celery,alerts,deliveries,maintenance"
BEAT_LOCK_MODULE = ROOT / "fluxo" / "beat.py"  # the single-beat lock (issue 11), when merged

SETUP_SCRIPT = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from alerts.models import Destination, Rule
spec = json.loads('''{spec}''')
user = User.objects.create_superuser("drill", "drill@localhost", None)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
hook = Destination.objects.create(name="drill hook", kind="webhook", url=spec["hook"], rate_limit_per_minute=100000)
rule = Rule.objects.create(name="every notification", kind="match", group_wait_seconds=spec["group_wait"],
                           repeat_minutes=0, conditions=[{{"path": "stream", "op": "eq", "value": "notification"}}])
rule.destinations.set([hook])
print(session.session_key)
"""


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free_on(hosts):
    """One port number free on every address in ``hosts`` (each web host listens on the same port)."""
    for _ in range(50):
        port = free_port(hosts[0])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on every web host's address")


def beat_lock_available():
    return BEAT_LOCK_MODULE.exists()


class Process:
    """One process of a host, in a process group of its own (a host's crash kills all of it)."""

    def __init__(self, name, command, env, log_dir):
        self.name, self.command, self.env = name, command, env
        self.log_path = Path(log_dir) / f"{name}.log"
        self.popen = None
        self.log = None

    def start(self):
        self.log = open(self.log_path, "a")  # noqa: SIM115 (closed by stop/kill)
        self.popen = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def kill(self):
        """SIGKILL to the whole group, as when the machine dies: nothing gets to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self.log.close()

    def stop(self, timeout=20):
        if self.popen is None or self.popen.poll() is not None:
            if self.log:
                self.log.close()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self.log.close()

    def output(self):
        return self.log_path.read_text(errors="replace")


class Cluster:
    """A migrated scratch database, one source, a rule with a webhook destination, and the hosts."""

    def __init__(self, var_dir, pg_server, redis_url, key_port, hook_url, group_wait=3):
        self.var = Path(var_dir)
        self.pg_server = pg_server.rstrip("/")  # postgres://user@host:port
        self.db_name = f"fluxo_scaleout_{os.getpid()}"
        self.dsn = f"{self.pg_server}/{self.db_name}"
        self.redis_url = redis_url
        self.key_port = key_port
        self.hook_url = hook_url
        self.group_wait = group_wait
        self.web_port = port_free_on(WEB_HOSTS)
        self.proxy_port = free_port(PROXY_HOST)
        self.webs, self.workers, self.beats = {}, [], []
        self.nginx = self.proxy_process = None
        self.session = None
        self.source = None

    # --- set-up --------------------------------------------------------------------------------

    def env(self, host_dir, **extra):
        from fluxo import env as fluxo_env

        allowed = ",".join(("localhost", DATABASE_HOST, PROXY_HOST, *WEB_HOSTS))
        values = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "SECRET_KEY": "scale-out-drill-secret-key-0123456789abcdef",
            "ALLOWED_HOSTS": allowed,
            "DATABASE_URL": self.dsn,
            "REDIS_URL": self.redis_url,
            "FLUXO_VAR_DIR": str(host_dir),
            "FLUXO_LOG_LEVEL": "WARNING",
            "ADOBE_IO_KEY_BASE_URL": f"http://127.0.0.1:{self.key_port}",
            "FLUXO_ALLOW_PRIVATE_URLS": "1",  # the webhook receiver is on loopback
        }
        if "FLUXO_TRUSTED_PROXIES" in fluxo_env.KNOWN:
            values["FLUXO_TRUSTED_PROXIES"] = PROXY_HOST
        values.update(extra)
        return values

    def host_dir(self, name):
        path = self.var / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def manage(self, *args):
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(self.host_dir("admin")),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode:
            raise AssertionError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def create(self):
        self._admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self._admin_sql(f'CREATE DATABASE "{self.db_name}"')
        self._flush_redis()
        self.manage("migrate", "--noinput", "-v", "0")
        self.source = json.loads(self.manage("add_source", "Drill", "--munchkin-id", MUNCHKIN_ID, "--json"))
        (self.var / "source.json").write_text(json.dumps(self.source))
        spec = json.dumps({"hook": self.hook_url, "group_wait": self.group_wait})
        self.session = self.manage("shell", "-c", SETUP_SCRIPT.format(spec=spec)).strip().splitlines()[-1]
        return self

    def drop(self):
        with contextlib.suppress(psycopg.Error):
            self._admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self._flush_redis()

    def _admin_sql(self, sql):
        with psycopg.connect(f"{self.pg_server}/postgres", autocommit=True) as conn:
            conn.execute(sql)

    def _flush_redis(self):
        import redis

        with contextlib.closing(redis.Redis.from_url(self.redis_url)) as client:
            client.flushdb()

    # --- hosts ---------------------------------------------------------------------------------

    def start_web(self, host):
        command = [sys.executable, "-m", "fluxo.serve", "--workers", "1", "--bind", f"{host}:{self.web_port}"]
        # INFO: each request's access line (fluxo.request), which shows what nginx sent each host.
        env = self.env(self.host_dir(f"web-{host}"), FLUXO_LOG_LEVEL="INFO")
        process = Process(f"web-{host}", command, env, self.var).start()
        self.webs[host] = process
        wait_listening((host, self.web_port), process)
        return process

    def start_proxy(self, hosts):
        directory = self.host_dir("proxy")
        upstreams = "".join(f"    server {h}:{self.web_port} max_fails=1 fail_timeout=5s;\n" for h in hosts)
        block = (
            'map $http_upgrade $connection_upgrade {\n    default upgrade;\n    "" "";\n}\n'
            f"upstream fluxo_web {{\n{upstreams}    keepalive 32;\n}}\n"
            f"server {{\n    listen {PROXY_HOST}:{self.proxy_port};\n"
            # The proxy host's own address, as the web hosts would see it from another machine.
            f"    proxy_bind {PROXY_HOST};\n"
            f"    include {nginx.PROXY_SNIPPET};\n}}\n"
        )
        conf = nginx.main_conf(directory, block)
        self.nginx = nginx.running(conf, [(PROXY_HOST, self.proxy_port)])
        self.proxy_process = self.nginx.__enter__()
        return f"http://{PROXY_HOST}:{self.proxy_port}"

    def stop_proxy(self):
        if self.nginx:
            self.nginx.__exit__(None, None, None)
            self.nginx = None

    def start_worker(self, name):
        command = [
            sys.executable, "-m", "celery", "-A", "fluxo", "worker", "--pool", "solo", "--without-mingle",
            "--without-gossip", "--hostname", f"{name}@drill", "--loglevel", "INFO",
            # Every queue, named: Celery's default one and those the routes of issue 11 send tasks to.
            "--queues", WORKER_QUEUES,
        ]  # fmt: skip
        process = Process(name, command, self.env(self.host_dir(name)), self.var).start()
        self.workers.append(process)
        return process

    def start_beat(self, name):
        schedule = self.host_dir(name) / "celerybeat-schedule"
        command = [sys.executable, "-m", "celery", "-A", "fluxo", "beat", "--schedule", str(schedule), "-l", "INFO"]
        process = Process(name, command, self.env(self.host_dir(name)), self.var).start()
        self.beats.append(process)
        return process

    def stop_all(self):
        for process in [*self.beats, *self.workers, *self.webs.values()]:
            process.stop()
        self.stop_proxy()

    # --- what was stored, fired and delivered ----------------------------------------------------

    def stored_keys(self):
        """Every stored event of the drill's source as its natural key: (event_uid, activity_key) rows."""
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(
                "SELECT event_uid, activity_key FROM streams_event WHERE munchkin_id = %s", (MUNCHKIN_ID,)
            ).fetchall()

    def fired_alerts(self):
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute("SELECT id FROM alerts_alert WHERE fired_at IS NOT NULL").fetchall()
        return {row[0] for row in rows}

    def claimed_deliveries(self):
        with psycopg.connect(self.dsn) as conn:
            return conn.execute("SELECT count(*) FROM alerts_delivery WHERE status = 'claimed'").fetchone()[0]


def wait_listening(address, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited with {process.popen.returncode}:\n{process.output()}")
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"{process.name} did not listen on {address}:\n{process.output()}")


def pg_server_from(url):
    """postgres://user@host:port of a DATABASE_URL (its database name dropped)."""
    parts = urlsplit(url)
    return f"postgres://{parts.netloc}"


# --- Browsers: live sockets, one per web host ------------------------------------------------------------


class Browsers:
    """Logged-in live sockets (``/ws/live/?source=all``), one per address given, each reconnecting as a
    page does when its socket drops, in a process of their own (autobahn's asyncio client cannot share
    a process with daphne's Twisted, which pytest-django loads). Each connection and each ``live.delta``
    frame is a line of the log: ``connect|frame HOST:PORT UNIX-TIME``."""

    def __init__(self, session, addresses, log_dir):
        self.addresses = list(addresses)  # (host, port)
        targets = [f"{host}:{port}" for host, port in self.addresses]
        command = [sys.executable, "-m", "tests.cluster", "browsers", session, *targets]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
        self.process = Process("browsers", command, env, log_dir)

    def start(self):
        self.process.start()
        return self

    def stop(self):
        self.process.stop(timeout=5)

    def _times(self, kind, address):
        wanted = f"{address[0]}:{address[1]}"
        lines = (line.split() for line in self.process.output().splitlines())
        return [float(parts[2]) for parts in lines if len(parts) == 3 and parts[:2] == [kind, wanted]]

    def frames(self, address, after=0.0):
        """How many delta frames the socket(s) to ``address`` received after ``after`` (time.time())."""
        return sum(1 for at in self._times("frame", address) if at > after)

    def connects(self, address):
        return len(self._times("connect", address))


async def follow_sockets(session, addresses):
    """The browsers' process: follow every address until killed, printing connects and delta frames."""
    import asyncio

    await asyncio.gather(*(_follow(session, address) for address in addresses))


async def _follow(session, address):
    import asyncio

    loop = asyncio.get_running_loop()
    while True:
        closed = loop.create_future()
        with contextlib.suppress(OSError):
            transport, _protocol = await loop.create_connection(_page(session, address, closed), *address)
            await closed
            transport.close()
        await asyncio.sleep(0.5)


def _page(session, address, closed):
    import orjson
    from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

    host, port = address

    def note(kind):
        print(kind, f"{host}:{port}", f"{time.time():.3f}", flush=True)

    class Page(WebSocketClientProtocol):
        def onOpen(self):
            note("connect")

        def onMessage(self, payload, is_binary):
            if orjson.loads(payload).get("type") == "live.delta":
                note("frame")

        def onClose(self, was_clean, code, reason):
            if not closed.done():
                closed.set_result(code)

    factory = WebSocketClientFactory(
        f"ws://{host}:{port}/ws/live/?source=all",
        origin=f"http://{host}:{port}",
        headers={"Cookie": f"sessionid={session}"},
    )
    factory.protocol = Page
    return factory


# --- The sandbox, with a tap on what was acknowledged ----------------------------------------------------


def sandbox_command(spec_path, out_path):
    return [sys.executable, "-m", "tests.cluster", "sandbox", str(spec_path), str(out_path)]


def run_sandbox(spec, out_path):
    """Run the simulator as ``spec`` (its command options) says; write its summary and acknowledged ids."""
    from streams.simulator import config as simulator_config
    from streams.simulator import io_sender, runner

    acknowledged = {"io": [], "legacy": []}

    def tap(run):
        for sender in run.senders:
            if isinstance(sender, io_sender.IoSender):
                _tap_io(sender, acknowledged["io"])
            else:
                _tap_legacy(sender, acknowledged["legacy"])

    config = simulator_config.from_options(spec, Path(out_path).parent)
    summary = runner.run(config, on_start=tap)
    Path(out_path).write_text(json.dumps({"summary": summary, "acknowledged": acknowledged}))
    return summary["exit_code"]


def _tap_io(sender, ids):
    """Wraps the sender's answer handler (read at each answer): the events of an acknowledged delivery."""
    answered = sender._answered

    def recording(delivery, answer):
        if answer.ok:
            ids.extend(event.eventid for event in delivery.events)
        answered(delivery, answer)

    sender._answered = recording


def _tap_legacy(sender, ids):
    answered = sender._answered

    def recording(answer):
        if answer.ok:
            ids.extend(event.legacy["marketoGUID"] for _queued, event in sender.batch.activities)
        answered(answer)

    sender._answered = recording


def sandbox_spec(base_url, source_json, key_port, rate, duration, time_scale=20.0, drain=60.0):
    """All three streams through the proxy: activities on the legacy push, audit and notifications on I/O."""
    return {
        "base_url": base_url,
        "source_json": [str(source_json)],
        "protocol": "both",
        "no_overlap": True,
        "rate": float(rate),
        "duration": float(duration),
        "drain": float(drain),
        "time_scale": float(time_scale),
        "key_port": key_port,
        "queue_size": 1_000_000,
        "seed": int(uuid.uuid4().int % 2**31),
    }


def stored_exactly_once(acknowledged, stored):
    """(acknowledged ids missing from the store, ids stored more than once) for the drill's source."""
    keys = [uid if uid else key for uid, key in stored]
    counts = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    wanted = set(acknowledged["io"]) | {f"{MUNCHKIN_ID}|{guid}" for guid in acknowledged["legacy"]}
    missing = wanted - set(counts)
    doubled = {key for key, n in counts.items() if n > 1}
    return missing, doubled


def main(argv):
    if len(argv) == 3 and argv[0] == "sandbox":
        return run_sandbox(json.loads(Path(argv[1]).read_text()), argv[2])
    if len(argv) >= 3 and argv[0] == "browsers":
        import asyncio

        addresses = [(target.rsplit(":", 1)[0], int(target.rsplit(":", 1)[1])) for target in argv[2:]]
        asyncio.run(follow_sockets(argv[1], addresses))
        return 0
    raise SystemExit("usage: python -m tests.cluster sandbox SPEC.json OUT.json | browsers SESSION HOST:PORT …")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
