"""A real Prometheus (Debian's package) scrapes two real web processes; the shipped rules and dashboard check out."""

import contextlib
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import orjson
import pytest

from tests.ingest import activity, http_post
from tests.processes import ROOT, bare_env, free_port, http, manage, serve, stop_embedded_redis, wait_for

pytestmark = pytest.mark.slow

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RULES = ROOT / "deploy" / "prometheus" / "fluxo-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "fluxo-dashboard.json"
TOKEN = "scrape-token-0123456789abcdef"
needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool (Debian's prometheus) is missing")
needs_prometheus = pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="Debian's prometheus is not installed")


@pytest.fixture(scope="module")
def fluxo(tmp_path_factory):
    """Two web processes (fluxo.serve) behind one port, with a metrics token, after some traffic.

    Yields (base URL, events accepted, the /metrics text)."""
    var = tmp_path_factory.mktemp("fluxo")
    env = bare_env(var, FLUXO_METRICS_TOKEN=TOKEN)
    manage(env, "migrate", "--noinput")
    source = json.loads(manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    with serve(env, workers=2) as base:
        accepted = 0
        for size in (1, 2, 3, 4, 5, 6):
            batch = [activity(1) for _ in range(size)]
            assert http_post(base, source, batch)[0] == 200
            accepted += size
        assert http_post(base, source, batch)[0] == 200  # the last batch again: duplicates
        assert http_post(base, source, batch, token="wrong")[0] == 401
        status, _, text = http("GET", base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        yield base, accepted, text.decode()
    stop_embedded_redis(var)


@contextlib.contextmanager
def prometheus(tmp_path, target, token):
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: fluxo
    authorization:
      credentials: "{token}"
    static_configs:
      - targets: ["{target}"]
"""
    )
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def api(base, path, **params):
    with contextlib.suppress(OSError):
        status, _, body = http("GET", f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=5)
        if status == 200:
            return orjson.loads(body)["data"]
    return None


@needs_prometheus
def test_a_real_prometheus_scrapes_fluxo_and_sums_what_both_processes_accepted(fluxo, tmp_path):
    base, accepted, _text = fluxo
    with prometheus(tmp_path, base.removeprefix("http://"), TOKEN) as server:

        def target_up():
            data = api(server, "targets")
            return data and [t for t in data["activeTargets"] if t["health"] == "up"]

        wait_for(target_up, timeout=90, interval=0.5)

        def summed():
            data = api(server, "query", query="sum(fluxo_events_accepted_total)")
            return data and data["result"] and float(data["result"][0]["value"][1])

        assert wait_for(summed, timeout=60, interval=0.5) == accepted
        groups = wait_for(lambda: (api(server, "rules") or {}).get("groups"), timeout=30)
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) >= 10
        assert all(rule["health"] != "err" for rule in rules), [r for r in rules if r["health"] == "err"]


@needs_prometheus
def test_a_scrape_without_the_token_is_refused_and_the_target_is_down(fluxo, tmp_path):
    base, _accepted, _text = fluxo
    with prometheus(tmp_path, base.removeprefix("http://"), "not-the-token-0123456789") as server:

        def target_down():
            data = api(server, "targets")
            return data and [t for t in data["activeTargets"] if t["health"] == "down"]

        target = wait_for(target_down, timeout=90, interval=0.5)[0]
        assert "401" in target["lastError"]


@needs_promtool
def test_promtool_passes_our_metrics_text(fluxo):
    _base, _accepted, text = fluxo
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_passes_the_shipped_alerting_rules():
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_expression_of_the_grafana_dashboard_names_metrics_that_fluxo_exports(fluxo):
    _base, _accepted, text = fluxo
    exported = set(re.findall(r"^# TYPE (fluxo_\w+) ", text, re.MULTILINE))
    # A counter's samples end in _total, a histogram's in _bucket/_sum/_count.
    names = (
        exported | {f"{n}_total" for n in exported} | {f"{n}_{s}" for n in exported for s in ("bucket", "sum", "count")}
    )
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["panels"]
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 15
    for expression in expressions:
        used = set(re.findall(r"\bfluxo_\w+", expression))
        assert used, expression
        assert used <= names, f"{expression}: {used - names} not in /metrics"
    # And every rule too.
    for expression in re.findall(r"expr: \|?\s*(.+?)(?=\n\s+for:)", RULES.read_text(), re.DOTALL):
        assert set(re.findall(r"\bfluxo_\w+", expression)) <= names, expression
