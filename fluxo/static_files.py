"""Static files compressed and cached for good, with no ``collectstatic`` step.

WhiteNoise serves the apps' static folders straight from the finders (WHITENOISE_USE_FINDERS), which
gives neither versioned names nor compressed copies: those come from ``collectstatic`` with a manifest
storage, a step the bare web process promises not to need. So, once per process:

- every file found gets a versioned name with a hash of its content, ``vendor/plotly.min.<hash>.js``
  (Django's manifest scheme), which ``{% static %}`` returns (``VersionedStorage``) and WhiteNoise
  serves with ``Cache-Control: max-age=<10 years>, public, immutable``; the plain name is still served,
  with the short WHITENOISE_MAX_AGE;
- a gzip copy of each compressible file is written once under ``FLUXO_VAR_DIR/static-gz/`` (settings.VAR_DIR), named by
  the versioned name (so a changed file never meets a stale copy; processes sharing the folder write
  the same bytes and rename them into place), and sent to clients that accept gzip. Copies of versions
  no current file has (and scratch files a killed process left) are deleted from that folder at start-up.

Brotli would need a library this project does not pin; gzip only. Under DEBUG, as Django's manifest
storage does, pages use the plain names and WhiteNoise re-reads the folders on each request.
"""

import gzip
import hashlib
import logging
import os
import threading
from pathlib import Path
from wsgiref.headers import Headers

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import StaticFilesStorage
from whitenoise.compress import Compressor
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.responders import StaticFile

log = logging.getLogger(__name__)

HASH_CHARS = 12
GZIP_DIR_NAME = "static-gz"
_MIN_GAIN = 0.95  # a copy saving less than 5 % is not worth a second file (as WhiteNoise decides)

_hashes = {}  # source path -> ((mtime_ns, size), hash): a file is read once per process unless it changes
_hashes_lock = threading.Lock()
_compressor = Compressor(use_gzip=True, use_brotli=False, quiet=True)


def content_hash(path):
    """The first HASH_CHARS of the file's MD5 (Django's manifest storage uses the same)."""
    stat = os.stat(path)
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _hashes_lock:
        known = _hashes.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    found = digest.hexdigest()[:HASH_CHARS]
    with _hashes_lock:
        _hashes[path] = (stamp, found)
    return found


def versioned(name, file_hash):
    """``css/fluxo.css`` -> ``css/fluxo.<hash>.css``."""
    root, ext = os.path.splitext(name)
    return f"{root}.{file_hash}{ext}"


def versioned_name(name):
    """The versioned name of a static file, or None when no finder has it."""
    path = finders.find(name)
    return versioned(name, content_hash(path)) if path else None


class VersionedStorage(StaticFilesStorage):
    """``{% static %}`` gives versioned URLs of the files the finders have (plain ones under DEBUG)."""

    def url(self, name):
        if name and not settings.DEBUG:
            name = versioned_name(name) or name
        return super().url(name)


def gzip_copy(path, name, folder):
    """The path of ``path``'s gzip copy in ``folder`` (``name``: its versioned name), written if missing;
    None when compressing does not pay or the folder cannot be written."""
    target = folder / f"{name}.gz"
    if target.exists():
        return target
    if not _compressor.should_compress(name):
        return None
    data = Path(path).read_bytes()
    compressed = gzip.compress(data, compresslevel=9, mtime=0)
    if len(compressed) > len(data) * _MIN_GAIN:
        return None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        scratch.write_bytes(compressed)
        os.replace(scratch, target)  # whole or not at all, whichever process gets there first
    except OSError as exc:
        log.warning("cannot keep a compressed copy of %s (%s); it is served uncompressed", name, exc)
        return None
    return target


def prune_copies(folder, current):
    """Delete the files under ``folder`` that are not in ``current`` (the paths of the copies in use):
    superseded versions and a killed process's scratch files. Nothing outside ``folder`` is touched, and
    a file another process is writing has a name of its own (its scratch name), renamed in only whole.
    The number deleted."""
    folder = Path(folder)
    keep = {Path(p) for p in current}
    deleted = 0
    for path in folder.rglob("*") if folder.is_dir() else ():
        if path.is_symlink() or not path.is_file() or path in keep or _in_use_scratch(path):
            continue
        try:
            path.unlink()
            deleted += 1
        except OSError as exc:
            log.warning("cannot delete the superseded copy %s (%s)", path.relative_to(folder), exc)
    return deleted


def _in_use_scratch(path):
    """A scratch file (``.<name>.<pid>.<thread>``) whose process still runs: it is being written."""
    parts = path.name.split(".")
    if not path.name.startswith(".") or len(parts) < 4 or not parts[-2].isdigit():
        return False
    try:
        os.kill(int(parts[-2]), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class CopyOrPlainFile(StaticFile):
    """WhiteNoise's StaticFile, sending the plain file when its compressed copy has gone (deleted as
    superseded by a newer process sharing the folder)."""

    def get_path_and_headers(self, request_headers):
        path, headers = super().get_path_and_headers(request_headers)
        if os.path.exists(path):
            return path, headers
        plain = [(p, h) for pattern, p, h in self.alternatives if not pattern.pattern]
        return plain[0] if plain else (path, headers)


class Middleware(WhiteNoiseMiddleware):
    """WhiteNoise serving each finder's file under its plain and its versioned name, gzip included."""

    def add_files_from_finders(self):
        self.immutable_urls = set()
        self.gzip_copies = {}  # url -> path of its gzip copy
        folder = Path(settings.VAR_DIR) / GZIP_DIR_NAME
        for url, path in self._found_files().items():
            name = url[len(self.static_prefix) :]
            file_hash = content_hash(path)
            versioned_url = self.static_prefix + versioned(name, file_hash)
            self.immutable_urls.add(versioned_url)
            compressed = gzip_copy(path, versioned(name, file_hash), folder)
            for each in (url, versioned_url):
                if compressed:
                    self.gzip_copies[each] = str(compressed)
                self.files[each] = self.get_static_file(path, each)
        # A process still running an older checkout on this folder (a rolling restart) loses its copies:
        # it then sends those files uncompressed (CopyOrPlainFile), never an error.
        prune_copies(folder, self.gzip_copies.values())

    def _found_files(self):
        """{url: path}, the first finder's file for each name (as WhiteNoise and Django pick it)."""
        found = {}
        for finder in finders.get_finders():
            for relative, storage in finder.list(None):
                prefix = (getattr(storage, "prefix", None) or "").strip("/")
                url = self.static_prefix + (f"{prefix}/" if prefix else "") + relative.replace("\\", "/")
                found.setdefault(url, storage.path(relative))
        return found

    def get_static_file(self, path, url, stat_cache=None):
        """WhiteNoise's, with the gzip copy from VAR_DIR (its own looks beside the file)."""
        headers = Headers([])
        self.add_mime_headers(headers, path, url)
        self.add_cache_headers(headers, path, url)
        if self.allow_all_origins:
            headers["Access-Control-Allow-Origin"] = "*"
        copy = getattr(self, "gzip_copies", {}).get(url)
        encodings = {"gzip": copy} if copy else {"gzip": path + ".gz", "br": path + ".br"}
        return CopyOrPlainFile(path, headers.items(), stat_cache=stat_cache, encodings=encodings)

    def immutable_file_test(self, path, url):
        return url in getattr(self, "immutable_urls", ())
