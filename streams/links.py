"""Which sources a source's credentials may deliver for, and what it delivered without a link.

What the Setup pages (the dashboard's and the admin's) show about the tenant boundary.
"""

from streams.models import ForeignMunchkin, Source


def tenancy(source):
    """The links of ``source`` both ways, the foreign Munchkin IDs it delivered (with the source that
    has each, if any), and whether its Adobe I/O events are held to its own client id."""
    foreign = list(ForeignMunchkin.objects.filter(source=source))
    owners = {s.munchkin_id: s for s in Source.objects.filter(munchkin_id__in=[f.munchkin_id for f in foreign])}
    return {
        "delivers_for": list(source.delivers_for.order_by("name")),
        "delivered_by": list(source.delivered_by.order_by("name")),
        "foreign": [
            {
                "munchkin_id": f.munchkin_id,
                "first_seen_at": f.first_seen_at,
                "last_seen_at": f.last_seen_at,
                "source": owners.get(f.munchkin_id),
            }
            for f in foreign
        ],
        "client_id_checked": bool(source.adobe_client_id),
    }
