from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from alerts import history
from alerts.models import Rule, WatchList
from alerts.presets import PRESETS

# What `make run` installs: rules that need no list to fill in and show the system working.
DEMO = ("stream-silent", "campaign-abort-notification", "quota-80", "login-failure", "signature-failures")


class Command(BaseCommand):
    help = "Create rules from Fluxo's templates (alerts.presets), skipping any whose name exists."

    def add_arguments(self, parser):
        parser.add_argument("presets", nargs="*", help=f"Template keys: {', '.join(PRESETS)}.")
        parser.add_argument(
            "--demo", action="store_true", help=f"The demo set ({', '.join(DEMO)}), only while there is no rule at all."
        )

    def handle(self, *args, presets, demo, **options):
        if demo and not presets and Rule.objects.exists():
            return  # set up before: the admin's rules are theirs, deleted demo rules stay deleted
        keys = list(presets) + (list(DEMO) if demo else [])
        unknown = [k for k in keys if k not in PRESETS]
        if unknown or not keys:
            raise CommandError(f"name templates among: {', '.join(PRESETS)} (unknown: {', '.join(unknown) or '-'})")
        for key in dict.fromkeys(keys):
            created = install(key)
            if created:
                self.stdout.write(f"rule created from {key}: {created.name}")


@transaction.atomic
def install(key):
    """Create the rule of template ``key`` (and its empty watch list) unless one of that name exists."""
    values = dict(PRESETS[key])
    needed = values.pop("watch_list_needed", None)
    watch_list = values.pop("watch_list", None)
    if Rule.objects.filter(name=values["name"]).exists():
        return None
    if needed:
        WatchList.objects.get_or_create(name=needed)
    rule = Rule.objects.create(**values, watch_list=WatchList.objects.get(name=watch_list) if watch_list else None)
    history.record(rule, None, "created", {})
    return rule
