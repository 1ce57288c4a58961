"""The scale-out drill, short version (the long one: bench/scaleout.py).

Fluxo runs as several hosts on this machine (tests/cluster.py): two web hosts behind nginx (the
proxy settings of deploy/nginx), two workers, one beat, PostgreSQL and Redis on the database host.
The sandbox sends all three streams through the proxy at a steady rate; meanwhile one web host is
killed and restarted and one worker is killed. Afterwards every acknowledged event is stored exactly
once, every alert that fired was delivered, and the live sockets of each web host received frames.
A second beat waiting on the single-beat lock takes over from a killed first one (once that lock
exists: fluxo/beat.py).
"""

import json
import os
import time
from urllib.parse import urlsplit

import pytest

from tests import cluster, nginx
from tests.alerts_receivers import Receiver
from tests.processes import free_port, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"),
        reason="the scale-out drill needs PostgreSQL and a Redis server (DATABASE_URL=postgres://…, REDIS_URL)",
    ),
    pytest.mark.skipif(nginx.NGINX is None, reason="nginx is not installed (apt-get install nginx)"),
]

WEB1, WEB2 = cluster.WEB_HOSTS
RATE = 80  # events a second, all three streams
SENDING = 50  # seconds
KILL_WEB_AT, RESTART_WEB_AT, KILL_WORKER_AT = 8, 16, 22
# Its own Redis database: another suite's workers on the machine's Redis must not take the drill's tasks.
REDIS_DB = 11


def drill_redis_url():
    parts = urlsplit(os.environ["REDIS_URL"])
    return parts._replace(path=f"/{REDIS_DB}").geturl()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    hook = Receiver()
    system = cluster.Cluster(
        tmp_path_factory.mktemp("scaleout"),
        cluster.pg_server_from(os.environ["DATABASE_URL"]),
        drill_redis_url(),
        key_port=free_port(),
        hook_url=f"{hook.url}/hook",
    ).create()
    try:
        for host in cluster.WEB_HOSTS:
            system.start_web(host)
        system.base = system.start_proxy(cluster.WEB_HOSTS)
        system.start_worker("worker-1")
        system.start_worker("worker-2")
        system.start_beat("beat-1")
        yield system, hook
    finally:
        system.stop_all()
        system.drop()
        hook.close()


def kill_the_worker_when_no_delivery_is_claimed(system, worker):
    """A delivery the killed worker had claimed waits 3 minutes for the sweeper: more than this drill
    has (bench/scaleout.py kills regardless, and waits for it). An evaluation cut short is caught up."""
    wait_for(lambda: system.claimed_deliveries() == 0, timeout=30, interval=0.02)
    worker.kill()


def test_killing_a_web_host_and_a_worker_while_the_sandbox_sends_loses_and_doubles_nothing(hosts, tmp_path):
    system, hook = hosts
    web1, web2, proxy = (WEB1, system.web_port), (WEB2, system.web_port), (cluster.PROXY_HOST, system.proxy_port)
    browsers = cluster.Browsers(system.session, [web1, web2, proxy], tmp_path).start()
    spec = cluster.sandbox_spec(system.base, system.var / "source.json", system.key_port, RATE, SENDING)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "sandbox.json"
    sandbox = cluster.Process(
        "sandbox", cluster.sandbox_command(tmp_path / "spec.json", out), system.env(tmp_path), tmp_path
    )
    try:
        started = time.monotonic()
        sandbox.start()

        def at(moment):
            time.sleep(max(0.0, started + moment - time.monotonic()))

        at(KILL_WEB_AT)
        system.webs[WEB1].kill()
        at(RESTART_WEB_AT)
        system.start_web(WEB1)
        restarted = time.time()
        at(KILL_WORKER_AT)
        kill_the_worker_when_no_delivery_is_claimed(system, system.workers[0])
        sandbox.popen.wait(timeout=SENDING + 120)
        assert sandbox.popen.returncode == 0, sandbox.output()
        report = json.loads(out.read_text())
        summary, acknowledged = report["summary"], report["acknowledged"]

        # Every event the senders saw acknowledged is stored exactly once, and nothing was dropped.
        assert summary["deliveries"]["dropped"] == 0 and summary["deliveries"]["unfinished"] == 0, summary
        assert {s["stream"] for s in summary["streams"] if s["acknowledged"]} == {"activity", "audit", "notification"}
        assert len(acknowledged["io"]) + len(acknowledged["legacy"]) == summary["deliveries"]["acknowledged"]
        stored = system.stored_keys()
        missing, doubled = cluster.stored_exactly_once(acknowledged, stored)
        assert missing == set() and doubled == set()
        assert len(stored) == summary["deliveries"]["acknowledged"]
        # nginx sent traffic to the restarted host again.
        assert "POST /ingest/" in system.webs[WEB1].output().rsplit("fluxo.serve:", 1)[1]

        # Every alert that fired reached the webhook at least once (after the worker's death too).
        def every_fired_alert_delivered():
            fired = system.fired_alerts()
            delivered = {request.json()["alert_id"] for request in hook.requests}
            return fired and fired <= delivered and fired

        fired = wait_for(every_fired_alert_delivered, timeout=60)
        assert len(fired) >= 1  # event alerts of one rule and group collapse into one open alert

        # The live sockets of both web hosts got frames, and the restarted host's again after it came back.
        assert browsers.frames(web1, after=restarted) and browsers.connects(web1) >= 2
        assert browsers.frames(web2)
        assert browsers.frames(proxy)  # through nginx's upgrade
    finally:
        browsers.stop()
        sandbox.stop()


@pytest.mark.skipif(not cluster.beat_lock_available(), reason="no single-beat lock yet (fluxo/beat.py, issue 11)")
def test_a_second_beat_waiting_on_the_lock_takes_over_when_the_first_is_killed(hosts):
    system, _hook = hosts
    first = system.beats[0]
    wait_for(lambda: "Sending due task" in first.output(), timeout=60)
    second = system.start_beat("beat-2")
    time.sleep(12)  # more than two 5-second ticks: a second beat that did not wait would have sent them
    assert "Sending due task" not in second.output(), second.output()
    first.kill()
    assert wait_for(lambda: "Sending due task" in second.output(), timeout=90), second.output()
