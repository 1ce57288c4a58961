import orjson
from django.core.management.base import BaseCommand, CommandError

from streams import erasure


class Command(BaseCommand):
    help = (
        "Erase one lead's personal data (a data subject's request): its events of the source go, its e-mail "
        "addresses leave alert samples, aggregate counts stay, and an erasure record says who, what and when. "
        "Redeliveries of the erased events are recognised and not stored again."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", help="the source's id, name or Munchkin ID")
        parser.add_argument("lead_id", help="Marketo's lead id")
        parser.add_argument(
            "--email", action="append", default=[], help="an address of the lead to scrub too (repeatable)"
        )
        parser.add_argument("--json", action="store_true", help="print the erasure record as JSON")

    def handle(self, *args, source, lead_id, email, json, **options):
        found = erasure.find_source(source)
        if found is None:
            raise CommandError(f"no single source has the id, name or Munchkin ID {source!r}")
        if not lead_id.strip():
            raise CommandError("a lead id is required")
        record = erasure.erase_lead(found, lead_id, erased_by="command", emails=email)
        if json:
            self.stdout.write(orjson.dumps(_as_dict(record)).decode())
            return
        self.stdout.write(
            f"{found.name}: lead {record.lead_id} erased: {record.events_removed} event(s) removed, "
            f"{record.samples_scrubbed} alert sample(s) or line(s) scrubbed (record #{record.pk})."
        )


def _as_dict(record):
    return {
        "record": record.pk,
        "source": record.source_id,
        "source_name": record.source_name,
        "lead_id": record.lead_id,
        "erased_by": record.erased_by,
        "erased_at": record.erased_at.isoformat(),
        "events_removed": record.events_removed,
        "samples_scrubbed": record.samples_scrubbed,
    }
