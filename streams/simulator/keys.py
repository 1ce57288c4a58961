"""The simulator's own Adobe I/O signing keys, and the little HTTP server that publishes them.

Adobe signs every delivery twice (RSA, PKCS#1 v1.5, SHA-256, over the raw body) with two key pairs
whose public halves it serves at ``/prod/keys/pub-key-<uuid>.pem``. The simulator does the same
with two pairs of its own, kept under ``var/`` so that a restart keeps them (and Fluxo's cached
copies stay valid). Point Fluxo's ADOBE_IO_KEY_BASE_URL at the key server to have it verify them
for real: for development only, never in production.

Rotation replaces one pair at a time with a new pair under a new path (the old path is still
served for a while, as a key host would). Forged mode signs with a pair whose public half is never
served, while naming the real paths: Fluxo must refuse it.
"""

import base64
import collections
import contextlib
import http.server
import json
import os
import re
import threading
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_FILE = "adobe-io-keys.json"
PATH_RE = re.compile(r"\A/prod/keys/pub-key-[A-Za-z0-9-]+\.pem\Z")
RETIRED_SERVED = 8


class KeyPair:
    def __init__(self, private, path=None):
        self.private = private
        self.path = path or f"/prod/keys/pub-key-{uuid.uuid4()}.pem"
        self.public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def generate(cls):
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def sign(self, body):
        return base64.b64encode(self.private.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()

    def to_json(self):
        pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {"path": self.path, "private_pem": pem.decode()}

    @classmethod
    def from_json(cls, item):
        if not PATH_RE.match(item["path"]):
            raise ValueError("a key path of the wrong shape")
        private = serialization.load_pem_private_key(item["private_pem"].encode(), password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError("not an RSA key")
        return cls(private, item["path"])


class KeyRing:
    """Two signing pairs persisted in ``directory``; safe to read from any thread."""

    def __init__(self, directory):
        self.file = Path(directory) / KEY_FILE
        self._lock = threading.Lock()
        self._pairs = self._load() or self._create()
        self._retired = collections.deque(maxlen=RETIRED_SERVED)
        self._next_slot = 0
        self._forged = None
        self.rotations = 0

    def _load(self):
        try:
            items = json.loads(self.file.read_text())["keys"]
            pairs = [KeyPair.from_json(item) for item in items]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none yet, or unreadable: a new pair of pairs replaces it
        return pairs if len(pairs) == 2 else None

    def _create(self):
        pairs = [KeyPair.generate(), KeyPair.generate()]
        self._save(pairs)
        return pairs

    def _save(self, pairs):
        self.file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.file.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump({"keys": [pair.to_json() for pair in pairs]}, out)
        os.replace(temporary, self.file)

    @property
    def paths(self):
        with self._lock:
            return [pair.path for pair in self._pairs]

    def signing_pairs(self, forged=False):
        """(pair one, pair two) to sign with, and the paths to name: forged pairs name the real paths."""
        with self._lock:
            pairs = list(self._pairs)
            if forged and self._forged is None:
                self._forged = [KeyPair.generate(), KeyPair.generate()]
            signers = self._forged if forged else pairs
        return [(signer, pair.path) for signer, pair in zip(signers, pairs, strict=True)]

    def rotate(self):
        """Replace one pair (alternately the first and the second) with a new pair at a new path."""
        new = KeyPair.generate()
        with self._lock:
            old = self._pairs[self._next_slot]
            self._retired.append(old)
            self._pairs[self._next_slot] = new
            self._next_slot = 1 - self._next_slot
            self._save(self._pairs)
            self.rotations += 1
        return new.path

    def public_pem(self, path):
        with self._lock:
            for pair in (*self._pairs, *self._retired):
                if pair.path == path:
                    return pair.public_pem
        return None


def signature_headers(body, keyring, forged=False):
    """The four signature headers of one delivery of ``body``."""
    (one, path_one), (two, path_two) = keyring.signing_pairs(forged)
    return {
        "x-adobe-digital-signature-1": one.sign(body),
        "x-adobe-digital-signature-2": two.sign(body),
        "x-adobe-public-key1-path": path_one,
        "x-adobe-public-key2-path": path_two,
    }


class KeyServer:
    """Serves the key ring's public keys at their paths on 127.0.0.1 (404 for anything else)."""

    def __init__(self, keyring, port=0):
        self.keyring = keyring
        self.fetched = collections.Counter()  # path -> times served
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True)

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                pem = server.keyring.public_pem(self.path) if PATH_RE.match(self.path) else None
                self.send_response(200 if pem else 404)
                self.send_header("Content-Type", "application/x-pem-file" if pem else "text/plain")
                self.send_header("Content-Length", str(len(pem or b"")))
                self.end_headers()
                if pem:
                    server.fetched[self.path] += 1
                    self.wfile.write(pem)

            def log_message(self, *args):
                pass

        return Handler

    def start(self):
        self._thread.start()
        return self

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
