from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from streams import api_tokens


class Command(BaseCommand):
    help = "Create a personal API token for the read API; the token is the last word printed."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for")
        parser.add_argument("--expires-in-days", type=int, help="expire after this many days (default: never)")

    def handle(self, *args, username, name, expires_in_days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be at least 1")
        expires = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        _token, secret = api_tokens.create(user, name=name, expires_at=expires)
        self.stdout.write(f"API token for {user.username}: {secret}")
