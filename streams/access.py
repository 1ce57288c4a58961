"""Who may see which source: superusers every source, others those shared with one of their groups.

Used by the dashboard and the alerts pages, which must not import each other.
"""

from streams.models import Source


def visible_sources(user):
    """The sources a user may see: all for a superuser, else those of the user's viewer groups; never one
    being deleted."""
    if not (user.is_authenticated and user.is_active):
        return Source.objects.none()
    sources = Source.objects.live()
    if not user.is_superuser:
        sources = sources.filter(viewer_groups__in=user.groups.all()).distinct()
    return sources
