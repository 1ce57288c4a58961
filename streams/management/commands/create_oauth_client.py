import json as jsonlib

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.urls import reverse

from streams import endpoints, oauth
from streams.models import MAX_AUTH_GRACE_HOURS, Source


class Command(BaseCommand):
    help = (
        "Make Fluxo the OAuth 2 provider of a source's legacy push: create a client-credentials client "
        "and print its client id and secret (shown once; the secret is stored hashed)."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", help="the source's name or id")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="replace an existing client (it keeps working for the source's grace period, then is deleted)",
        )
        parser.add_argument(
            "--grace-hours",
            type=int,
            help=f"set the source's grace period first (0 to {MAX_AUTH_GRACE_HOURS}; 0: what this replaces "
            "stops at once)",
        )
        parser.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")

    def handle(self, *args, source, replace, json, grace_hours, **options):
        found = self._source(source)
        if grace_hours is not None:
            if not 0 <= grace_hours <= MAX_AUTH_GRACE_HOURS:
                raise CommandError(f"--grace-hours: expected 0 to {MAX_AUTH_GRACE_HOURS}")
            found.auth_grace_hours = grace_hours
            found.save(update_fields=["auth_grace_hours"])
        try:
            client_id, secret = oauth.create_fluxo_client(found, replace=replace)
        except oauth.ClientExists as exc:
            raise CommandError(f"{exc}; pass --replace to replace it") from None
        document = {
            "source_id": found.id,
            "token_url": endpoints.absolute(reverse("oauth2_token")),
            "client_id": client_id,
            "client_secret": secret,
        }
        if json:
            self.stdout.write(jsonlib.dumps(document))
            return
        self.stdout.write(f"Fluxo is now the OAuth provider of {found.name}'s legacy push. Give Marketo:")
        self.stdout.write(f"  Token URL:                    {document['token_url']}")
        self.stdout.write(f"  Client ID:                    {client_id}")
        self.stdout.write(f"  Client secret (shown once):   {secret}")

    def _source(self, name_or_id):
        match = Q(name=name_or_id) | (Q(pk=int(name_or_id)) if name_or_id.isdigit() else Q())
        found = list(Source.objects.filter(match)[:2])
        if len(found) != 1:
            raise CommandError(f"no single source is named or numbered {name_or_id!r}")
        return found[0]
