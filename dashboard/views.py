from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from streams import announce
from streams.models import Source


def visible_sources(user):
    """The sources a user may see: all for a superuser, else those of the user's viewer groups."""
    sources = Source.objects.all()
    if not user.is_superuser:
        sources = sources.filter(viewer_groups__in=user.groups.all()).distinct()
    return sources


@login_required
def home(request):
    rows = [(source, announce.counters(source.id)) for source in visible_sources(request.user)]
    return render(request, "dashboard/home.html", {"rows": rows})
