"""`manage.py simulate` and `simulate_demo` as commands: arguments, exit code 2, the keys they keep."""

import http.client
import io
import json
import os
import socket
import stat
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from streams.management.commands import simulate_demo
from streams.simulator.keys import KeyRing, KeyServer
from tests.processes import ROOT, bare_env, free_port, stop_embedded_redis


@pytest.fixture
def source_json(tmp_path):
    document = {
        "id": 1,
        "name": "Acme",
        "munchkin_id": "123-ABC-456",
        "adobe_client_id": "",
        "api_token": "t0k3n",
        "endpoints": {"adobe_io": "/ingest/k/adobe-io/", "legacy_push": "/ingest/k/marketo-push/"},
    }
    path = tmp_path / "source.json"
    path.write_text(json.dumps(document))
    return str(path)


def refused(*args):
    with pytest.raises(CommandError) as refusal:
        call_command("simulate", *args, "--quiet")
    assert refusal.value.returncode == 2
    return str(refusal.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--io-url", "http://127.0.0.1:9/x", "--rate", "0"], "--rate must be more than 0"),
        (["--io-url", "http://127.0.0.1:9/x", "--count", "0"], "--count must be at least 1"),
        (["--io-url", "http://127.0.0.1:9/x", "--time-scale", "-60"], "--time-scale must be more than 0"),
        (["--io-url", "http://127.0.0.1:9/x", "--timeout", "0"], "--timeout must be more than 0"),
        (["--io-url", "http://127.0.0.1:9/x", "--queue-size", "0"], "--queue-size must be at least 1"),
        (["--io-url", "http://127.0.0.1:9/x", "--drain", "-1"], "--drain must be 0 or more"),
        (["--io-url", "http://127.0.0.1:9/x", "--reuse-ids"], "give the seed"),
        (["--io-url", "http://127.0.0.1:9/x", "--key-port", "70000"], "--key-port"),
        ([], "nowhere to send"),
        (["--io-url", "/ingest/k/adobe-io/"], "give --base-url"),
        (["--io-url", "ftp://127.0.0.1/x"], "http(s) URL"),
        (["--io-url", "http://127.0.0.1:9/x", "--munchkin-id", "acme"], "not a Munchkin ID"),
        (["--legacy-url", "http://127.0.0.1:9/x", "--protocol", "legacy"], "needs --api-token"),
        (["--io-url", "http://127.0.0.1:9/x", "--protocol", "both", "--api-token", "t"], "legacy push URL"),
        (["--legacy-url", "http://127.0.0.1:9/x", "--api-token", "t"], "Adobe I/O URL"),
        (["--io-url", "http://127.0.0.1:9/x", "--streams", "activity,gossip"], "--streams"),
        (["--legacy-url", "http://127.0.0.1:9/x", "--api-token", "t", "--protocol", "legacy", "--streams", "audit"],
         "activities only"),
        (["--legacy-url", "http://127.0.0.1:9/x", "--protocol", "legacy", "--client-id", "c"], "together"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_with_code_2_and_say_why(args, message):
    assert message in refused(*args)


def test_a_source_document_must_be_readable_and_of_add_sources_shape(tmp_path, source_json):
    assert "No such file" in refused("--base-url", "http://127.0.0.1:9", "--source-json", str(tmp_path / "none"))
    (tmp_path / "odd.json").write_text('{"name": "Acme"}')
    assert "add_source --json" in refused(
        "--base-url", "http://127.0.0.1:9", "--source-json", str(tmp_path / "odd.json")
    )
    assert "give --base-url" in refused("--source-json", source_json)
    twice = ("--source-json", source_json, "--source-json", source_json)
    assert "same Munchkin ID" in refused("--base-url", "http://127.0.0.1:9", *twice)


def test_a_taken_key_port_is_a_bad_argument(source_json):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        message = refused("--base-url", "http://127.0.0.1:9", "--source-json", source_json, "--key-port", port)
    assert "cannot listen" in message


def test_from_the_command_line_a_bad_argument_exits_2(tmp_path):
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "simulate", "--io-url", "http://127.0.0.1:9/x", "--rate", "-1"],
            cwd=ROOT,
            env=bare_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_embedded_redis(tmp_path)  # the command's start-up may have started one in tmp_path
    assert result.returncode == 2
    assert "--rate must be more than 0" in result.stderr


def test_nothing_answering_leaves_everything_unfinished_and_exits_1(source_json, tmp_path):
    dead = free_port()  # nothing listens there
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command(
            "simulate",
            "--base-url", f"http://127.0.0.1:{dead}",
            "--source-json", source_json,
            "--key-port", "0",
            "--protocol", "legacy",
            "--duration", "0.5",
            "--drain", "0.2",
            "--rate", "20",
            "--time-scale", "3600",
            "--json",
            "--quiet",
            stdout=out,
        )  # fmt: skip
    assert exit_.value.code == 1
    summary = json.loads(out.getvalue())
    (legacy,) = summary["streams"]
    assert legacy["statuses"] == {"602": legacy["requests"]}  # no answer: a network error each time
    assert summary["deliveries"]["acknowledged"] == 0 and summary["exit_code"] == 1


# --- The simulator's signing keys ---------------------------------------------------------------------


def test_the_keys_are_kept_under_var_across_restarts_and_readable_only_by_their_owner(tmp_path):
    first = KeyRing(tmp_path)
    assert KeyRing(tmp_path).paths == first.paths
    assert stat.S_IMODE(os.stat(first.file).st_mode) == 0o600
    rotated = first.rotate()
    assert rotated in KeyRing(tmp_path).paths
    first.file.write_text("not json")
    assert KeyRing(tmp_path).paths != first.paths  # an unreadable file is replaced, not trusted


def test_the_key_server_serves_the_public_keys_at_the_documented_paths_only(tmp_path):
    keyring = KeyRing(tmp_path)
    server = KeyServer(keyring).start()
    old = keyring.paths[0]
    keyring.rotate()
    try:
        for path in [*keyring.paths, old]:  # a retired key is still served for a while
            status, body = get(server, path)
            assert status == 200 and body.startswith(b"-----BEGIN PUBLIC KEY-----")
            assert b"PRIVATE" not in body
        assert get(server, "/prod/keys/pub-key-unknown.pem")[0] == 404
        assert get(server, "/prod/keys/../../adobe-io-keys.json")[0] == 404
        assert get(server, "/")[0] == 404
    finally:
        server.close()


def get(server, path):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read()


def test_forged_signatures_name_the_served_paths_but_use_other_keys(tmp_path):
    keyring = KeyRing(tmp_path)
    forged = keyring.signing_pairs(forged=True)
    real = keyring.signing_pairs()
    assert [path for _pair, path in forged] == keyring.paths
    assert {pair.public_pem for pair, _path in forged}.isdisjoint({pair.public_pem for pair, _path in real})


# --- `make run`'s simulator ------------------------------------------------------------------------------


@pytest.fixture
def no_idling():
    simulate_demo.STOP_IDLING.set()
    yield
    simulate_demo.STOP_IDLING.clear()


def test_the_demo_simulator_is_off_with_fluxo_simulate_0(monkeypatch, no_idling):
    monkeypatch.setenv("FLUXO_SIMULATE", "0")
    out = io.StringIO()
    call_command("simulate_demo", stdout=out)
    assert "FLUXO_SIMULATE=0" in out.getvalue()


def test_the_demo_simulator_waits_for_the_web_process_and_gives_up_quietly(settings, tmp_path, no_idling):
    settings.VAR_DIR = tmp_path
    out = io.StringIO()
    call_command("simulate_demo", stdout=out)
    assert "bootstrap_demo" in out.getvalue()
    (tmp_path / "demo-source.json").write_text(
        json.dumps({"munchkin_id": "000-DEM-000", "endpoints": {"legacy_push": "/ingest/k/marketo-push/"}})
    )
    call_command("simulate_demo", "--base-url", f"http://127.0.0.1:{free_port()}", "--wait", "0.5", stdout=out)
    assert "nothing answered" in out.getvalue()
