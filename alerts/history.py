"""Who changed which rule, when, and how: every save through the admin or the rules page comes here."""

from alerts.models import Rule, RuleChange

_M2M = ("sources", "destinations", "mute_windows")


def snapshot(rule):
    """The rule's editable fields as plain JSON values (many-to-many as sorted names)."""
    if rule is None or rule.pk is None:
        return {}
    values = {}
    for field in Rule._meta.concrete_fields:
        if field.name in ("id", "version", "created_at", "updated_at"):
            continue
        value = field.value_from_object(rule)
        values[field.name] = value if isinstance(value, str | int | float | bool | list | dict | None) else str(value)
    for name in _M2M:
        values[name] = sorted(str(item) for item in getattr(rule, name).all())
    return values


def record(rule, user, action, before):
    """Record a change: ``before`` is snapshot() taken before it, {} for a new rule."""
    after = snapshot(rule) if action != "deleted" else {}
    changes = {
        name: [before.get(name), after.get(name)]
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }
    if action == "changed" and not changes:
        return None
    return RuleChange.objects.create(
        rule=rule if action != "deleted" else None,
        rule_name=rule.name,
        user=user if user is not None and user.is_authenticated else None,
        action=action,
        changes=changes,
    )
