import json
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from streams import endpoints
from streams.auth import issue_api_token
from streams.models import Source

DEMO_MUNCHKIN = "000-DEM-000"


class Command(BaseCommand):
    help = "First-run set-up for `make run`: a demo admin (password printed once) and a demo source."

    def handle(self, *args, **options):
        self._admin()
        self._demo_source()

    def _admin(self):
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(self.style.WARNING(f"Demo admin created: admin / {password}  (shown once; keep it)"))

    def _demo_source(self):
        from django.conf import settings

        if Source.objects.filter(munchkin_id=DEMO_MUNCHKIN).exists():
            return
        source = Source.objects.create(name="Demo", munchkin_id=DEMO_MUNCHKIN)
        token = issue_api_token(source)
        document = {
            "id": source.id,
            "name": source.name,
            "munchkin_id": source.munchkin_id,
            "adobe_client_id": "",
            "api_token": token,
            "endpoints": endpoints.paths(source),
        }
        path = settings.VAR_DIR / "demo-source.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(document))
        self.stdout.write(f"Demo source created (Munchkin ID {DEMO_MUNCHKIN}); its settings are in {path}")
        call_command("check", verbosity=0)
