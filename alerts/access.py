"""Who may see which alert, and who may change alerting: shared by the pages and the JSON API."""

from django.db.models import Q

from alerts.models import Alert
from streams.access import visible_sources

MANAGE = "alerts.manage_alerting"


def can_manage(user):
    """Edit rules, destinations, silences, mute windows, watch lists, and acknowledge (superusers can)."""
    return bool(user.is_authenticated and user.is_active and user.has_perm(MANAGE))


def visible_alerts(user):
    """Alerts of a source the user sees; alerts of no single source only for superusers and managers."""
    if not (user.is_authenticated and user.is_active):
        return Alert.objects.none()
    if user.is_superuser:
        return Alert.objects.all()
    scope = Q(source__in=visible_sources(user).values("pk"))
    if can_manage(user):
        scope |= Q(source__isnull=True)
    return Alert.objects.filter(scope)
