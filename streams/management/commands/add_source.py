import json as jsonlib

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse

from streams import endpoints, oauth
from streams.auth import issue_api_token
from streams.models import Source, validate_munchkin_id


class Command(BaseCommand):
    help = "Add a Marketo source (one Munchkin ID) and print the URLs to give Adobe."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--munchkin-id", required=True)
        parser.add_argument("--api-token", help="use this token for the legacy push instead of generating one")
        parser.add_argument("--adobe-client-id", default="", help="checked against recipientclientid")
        parser.add_argument(
            "--oauth-fluxo",
            action="store_true",
            help="legacy push authenticated by OAuth 2 with Fluxo as the provider (prints a client id and secret)",
        )
        parser.add_argument(
            "--delivers-for",
            action="append",
            default=[],
            metavar="SOURCE",
            help="an existing source (name or Munchkin ID) whose events this one's credentials deliver, e.g. one "
            "Adobe I/O registration for several instances; repeatable. Without it, events carrying another "
            "Munchkin ID stay with this source, flagged munchkin_foreign",
        )
        parser.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")

    def handle(self, *args, name, munchkin_id, api_token, adobe_client_id, oauth_fluxo, delivers_for, **options):
        munchkin_id = munchkin_id.strip().upper()
        try:
            validate_munchkin_id(munchkin_id)
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from None
        if Source.objects.filter(name=name).exists():
            raise CommandError(f"a source named {name!r} exists already")
        if Source.objects.filter(munchkin_id=munchkin_id).exists():
            raise CommandError(f"a source with Munchkin ID {munchkin_id} exists already")
        linked = [_existing_source(ref) for ref in delivers_for]
        with transaction.atomic():
            source = Source.objects.create(name=name, munchkin_id=munchkin_id, adobe_client_id=adobe_client_id)
            source.delivers_for.set(linked)
            client = oauth.create_fluxo_client(source) if oauth_fluxo else None
            # With Fluxo as the OAuth provider no API token is needed: one is made only if given. After
            # the client, so that it is not taken for credentials being replaced (and kept 24 h).
            token = issue_api_token(source, api_token) if api_token or not oauth_fluxo else None
        self._print(source, None if api_token else token, options["json"], client)

    def _print(self, source, generated_token, as_json, client=None):
        document = {
            "id": source.id,
            "name": source.name,
            "munchkin_id": source.munchkin_id,
            "adobe_client_id": source.adobe_client_id,
            "delivers_for": [other.munchkin_id for other in source.delivers_for.order_by("name")],
            "endpoints": endpoints.paths(source),
        }
        if generated_token:
            document["api_token"] = generated_token
        if client:
            document["oauth"] = {
                "token_url": reverse("oauth2_token"),
                "client_id": client[0],
                "client_secret": client[1],
            }
        if as_json:
            self.stdout.write(json_dumps(document))
            return
        self.stdout.write(f"Source {source.name} ({source.munchkin_id}) added, id {source.id}.")
        self.stdout.write(f"  Adobe I/O Events webhook: {document['endpoints']['adobe_io']}")
        self.stdout.write(f"  Legacy activity push:     {document['endpoints']['legacy_push']}")
        if document["delivers_for"]:
            self.stdout.write(f"  Delivers for:             {', '.join(document['delivers_for'])}")
        if not source.adobe_client_id:
            self.stdout.write(
                "  No Adobe client id: any Adobe customer's signed events are accepted; set one with --adobe-client-id."
            )
        if generated_token:
            self.stdout.write(f"  API token (shown once):   {generated_token}")
        if client:
            self.stdout.write(f"  OAuth token URL:          {document['oauth']['token_url']}")
            self.stdout.write(f"  OAuth client id:          {client[0]}")
            self.stdout.write(f"  OAuth secret (shown once): {client[1]}")


def _existing_source(reference):
    """A source by name or Munchkin ID, for --delivers-for."""
    found = (
        Source.objects.filter(name=reference).first()
        or Source.objects.filter(munchkin_id=reference.strip().upper()).first()
    )
    if found is None:
        raise CommandError(f"--delivers-for: no source named {reference!r} or with that Munchkin ID")
    return found


def json_dumps(document):
    return jsonlib.dumps(document)
