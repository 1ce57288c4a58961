"""Real local servers standing in for what alert deliveries reach: an SMTP server and an HTTP endpoint that
plays Slack (incoming webhooks and the Web API) and generic webhooks. Only what lies beyond this machine
is replaced; the code under test talks to these over real sockets."""

import http.server
import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from slack_sdk.models.blocks import Block

from tests.processes import free_port


@dataclass
class Request:
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: object = "ok"  # a str is sent as text, anything else as JSON
    headers: dict = field(default_factory=dict)


class Receiver:
    """An HTTP server that records every POST and answers from a queue (then 200 "ok").

    ``/api/chat.postMessage`` and ``/api/chat.update`` answer as Slack's Web API does by default.
    ``hold()`` keeps requests open until ``release()``: a send caught in flight.
    """

    def __init__(self):
        self.requests = []
        self.answers = []
        self.arrived = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._ts = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(Request(self.path, dict(self.headers), body))
                    answer = receiver.answers.pop(0) if receiver.answers else receiver._default(self.path)
                receiver.arrived.set()
                receiver._open.wait(timeout=120)
                payload = answer.body if isinstance(answer.body, bytes | str) else json.dumps(answer.body)
                payload = payload.encode() if isinstance(payload, str) else payload
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the sender died while we held its request
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def _default(self, path):
        if path.endswith("/chat.postMessage"):
            self._ts += 1
            return Answer(200, {"ok": True, "channel": "C0FLUXO", "ts": f"1700000000.{self._ts:06d}"})
        if path.endswith("/chat.update"):
            return Answer(200, {"ok": True, "channel": "C0FLUXO"})
        return Answer()

    def answer(self, *answers):
        self.answers.extend(answers)

    def hold(self):
        self._open.clear()

    def release(self):
        self._open.set()

    def close(self):
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Mailbox:
    """aiosmtpd handler: keeps every message; refuses recipients by the local part of their address."""

    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("nobody"):
            return "550 5.1.1 no such user here"
        if local.startswith("busy"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self):
        self.mailbox = _Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def messages(self):
        """(from, to, email.message.EmailMessage) of every message received."""
        return [(f, t, message_from_bytes(raw, policy=policy.default)) for f, t, raw in self.mailbox.messages]

    def close(self):
        self.controller.stop()


def check_block_kit(payload):
    """Every block parses with slack_sdk's models, round-trips unchanged and passes their limit checks."""
    assert isinstance(payload["text"], str) and payload["text"]
    assert 0 < len(payload["blocks"]) <= 50
    for block in payload["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
        assert parsed.to_dict() == block
    return payload["blocks"]


# --- Fixture bodies (each test module wraps them in a fixture of its own) --------------------------------


def receiving(settings):
    """The HTTP stand-in, with Fluxo pointed at it: private URLs allowed, the Slack API base, a public URL."""
    server = Receiver()
    settings.FLUXO_ALLOW_PRIVATE_URLS = True
    settings.FLUXO_SLACK_API_URL = server.url + "/api"
    settings.FLUXO_PUBLIC_URL = "https://fluxo.example.com"
    yield server
    server.close()


def smtp_serving(settings):
    """A real SMTP server on a free port, and Django's SMTP backend pointed at it."""
    server = SmtpServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.DEFAULT_FROM_EMAIL = "fluxo@example.com"
    yield server
    server.close()
