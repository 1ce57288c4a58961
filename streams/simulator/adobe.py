"""The sandbox's Adobe side beyond webhooks: IMS tokens, a journal per registration, the registration API.

Following Adobe's documented behaviour (reference, sections 3.5 and 3.7), on the simulator's clock:

- ``POST /ims/token/v3``: the client-credentials grant; a token lives ``TOKEN_LIFETIME`` (scaled).
- ``GET /events/organizations/{org}/integrations/{credential}/{registration}``: the journal. Every event
  offered to the registration's sender is journaled, delivered or not (also while disabled), and kept
  7 days (scaled). ``since`` (exclusive), ``limit``, ``seek=-PT…`` (not with since), ``latest=true``;
  200 with ``events``/``_page`` and ``Link rel=next``; 204 at the end with ``retry-after: 10`` and next
  and validate links; 410 for a position older than what is kept; pages capped at 1.5 MB.
- ``GET /events/{org}/{project}/{workspace}/registrations/{registration}``: ``webhook_status`` and
  ``enabled``, following the sender's Active / Unstable / Disabled state ("verified", true /
  "hook_unreachable", true / "hook_unreachable", false); ``PUT`` with
  ``{"enabled": true}`` re-enables it (as the Developer Console does).

Faults for drills: ``fail_next(n, status)`` answers the next n journal requests with ``status``;
``expire_tokens()`` makes every token issued so far invalid (a 401 until renewed).
"""

import base64
import bisect
import collections
import http.server
import json
import re
import secrets
import threading
import time
import urllib.parse

import orjson

DAY = 24 * 3600
RETENTION = 7 * DAY
TOKEN_LIFETIME = 86399
PAGE_BYTES = 1_500_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
DEFAULT_SECRET = "sandbox-secret"  # noqa: S105 (the sandbox's, documented)
DEFAULT_ORG = "sandbox@AdobeOrg"
_JOURNAL_PATH = re.compile(r"^/events/organizations/([^/]+)/integrations/([^/]+)/([^/?]+)$")
_REGISTRATION_PATH = re.compile(r"^/events/([^/]+)/([^/]+)/([^/]+)/registrations/([^/?]+)$")
_SEEK = re.compile(r"^-PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")


def position_of(seq):
    """An opaque position, as Adobe's are."""
    return base64.urlsafe_b64encode(f"sim:{seq}".encode()).decode().rstrip("=")


def seq_of(position):
    try:
        padded = position + "=" * (-len(position) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return int(text[4:]) if text.startswith("sim:") and text[4:].isdigit() else None


class Journal:
    """One registration's journal: (seq, journaled at, encoded event) kept RETENTION (scaled)."""

    def __init__(self, clock, time_scale=1.0):
        self.clock = clock
        self.retention = RETENTION / time_scale
        self.scale = time_scale
        self._entries = collections.deque()
        self._times = collections.deque()
        self._next_seq = 1
        self._lock = threading.Lock()

    def append(self, element):
        encoded = orjson.dumps(element)
        with self._lock:
            self._entries.append((self._next_seq, encoded))
            self._times.append(self.clock())
            self._next_seq += 1

    def __len__(self):
        return len(self._entries)

    def _trim(self):
        cutoff = self.clock() - self.retention
        while self._times and self._times[0] < cutoff:
            self._times.popleft()
            self._entries.popleft()

    def read(self, since=None, limit=DEFAULT_LIMIT, seek=None, latest=False):
        """(entries, expired): entries after ``since``; expired when its successor is no longer kept."""
        with self._lock:
            self._trim()
            oldest = self._entries[0][0] if self._entries else self._next_seq
            if since is not None:
                if since + 1 < oldest:
                    return [], True
                start = since + 1
            elif latest:
                start = self._next_seq
            elif seek is not None:
                index = bisect.bisect_left(list(self._times), self.clock() - seek / self.scale)
                start = self._entries[index][0] if index < len(self._entries) else self._next_seq
            else:
                start = oldest
            return self._page(start - oldest, limit), False

    def _page(self, index, limit):
        taken, size = [], 0
        for offset in range(index, min(len(self._entries), index + limit)):
            seq, encoded = self._entries[offset]
            if taken and size + len(encoded) > PAGE_BYTES:
                break  # Adobe caps a page at 1.5 MB: fewer than limit, the rest on the next page
            taken.append((seq, encoded))
            size += len(encoded)
        return taken

    def end(self):
        with self._lock:
            return self._next_seq - 1


class AdobeServer:
    """IMS, journals and the registration API on 127.0.0.1, for the registrations of one simulator run."""

    def __init__(self, clock, time_scale=1.0, port=0, client_secret=DEFAULT_SECRET, org=DEFAULT_ORG, page_delay=0.0):
        self.clock = clock
        self.page_delay = page_delay  # real seconds before each journal page (drills: a slow Adobe)
        self.time_scale = time_scale
        self.client_secret = client_secret
        self.org = org
        self.registrations = {}  # registration id -> (Journal, IoSender or None, client id)
        self.tokens = {}  # token -> (client id, expires at)
        self.requests = collections.Counter()  # kind -> count
        self._faults = collections.deque()
        self._lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True)

    def start(self):
        self._thread.start()
        return self

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- Registrations ---

    def add(self, registration_id, client_id, sender=None):
        journal = Journal(self.clock, self.time_scale)
        self.registrations[registration_id] = (journal, sender, client_id)
        return journal

    def journal_url(self, registration_id):
        client_id = self.registrations[registration_id][2]
        return f"{self.url}/events/organizations/{self.org}/integrations/{client_id}/{registration_id}"

    def registration_path(self, registration_id):
        return f"{self.org}/project/workspace/{registration_id}"

    def describe(self):
        return [
            {
                "registration_id": rid,
                "client_id": client_id,
                "journal_url": self.journal_url(rid),
                "registration_path": self.registration_path(rid),
                "journaled": len(journal),
                "state": sender.registration.state if sender else "active",
            }
            for rid, (journal, sender, client_id) in self.registrations.items()
        ]

    # --- Drills ---

    def fail_next(self, count, status=503, retry_after=None):
        with self._lock:
            self._faults.extend([(status, retry_after)] * count)

    def expire_tokens(self):
        with self._lock:
            self.tokens.clear()

    def _fault(self):
        with self._lock:
            return self._faults.popleft() if self._faults else None

    # --- HTTP ---

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if urllib.parse.urlsplit(self.path).path == "/ims/token/v3":
                    self._answer(*server.issue_token(body))
                else:
                    self._answer(404, {"error": "not_found"})

            def do_GET(self):
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                if match := _JOURNAL_PATH.match(parts.path):
                    self._answer(*server.read_journal(match[3], query, self.headers, parts.path))
                elif match := _REGISTRATION_PATH.match(parts.path):
                    self._answer(*server.registration(match[4], self.headers))
                else:
                    self._answer(404, {"error": "not_found"})

            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                match = _REGISTRATION_PATH.match(urllib.parse.urlsplit(self.path).path)
                self._answer(*server.update_registration(match[4], body, self.headers) if match else (404, {}))

            def _answer(self, status, document, headers=None):
                payload = b"" if status == 204 else document.body if isinstance(document, RawJson) else None
                payload = json.dumps(document).encode() if payload is None else payload
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler

    def issue_token(self, body):
        self.requests["token"] += 1
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        client_id = form.get("client_id", "")
        known = {client for _journal, _sender, client in self.registrations.values()}
        secret_ok = secrets.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode())
        if form.get("grant_type") != "client_credentials" or client_id not in known or not secret_ok:
            return 401, {"error": "invalid_client", "error_description": "invalid client_id or client_secret"}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = (client_id, self.clock() + TOKEN_LIFETIME / self.time_scale)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": TOKEN_LIFETIME}

    def _authorised(self, headers, client_id):
        bearer = (headers.get("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            issued = self.tokens.get(bearer)
        if issued is None or issued[1] <= self.clock():
            return 401
        if issued[0] != client_id or headers.get("x-api-key") != client_id:
            return 403
        return None

    def read_journal(self, registration_id, query, headers, path):
        self.requests["journal"] += 1
        if registration_id not in self.registrations:
            return 404, {"error": "not_found"}
        journal, _sender, client_id = self.registrations[registration_id]
        if refused := self._authorised(headers, client_id):
            return refused, {"error": "unauthorized" if refused == 401 else "forbidden"}
        if fault := self._fault():
            status, retry_after = fault
            return status, {"error": "simulated"}, {"retry-after": str(retry_after)} if retry_after else {}
        try:
            since, limit, seek, latest = _journal_query(query)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        if self.page_delay:
            time.sleep(self.page_delay)
        entries, expired = journal.read(since, limit, seek, latest)
        if expired:
            return 410, {"error": "position expired"}
        base = f"{self.url}{path}"
        if not entries:
            at = since if since is not None else journal.end()
            following = f"{base}?{urllib.parse.urlencode({'since': position_of(at), 'limit': limit})}"
            validate = f"{base}/validate?{urllib.parse.urlencode({'since': position_of(at)})}"
            links = f'<{following}>; rel="next", <{validate}>; rel="validate"'
            return 204, {}, {"retry-after": "10", "Link": links}
        last = position_of(entries[-1][0])
        events = b",".join(b'{"position":"%s","event":%s}' % (position_of(seq).encode(), e) for seq, e in entries)
        following = f"{base}?{urllib.parse.urlencode({'since': last, 'limit': limit})}"
        page = b'{"events":[%s],"_page":{"last":"%s","count":%d}}' % (events, last.encode(), len(entries))
        return 200, RawJson(page), {"Link": f'<{following}>; rel="next"'}

    def registration(self, registration_id, headers):
        self.requests["registration"] += 1
        if registration_id not in self.registrations:
            return 404, {"error": "not_found"}
        _journal, sender, client_id = self.registrations[registration_id]
        if refused := self._authorised(headers, client_id):
            return refused, {"error": "unauthorized"}
        state = sender.registration.state if sender else "active"
        return 200, {
            "registration_id": registration_id,
            "client_id": client_id,
            "delivery_type": "webhook_batch",
            # As Adobe's SDK tests show it (streams.registration_health names the source): lower case;
            # "hook_unreachable" once deliveries fail, and Disabled is ``enabled`` false.
            "webhook_status": "verified" if state == "active" else "hook_unreachable",
            "enabled": state != "disabled",
        }

    def update_registration(self, registration_id, body, headers):
        if registration_id not in self.registrations:
            return 404, {"error": "not_found"}
        _journal, sender, client_id = self.registrations[registration_id]
        if refused := self._authorised(headers, client_id):
            return refused, {"error": "unauthorized"}
        if sender and json.loads(body or b"{}").get("enabled") is True:
            sender.re_enable()
        return self.registration(registration_id, headers)


class RawJson:
    """A page written straight from the journaled bytes: no parse and re-encode of every event."""

    def __init__(self, body):
        self.body = body


def _journal_query(query):
    limit = int(query.get("limit", DEFAULT_LIMIT))
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT}")
    if "since" in query and "seek" in query:
        raise ValueError("seek cannot be combined with since")
    since = None
    if "since" in query:
        since = seq_of(query["since"])
        if since is None:
            raise ValueError("unknown position")
    seek = None
    if "seek" in query:
        match = _SEEK.match(query["seek"])
        if not match or not any(match.groups()):
            raise ValueError("seek is a negative ISO-8601 duration such as -PT2H")
        hours, minutes, seconds = (int(g or 0) for g in match.groups())
        seek = hours * 3600 + minutes * 60 + seconds
    return since, limit, seek, query.get("latest") == "true"
