"""Debian's nginx run as a user would, from the site in deploy/nginx: for the kit's test and the drill.

nginx runs in the foreground (``daemon off``) with every path it writes (pid, logs, temp bodies)
under a directory of the caller's, so it needs nothing of the machine's nginx set-up.
"""

import contextlib
import datetime
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx" / "fluxo.conf"
PROXY_SNIPPET = ROOT / "deploy" / "nginx" / "fluxo-proxy.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

MAIN = """
worker_processes 1;
{user}
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}
}}
"""


def main_conf(directory, http_block):
    """An nginx.conf whose http {} holds ``http_block``, writing only under ``directory``; its path."""
    directory = Path(directory)
    # As root, nginx's workers would run as nobody and could not read the caller's files.
    user = "user root;" if os.geteuid() == 0 else ""
    path = directory / "nginx.conf"
    path.write_text(MAIN.format(user=user, dir=directory, http=http_block))
    return path


def check(conf):
    """``nginx -t`` on ``conf``: (exit code, its output)."""
    result = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(conf.parent), "-e", str(conf.parent / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, result.stdout + result.stderr


@contextlib.contextmanager
def running(conf, ports):
    """nginx in the foreground on ``conf`` until the block ends; waits until ``ports`` ((host, port)) listen."""
    code, output = check(conf)
    if code:
        raise AssertionError(f"nginx -t failed:\n{output}")
    log = open(conf.parent / "nginx.out", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(conf.parent), "-e", str(conf.parent / "error.log"), "-g", "daemon off;"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for address in ports:
            _wait_listening(address, process, conf.parent)
        yield process
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: workers finish their requests
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_listening(address, process, directory):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited with {process.returncode}:\n{(directory / 'error.log').read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"nginx did not listen on {address}")


def self_signed(directory, name="fluxo.example.com"):
    """A self-signed certificate and key for ``name`` in ``directory``: (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(directory) / "fullchain.pem", Path(directory) / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def site(directory, *, upstreams, http_port, https_port, host="127.0.0.1"):
    """deploy/nginx/fluxo.conf as an operator would edit it: certificates, snippet, upstreams, ports."""
    cert, key = self_signed(directory)
    text = SITE.read_text()
    replacements = {
        "/etc/ssl/fluxo/fullchain.pem": str(cert),
        "/etc/ssl/fluxo/privkey.pem": str(key),
        "/etc/nginx/snippets/fluxo-proxy.conf": str(PROXY_SNIPPET),
        "    listen [::]:80;\n": "",
        "    listen [::]:443 ssl http2;\n": "",
        "listen 80;": f"listen {host}:{http_port};",
        "listen 443 ssl http2;": f"listen {host}:{https_port} ssl http2;",
        "    server 127.0.0.1:8000 max_fails=1 fail_timeout=5s;\n": "".join(
            f"    server {upstream} max_fails=1 fail_timeout=5s;\n" for upstream in upstreams
        ),
    }
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"deploy/nginx/fluxo.conf no longer has {old!r}")
        text = text.replace(old, new)
    return text
