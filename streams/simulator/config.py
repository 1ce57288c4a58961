"""The simulator's configuration, checked before anything is sent: a mistake is exit code 2.

Targets come from ``add_source --json`` documents (``--source-json``, repeatable for several
Munchkin IDs; their endpoint paths are joined to ``--base-url``), or from ``--io-url``,
``--legacy-url`` and the credentials given one by one.
"""

import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from streams.simulator.generators import ACTIVITY, STREAMS

MUNCHKIN_RE = re.compile(r"\A[0-9]{3}-[A-Z]{3}-[0-9]{3}\Z")
DEFAULT_MUNCHKIN = "000-SIM-000"
DEFAULT_CLIENT_ID = "fluxo-sandbox"
DEFAULT_KEY_PORT = 8765
DEFAULT_ADOBE_PORT = 8766


class ConfigError(ValueError):
    """A bad argument: exit code 2."""


@dataclass(frozen=True)
class OAuth:
    token_url: str
    client_id: str
    client_secret: str


@dataclass
class Target:
    """One Marketo instance and where its streams go."""

    munchkin_id: str
    client_id: str = DEFAULT_CLIENT_ID
    io_url: str = ""
    legacy_url: str = ""
    api_token: str = ""
    oauth: OAuth | None = None


@dataclass
class Config:
    targets: list
    protocol: str = "io"  # io, legacy or both
    overlap: bool = True  # with both: activities on both protocols (a migration overlap)
    streams: tuple = STREAMS
    rate: float = 10.0  # events per second, per Munchkin ID
    count: int | None = None  # events per Munchkin ID
    duration: float | None = None  # seconds of generation
    seed: int = field(default_factory=lambda: secrets.randbelow(2**31))
    reuse_ids: bool = False
    time_scale: float = 1.0
    timeout: float | None = None  # None: 10 s (I/O) and 20 s (legacy)
    key_port: int = DEFAULT_KEY_PORT
    adobe_port: int = 0  # IMS, journals, registration API (streams.simulator.adobe); 0: any free port
    adobe_client_secret: str = "sandbox-secret"  # noqa: S105 (the sandbox's, documented)
    outage: tuple | None = None  # (from, until) seconds after the start: I/O deliveries fail, Fluxo "down"
    key_dir: Path = Path("var/simulator")
    forge: bool = False
    rotate_keys_every: float | None = None
    queue_size: int = 100_000
    single: bool = False
    bursts: bool = False
    daily_curve: bool = False
    io_concurrency: int = 4
    drain: float = 30.0  # after --duration: seconds to finish what is queued

    @property
    def uses_io(self):
        return self.protocol in ("io", "both")

    @property
    def uses_legacy(self):
        return self.protocol in ("legacy", "both")

    def io_streams(self):
        """The streams that go over Adobe I/O."""
        if self.protocol == "legacy":
            return ()
        if self.protocol == "both" and not self.overlap:
            return tuple(stream for stream in self.streams if stream != ACTIVITY)
        return self.streams

    def generated_streams(self):
        return (ACTIVITY,) if self.protocol == "legacy" else self.streams


def from_options(options, var_dir):
    """A checked Config from the command's options (a dict); ConfigError for anything wrong."""
    _check_numbers(options)
    protocol = options["protocol"]
    targets = _targets(options)
    streams = _streams(options.get("streams"), protocol)
    config = Config(
        targets=targets,
        protocol=protocol,
        overlap=not options.get("no_overlap", False),
        streams=streams,
        rate=options["rate"],
        count=options.get("count"),
        duration=options.get("duration"),
        reuse_ids=options.get("reuse_ids", False),
        time_scale=options["time_scale"],
        timeout=options.get("timeout"),
        key_port=options["key_port"],
        adobe_port=options.get("adobe_port") or 0,
        adobe_client_secret=options.get("adobe_client_secret") or "sandbox-secret",
        outage=_outage(options),
        key_dir=Path(var_dir) / "simulator",
        forge=options.get("forge", False),
        rotate_keys_every=options.get("rotate_keys_every"),
        queue_size=options["queue_size"],
        single=options.get("single", False),
        bursts=options.get("bursts", False),
        daily_curve=options.get("daily_curve", False),
        drain=options.get("drain", 30.0),
    )
    if options.get("seed") is not None:
        config.seed = options["seed"]
    elif config.reuse_ids:
        raise ConfigError("--reuse-ids replays the run of a --seed: give the seed")
    _check_targets(config)
    return config


def _outage(options):
    after, lasting = options.get("outage_after"), options.get("outage_for")
    if lasting is None:
        return None
    if lasting <= 0 or (after or 0) < 0:
        raise ConfigError("--outage-for must be more than 0 and --outage-after 0 or more")
    return (after or 0.0, (after or 0.0) + lasting)


def _check_numbers(options):
    positive = ("rate", "time_scale", "timeout", "duration", "rotate_keys_every")
    for name in positive:
        value = options.get(name)
        if value is not None and not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be more than 0")
    if options.get("drain") is not None and options["drain"] < 0:
        raise ConfigError("--drain must be 0 or more")
    for name in ("count", "queue_size"):
        value = options.get(name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= options["key_port"] <= 65535:
        raise ConfigError("--key-port must be a port number (0 for any free one)")


def _streams(raw, protocol):
    if not raw:
        return STREAMS
    streams = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in streams if name not in STREAMS]
    if unknown or not streams:
        raise ConfigError(f"--streams takes a comma-separated subset of {', '.join(STREAMS)}")
    if protocol == "legacy" and ACTIVITY not in streams:
        raise ConfigError("the legacy push carries lead activities only: --streams must include activity")
    return streams


def _targets(options):
    base = options.get("base_url")
    if base:
        _check_url(base, "--base-url")
    documents = options.get("source_json") or []
    if documents:
        if any(options.get(name) for name in ("io_url", "legacy_url", "munchkin_id")):
            raise ConfigError("give either --source-json or --io-url/--legacy-url/--munchkin-id")
        return [_target_from_document(path, base, options) for path in documents]
    return [_target_from_options(base, options)]


def _target_from_document(path, base, options):
    try:
        document = json.loads(Path(path).read_text())
        endpoints = document["endpoints"]
        target = Target(
            munchkin_id=str(document["munchkin_id"]).upper(),
            # Given separately, the client id and the token override the document's (fault drills).
            client_id=options.get("adobe_client_id") or document.get("adobe_client_id") or DEFAULT_CLIENT_ID,
            io_url=_join(base, endpoints["adobe_io"]),
            legacy_url=_join(base, endpoints["legacy_push"]),
            api_token=options.get("api_token") or document.get("api_token") or "",
        )
    except OSError as exc:
        raise ConfigError(f"--source-json {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"--source-json {path}: not an `add_source --json` document ({exc})") from None
    oauth = document.get("oauth") if isinstance(document.get("oauth"), dict) else None
    target.oauth = _oauth(options, base, oauth)
    return target


def _target_from_options(base, options):
    io_url, legacy_url = options.get("io_url") or "", options.get("legacy_url") or ""
    if not (io_url or legacy_url):
        raise ConfigError("nowhere to send: give --base-url with --source-json, or --io-url / --legacy-url")
    return Target(
        munchkin_id=(options.get("munchkin_id") or DEFAULT_MUNCHKIN).upper(),
        client_id=options.get("adobe_client_id") or DEFAULT_CLIENT_ID,
        io_url=_join(base, io_url) if io_url else "",
        legacy_url=_join(base, legacy_url) if legacy_url else "",
        api_token=options.get("api_token") or "",
        oauth=_oauth(options, base, None),
    )


def _oauth(options, base, document):
    """Client credentials from the options, else from the document's ``oauth`` part, else None."""
    token_url = options.get("oauth_token_url") or (document or {}).get("token_url")
    client_id = options.get("client_id") or (document or {}).get("client_id")
    secret = options.get("client_secret") or (document or {}).get("client_secret")
    given = [value for value in (token_url, client_id, secret) if value]
    if not given:
        return None
    if len(given) < 3:
        raise ConfigError("OAuth needs --oauth-token-url, --client-id and --client-secret together")
    return OAuth(_join(base, token_url), client_id, secret)


def _join(base, url):
    """An absolute URL as given, or a path joined to --base-url."""
    if urlsplit(url).scheme:
        _check_url(url, url)
        return url
    if not base:
        raise ConfigError(f"{url} is a path: give --base-url to say where Fluxo is")
    return urljoin(base.rstrip("/") + "/", url.lstrip("/"))


def _check_url(url, what):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be an http(s) URL")


def _check_targets(config):
    for target in config.targets:
        if not MUNCHKIN_RE.match(target.munchkin_id):
            raise ConfigError(f"{target.munchkin_id!r} is not a Munchkin ID (like 123-ABC-456)")
        if config.uses_io and config.io_streams() and not target.io_url:
            raise ConfigError(f"--protocol {config.protocol} needs an Adobe I/O URL (--io-url or --source-json)")
        if config.uses_legacy and not target.legacy_url:
            raise ConfigError(f"--protocol {config.protocol} needs a legacy push URL (--legacy-url or --source-json)")
        if config.uses_legacy and not (target.api_token or target.oauth):
            raise ConfigError("the legacy push needs --api-token, or --oauth-token-url/--client-id/--client-secret")
    munchkins = [target.munchkin_id for target in config.targets]
    if len(set(munchkins)) != len(munchkins):
        raise ConfigError("two --source-json documents name the same Munchkin ID")
