"""The rules pages: the list, a new rule (blank or from a preset), editing with a preview, tests, history.

Every change to a rule made here is recorded by alerts.history: a snapshot before, the record after
the many-to-many fields are saved, attributed to the person who made it.
"""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Max, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from alerts import conditions, delivery, figures, history, preview
from alerts.access import visible_alerts
from alerts.forms import (
    KIND_FIELDS,
    ConditionFormSet,
    PreviewForm,
    RuleForm,
    condition_initial,
    viewer_zone,
)
from alerts.models import Rule, WatchList
from alerts.presets import PRESETS
from alerts.views import manager_required, page
from streams.access import visible_sources

PREVIEW_ROWS = 200


@login_required
def rule_list(request):
    rules = Rule.objects.annotate(
        firing=Count("alerts", filter=Q(alerts__state__in=["firing", "pending"])),
        last_fired=Max("alerts__fired_at"),
    ).order_by("name")
    return page(request, "alerts/rules.html", {"rules": rules, "presets": PRESETS})


@require_POST
@manager_required
def rule_from_preset(request):
    """Start a rule from a preset, creating (empty) the watch list it expects when missing."""
    key = request.POST.get("preset", "")
    if key not in PRESETS:
        raise Http404("no such preset")
    needed = PRESETS[key].get("watch_list_needed")
    if needed:
        _, created = WatchList.objects.get_or_create(
            name=needed, defaults={"description": f"Created for the rule template “{PRESETS[key]['name']}”."}
        )
        if created:
            messages.info(
                request, f"The watch list “{needed}” was created, empty: add its entries before relying on the rule."
            )
    return redirect(reverse("alerts:rule-new") + f"?preset={key}")


def preset_initial(key):
    """The form's initial values for a preset (its watch list by id), and its conditions."""
    preset = dict(PRESETS[key])
    for name in ("watch_list_needed", "conditions"):
        preset.pop(name, None)
    if preset.get("watch_list"):
        preset["watch_list"] = WatchList.objects.filter(name=preset["watch_list"]).values_list("pk", flat=True).first()
    return preset, PRESETS[key].get("conditions", [])


@manager_required
def rule_new(request):
    return _rule_page(request, None)


@manager_required
def rule_edit(request, rule_id):
    return _rule_page(request, get_object_or_404(Rule, pk=rule_id))


def _rule_page(request, rule):
    # Before the form is bound: binding writes the posted values onto the instance.
    before = history.snapshot(rule)
    result = None
    if request.method == "POST":
        formset = ConditionFormSet(request.POST, prefix="cond")
        form = RuleForm(request.POST, instance=rule, user=request.user, conditions_formset=formset)
        preview_form = PreviewForm(request.POST, prefix="preview")
        if form.is_valid() and request.POST.get("action") == "preview":
            result = _preview(request, form, preview_form)
        elif form.is_valid():
            saved = _save(request, form, before)
            return redirect("alerts:rule-edit", rule_id=saved.pk)
    else:
        form, formset = _unbound(request, rule)
        preview_form = PreviewForm(prefix="preview")
    return page(request, "alerts/rule_edit.html", _context(request, rule, form, formset, preview_form, result))


def _unbound(request, rule):
    key = request.GET.get("preset", "")
    if rule is None and key in PRESETS:
        initial, items = preset_initial(key)
        if (
            PRESETS[key].get("watch_list_needed")
            and not WatchList.objects.filter(name=PRESETS[key]["watch_list_needed"]).exists()
        ):
            messages.warning(
                request, f"This template expects a watch list named “{PRESETS[key]['watch_list_needed']}”."
            )
    else:
        initial, items = {}, rule.conditions if rule else []
    formset = ConditionFormSet(prefix="cond", initial=condition_initial(items))
    return RuleForm(instance=rule, initial=initial, user=request.user, conditions_formset=formset), formset


def _save(request, form, before):
    with transaction.atomic():
        created = form.instance.pk is None
        saved = form.save()
        history.record(saved, request.user, "created" if created else "changed", before)
    messages.success(request, f"Rule “{saved.name}” {'created' if created else 'saved'}.")
    return saved


def _preview(request, form, preview_form):
    """Replay the unsaved rule over the last hours, limited to the sources this person may see."""
    hours = preview_form.cleaned_data["hours"] if preview_form.is_valid() else 24
    now = timezone.now()
    source_ids, note = _preview_sources(request.user, form.source_ids())
    if source_ids is None:
        return {"error": note}
    try:
        outcome = preview.preview(form.candidate, hours, now, source_ids=source_ids)
    except conditions.ConditionError as exc:
        return {"error": str(exc)}
    zone = viewer_zone(request.POST.get("tz", ""))
    since = now - timedelta(hours=hours)
    return {
        "hours": hours,
        "since": since,
        "now": now,
        "outcome": outcome,
        "rows": [_preview_row(f) for f in outcome.firings[:PREVIEW_ROWS]],
        "more": max(0, len(outcome.firings) - PREVIEW_ROWS),
        "note": " ".join(n for n in (outcome.note, note) if n),
        "figure": figures.preview_timeline(outcome.firings, since, now, zone, form.candidate.resolves),
    }


def _preview_sources(user, chosen):
    """(the source ids to replay, [] for all; a note). Ids None: nothing this person may preview.

    Not superusers see the events of their sources only, in a preview as anywhere else.
    """
    if user.is_superuser:
        return chosen, ""
    visible = set(visible_sources(user).values_list("pk", flat=True))
    allowed = [sid for sid in chosen if sid in visible] if chosen else sorted(visible)
    if not allowed:  # never [] here: that would mean every source
        return None, "You see none of this rule's sources: there is nothing to preview."
    if not chosen or len(allowed) < len(chosen):
        return allowed, "The preview covers only the sources you can see."
    return allowed, ""


def _preview_row(firing):
    return {
        "group": figures.group_label(firing.labels),
        "started_at": firing.started_at,
        "fired_at": firing.fired_at,
        "resolved_at": firing.resolved_at,
        "value": firing.value,
        "hits": firing.hits,
        "first": firing.samples[0] if firing.samples else None,
    }


def _context(request, rule, form, formset, preview_form, result):
    context = {
        "rule": rule,
        "form": form,
        "formset": formset,
        "preview_form": preview_form,
        "preview": result,
        "kinds": Rule.Kind.choices,
        "kind_fields": KIND_FIELDS,
        "operators": conditions.OPERATORS,
        "roots": conditions.ROOTS,
    }
    if rule is not None:
        context["changes"] = rule.changes.select_related("user")[:50]
        context["recent_alerts"] = visible_alerts(request.user).filter(rule=rule).select_related("source")[:30]
        context["destinations"] = list(rule.destinations.all())
    return context


@require_POST
@manager_required
def rule_toggle(request, rule_id):
    rule = get_object_or_404(Rule, pk=rule_id)
    before = history.snapshot(rule)
    with transaction.atomic():
        rule.enabled = not rule.enabled
        rule.save()
        history.record(rule, request.user, "changed", before)
    messages.success(request, f"Rule “{rule.name}” {'enabled' if rule.enabled else 'disabled'}.")
    return redirect("alerts:rule-edit", rule_id=rule.pk)


@manager_required
def rule_delete(request, rule_id):
    rule = get_object_or_404(Rule, pk=rule_id)
    if request.method != "POST":
        context = {"object": rule, "what": "rule", "consequence": "Its alerts and their deliveries are deleted too."}
        return page(request, "alerts/confirm_delete.html", context)
    before = history.snapshot(rule)
    with transaction.atomic():
        history.record(rule, request.user, "deleted", before)
        rule.delete()
    messages.success(request, f"Rule “{rule.name}” deleted.")
    return redirect("alerts:rules")


@require_POST
@manager_required
def rule_test(request, rule_id):
    """Send a test alert for the rule to each of its destinations, now, and say how it went."""
    rule = get_object_or_404(Rule, pk=rule_id)
    if not rule.destinations.exists():
        messages.warning(request, "This rule has no destination to test.")
        return redirect("alerts:rule-edit", rule_id=rule.pk)
    outcome = delivery.send_rule_test(rule, request.user)
    for sent in outcome if isinstance(outcome, list | tuple) else [outcome]:
        report_delivery(request, sent)
    return redirect("alerts:rule-edit", rule_id=rule.pk)


def report_delivery(request, sent):
    """A test delivery's outcome as a message on the next page."""
    if sent is None:
        messages.warning(request, "Nothing was sent.")
        return
    text = f"Test to {sent.destination.name}: {sent.get_status_display().lower()}"
    if sent.outcome:
        text += f" ({sent.outcome})"
    if sent.status == "sent":
        messages.success(request, text)
    else:
        messages.error(request, text)
