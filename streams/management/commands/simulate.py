import json
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from streams.simulator import config as simulator_config
from streams.simulator import runner


class Command(BaseCommand):
    # A client of Fluxo, like Marketo: it needs neither the URLs nor the database checked.
    requires_system_checks = []
    help = (
        "A sandbox Marketo: sends realistic Lead Activity, User Audit and Notification traffic to Fluxo "
        "with Adobe I/O Events' and the legacy Marketo push's delivery rules. Exit code 0 when everything "
        "generated was acknowledged, 1 when something was dropped or left unsent, 2 for bad arguments."
    )

    def add_arguments(self, parser):
        _where(parser.add_argument_group("where to send"))
        _what(parser.add_argument_group("what to send"))
        _how(parser.add_argument_group("how to send"))
        parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
        parser.add_argument("--quiet", action="store_true", help="no live status display")

    def handle(self, *args, **options):
        try:
            config = simulator_config.from_options(options, settings.VAR_DIR)
        except simulator_config.ConfigError as exc:
            raise CommandError(str(exc), returncode=2) from None
        _stop_on_sigterm()
        try:
            summary = runner.run(config, show_status=not options["quiet"], on_start=self._announce_adobe)
        except runner.KeyServerUnavailable as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        if summary["exit_code"]:
            raise SystemExit(summary["exit_code"])

    def _announce_adobe(self, run):
        """Where Fluxo reads each registration's journal (for add_registration), before the status table."""
        if run.adobe is None:
            return
        self.stderr.write(f"sandbox Adobe (IMS, journals, registration API) at {run.adobe.url}")
        for entry in run.adobe.describe():
            self.stderr.write(f"  journal {entry['journal_url']}  registration path {entry['registration_path']}")


def _stop_on_sigterm():
    """honcho and supervisors stop with SIGTERM: finish like Ctrl-C does (summary, exit code)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _where(group):
    group.add_argument("--base-url", help="Fluxo's base URL, e.g. http://127.0.0.1:8000")
    group.add_argument(
        "--source-json",
        action="append",
        metavar="FILE",
        help="the output of `add_source --json` (repeat for several Munchkin IDs)",
    )
    group.add_argument("--io-url", help="the Adobe I/O Events webhook URL (or a path under --base-url)")
    group.add_argument("--legacy-url", help="the legacy activity push URL (or a path under --base-url)")
    group.add_argument("--api-token", help="the legacy push's API token (overrides the --source-json one)")
    group.add_argument(
        "--munchkin-id", help=f"the Munchkin ID to simulate (default {simulator_config.DEFAULT_MUNCHKIN})"
    )
    group.add_argument("--adobe-client-id", help="sent as recipientclientid (default: the source's, or fluxo-sandbox)")
    group.add_argument("--oauth-token-url", help="legacy push by OAuth client credentials: the token URL")
    group.add_argument("--client-id", help="the OAuth client id")
    group.add_argument("--client-secret", help="the OAuth client secret")


def _what(group):
    group.add_argument("--protocol", choices=("io", "legacy", "both"), default="io")
    group.add_argument(
        "--no-overlap",
        action="store_true",
        help="with --protocol both: activities on the legacy push only (default: on both, a migration overlap)",
    )
    group.add_argument("--streams", help="comma-separated subset of activity,audit,notification (default: all)")
    group.add_argument("--rate", type=float, default=10.0, help="events per second per Munchkin ID (default 10)")
    group.add_argument("--bursts", action="store_true", help="now and then, 8 times the rate for 5 s")
    group.add_argument("--daily-curve", action="store_true", help="shape the rate like a working day (UTC)")
    group.add_argument("--count", type=int, help="events per Munchkin ID, then finish delivering and stop")
    group.add_argument("--duration", type=float, help="seconds of generation, then --drain seconds to finish")
    group.add_argument(
        "--drain", type=float, default=30.0, help="after --duration, seconds to deliver what is queued (default 30)"
    )
    group.add_argument("--seed", type=int, help="reproduce a run's content and order")
    group.add_argument("--reuse-ids", action="store_true", help="ids from the seed too: an exact replay")
    group.add_argument("--single", action="store_true", help="Adobe I/O single-event mode instead of batches")


def _how(group):
    group.add_argument("--time-scale", type=float, default=1.0, help="divide every schedule by this (not timeouts)")
    group.add_argument("--timeout", type=float, help="request timeout in seconds (default 10 for I/O, 20 legacy)")
    group.add_argument(
        "--key-port",
        type=int,
        default=simulator_config.DEFAULT_KEY_PORT,
        help=f"port of the public-key server on 127.0.0.1 (default {simulator_config.DEFAULT_KEY_PORT}; 0: any)",
    )
    group.add_argument(
        "--adobe-port",
        type=int,
        default=0,
        help="port of the sandbox's IMS, journals and registration API on 127.0.0.1 (default: any free one; "
        f"make run uses {simulator_config.DEFAULT_ADOBE_PORT})",
    )
    group.add_argument(
        "--adobe-client-secret", help="the IMS client secret the sandbox accepts (default sandbox-secret)"
    )
    group.add_argument(
        "--outage-for",
        type=float,
        metavar="SECONDS",
        help="a drill: for this many (real) seconds every I/O delivery fails as if Fluxo were down; the journal "
        "keeps filling. With --time-scale 3600, 30 s is more than the day Adobe needs to disable a registration",
    )
    group.add_argument("--outage-after", type=float, metavar="SECONDS", help="when the outage begins (default 0)")
    group.add_argument("--forge", action="store_true", help="sign with keys that are not served (must be refused)")
    group.add_argument("--rotate-keys-every", type=float, metavar="SECONDS", help="rotate a signing key this often")
    group.add_argument("--queue-size", type=int, default=100_000, help="legacy push queue; overflow is dropped")
