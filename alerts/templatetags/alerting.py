"""Template filters of the alerts pages: times for the viewer's zone, labels, masked secrets."""

from datetime import UTC

import orjson
from django import template
from django.utils.html import format_html, format_html_join

from alerts import figures

register = template.Library()


@register.filter
def when(moment):
    """A time as ``<time>`` in UTC; the page's script shows it in the viewer's zone."""
    if not moment:
        return "—"
    moment = moment.astimezone(UTC)
    return format_html('<time datetime="{}">{} UTC</time>', moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M:%S"))


@register.filter
def labels(value):
    """Group labels as escaped ``key=value`` chips."""
    if not value or not isinstance(value, dict):
        return ""
    items = sorted((str(k), "" if v is None else str(v)) for k, v in value.items())
    return format_html_join(" ", '<span class="chip">{}={}</span>', items)


@register.filter
def group_label(value):
    return figures.group_label(value if isinstance(value, dict) else {})


@register.filter
def change_value(value):
    """A field's value in the change history: lists joined, None as a dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)


@register.filter
def kinds_of(field):
    """The rule kinds a form field means something for (set by forms.RuleForm), as a space-separated list."""
    return " ".join(getattr(field.field, "kinds", ()))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@register.filter
def weekday_names(days):
    """[0, 4] → "Mon, Fri"; none → "every day"."""
    names = [_DAYS[d] for d in days or [] if isinstance(d, int) and 0 <= d < 7]
    return ", ".join(names) or "every day"
