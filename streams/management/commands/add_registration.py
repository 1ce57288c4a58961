import json
import os
import sys

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from streams import journal, secretbox
from streams.models import AdobeRegistration, Source


class Command(BaseCommand):
    help = (
        "Add (or update) an Adobe I/O Events registration of a source: its journal URL and the OAuth "
        "server-to-server credentials Fluxo reads the journal with. The client secret is read from an "
        "environment variable or stdin, never from the command line, and stored encrypted (FLUXO_SECRETS_KEY)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--source", required=True, help="the receiving source (name or Munchkin ID)")
        parser.add_argument("--journal-url", default=None, help="the registration's journal URL (Developer Console)")
        parser.add_argument("--ims-client-id", default=None)
        parser.add_argument("--ims-org-id", default=None, help="…@AdobeOrg")
        parser.add_argument("--scopes", default=None, help="comma-separated, as in the Developer Console")
        parser.add_argument("--registration-path", default=None, help="consumerOrgId/projectId/workspaceId/regId")
        parser.add_argument("--mode", choices=[m.value for m in AdobeRegistration.Mode], default=None)
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument("--client-secret-env", metavar="VAR", help="read the client secret from this variable")
        secret.add_argument("--client-secret-stdin", action="store_true", help="read the client secret from stdin")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, name, source, **options):
        found = Source.objects.filter(Q(name=source) | Q(munchkin_id=source.upper())).first()
        if found is None:
            raise CommandError(f"no source {source!r}")
        registration = AdobeRegistration.objects.filter(name=name).first() or AdobeRegistration(name=name)
        registration.source = found
        for field in ("journal_url", "ims_client_id", "ims_org_id", "scopes", "registration_path", "mode"):
            if options[field] is not None:
                setattr(registration, field, options[field])
        if registration.journal_url:
            try:
                journal.check_journal_url(registration.journal_url)
            except journal.Stopped as exc:
                raise CommandError(str(exc)) from None
        secret = _secret(options)
        if secret:
            try:
                registration.client_secret_encrypted = secretbox.seal(secret)
            except secretbox.NoKey as exc:
                raise CommandError(str(exc)) from None
        registration.save()
        document = {
            "id": registration.id,
            "name": registration.name,
            "source": found.name,
            "mode": registration.mode,
            "journal_url": registration.journal_url,
            "has_credentials": registration.has_credentials,
        }
        self.stdout.write(
            json.dumps(document) if options["json"] else f"Registration {name} saved, id {registration.id}."
        )


def _secret(options):
    if options["client_secret_env"]:
        value = os.environ.get(options["client_secret_env"], "")
        if not value:
            raise CommandError(f"{options['client_secret_env']} is empty")
        return value
    if options["client_secret_stdin"]:
        return sys.stdin.readline().strip()
    return ""
