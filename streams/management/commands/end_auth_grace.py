from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from streams import auth
from streams.models import Source


class Command(BaseCommand):
    help = (
        "Stop accepting a source's replaced legacy-push credentials now, before its grace period ends "
        "(a replaced Fluxo OAuth client is deleted). With --expired: forget every source's expired ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", nargs="?", help="the source's name or id")
        parser.add_argument("--expired", action="store_true", help="only clean up grace periods that have ended")

    def handle(self, *args, source, expired, **options):
        if expired:
            self.stdout.write(f"Cleaned up {auth.retire_expired_grace()} source(s).")
            return
        if not source:
            raise CommandError("name a source, or pass --expired")
        match = Q(name=source) | (Q(pk=int(source)) if source.isdigit() else Q())
        found = list(Source.objects.filter(match)[:2])
        if len(found) != 1:
            raise CommandError(f"no single source is named or numbered {source!r}")
        auth.end_grace(found[0])
        self.stdout.write(f"{found[0].name}: only the current credentials are accepted now.")
