"""The forms of the alerts pages (and the admin's destination form): rules, destinations, silences, …

Condition and matcher rows are formsets, so the pages work without JavaScript (blank rows are
ignored); a rule's conditions are checked by compiling them exactly as the evaluator will, and the
ConditionError text is shown next to the row it is about.
"""

import copy
import ipaddress
import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from django import forms
from django.conf import settings
from django.forms.models import construct_instance

from alerts import compiled, conditions, silencing
from alerts.models import Destination, MuteWindow, Rule, Silence, WatchList
from fluxo import urlguard
from streams.access import visible_sources

# Which fields mean something for which kind of rule: the others are hidden (JS) or marked (no JS).
ALL_KINDS = tuple(Rule.Kind.values)
KIND_FIELDS = {
    "watch_list": ("watch",),
    "group_by": ("match", "watch", "threshold", "absence"),
    "threshold": ("threshold", "health"),
    "recovery_threshold": ("threshold", "health"),
    "window_minutes": ("threshold", "absence", "health"),
    "for_minutes": ("threshold", "health"),
    "basis": ("threshold", "absence"),
    "metric": ("health",),
    "repeat_minutes": ("threshold", "absence", "health"),
    "conditions": ("match", "watch", "threshold", "absence"),
}
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?[0-9]{1,18}\.[0-9]{1,18}")


# --- Condition rows --------------------------------------------------------------------------------------


def value_to_text(value):
    """A stored condition value as the text of its input: lists as JSON, the rest as typed."""
    if value is None:
        return ""
    if isinstance(value, list | dict | bool):
        return orjson.dumps(value).decode()
    return str(value)


def text_to_value(text, op):
    """What an admin typed as a condition value: a JSON list for ``in`` (or comma-separated), numbers as numbers."""
    text = text.strip()
    if op == "present":
        return None
    if op == "in":
        if text.startswith("["):
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                raise forms.ValidationError('write the values as a JSON list, e.g. ["a", "b"], or a, b') from None
        return [text_to_value(part, "eq") for part in text.split(",") if part.strip()]
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


class ConditionForm(forms.Form):
    path = forms.CharField(max_length=300, required=False, widget=forms.TextInput(attrs={"size": 28}))
    op = forms.ChoiceField(choices=[(op, op.replace("_", " ")) for op in conditions.OPERATORS], required=False)
    value = forms.CharField(max_length=2000, required=False, widget=forms.TextInput(attrs={"size": 28}))
    negate = forms.BooleanField(required=False, label="not")

    def is_blank(self):
        data = getattr(self, "cleaned_data", {})
        return not (data.get("path") or "").strip() and not (data.get("value") or "").strip()

    def condition(self):
        """The row as stored in Rule.conditions, or None for a blank row."""
        if self.is_blank() or self.cleaned_data.get("DELETE"):
            return None
        data = self.cleaned_data
        op = data.get("op") or "eq"
        item = {"path": data["path"].strip(), "op": op, "value": text_to_value(data.get("value") or "", op)}
        if data.get("negate"):
            item["negate"] = True
        return item


ConditionFormSet = forms.formset_factory(ConditionForm, extra=2, can_delete=True, max_num=50, absolute_max=50)


def condition_initial(items):
    return [
        {
            "path": c.get("path", ""),
            "op": c.get("op", "eq"),
            "value": value_to_text(c.get("value")),
            "negate": bool(c.get("negate")),
        }
        for c in items
        if isinstance(c, dict)
    ]


def rows_to_conditions(formset):
    """The formset's conditions as a list; row errors added where a value cannot be read."""
    items = []
    for form in formset.forms:
        try:
            item = form.condition()
        except forms.ValidationError as exc:
            form.add_error("value", exc)
            continue
        if item is not None:
            items.append((form, item))
    return items


# --- Rules ---------------------------------------------------------------------------------------------


class RuleForm(forms.ModelForm):
    """Every field of a rule except its conditions (the ConditionFormSet beside it)."""

    class Meta:
        model = Rule
        fields = [
            "name",
            "description",
            "kind",
            "severity",
            "enabled",
            "sources",
            "watch_list",
            "group_by",
            "threshold",
            "recovery_threshold",
            "window_minutes",
            "for_minutes",
            "basis",
            "metric",
            "group_wait_seconds",
            "repeat_minutes",
            "destinations",
            "mute_windows",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            "sources": forms.CheckboxSelectMultiple,
            "destinations": forms.CheckboxSelectMultiple,
            "mute_windows": forms.CheckboxSelectMultiple,
        }

    def __init__(self, *args, user=None, conditions_formset=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.visible = visible_sources(user) if user is not None else None
        if self.visible is not None:
            self.fields["sources"].queryset = self.visible
        self.fields["sources"].help_text = "None ticked: every source."
        self.fields["watch_list"].help_text = "Watch-list rules: the leads (ids or e-mail addresses) to watch."
        for name, page in (("destinations", "Destinations"), ("mute_windows", "Mute windows")):
            if not self.fields[name].queryset.exists():
                self.fields[name].help_text = f"None defined yet: add them on the {page} page."
        self.conditions_formset = conditions_formset
        self.candidate = None
        self.watch_lists = None
        for name, kinds in KIND_FIELDS.items():
            if name in self.fields:
                self.fields[name].widget.attrs["data-kinds"] = " ".join(kinds)
                self.fields[name].kinds = kinds

    def hidden_sources(self):
        """Sources already on the rule that this user cannot see: kept as they are on save."""
        if self.instance.pk is None or self.visible is None:
            return []
        return list(self.instance.sources.exclude(pk__in=self.visible.values("pk")))

    def source_ids(self):
        chosen = [s.pk for s in self.cleaned_data.get("sources", [])]
        return chosen + [s.pk for s in self.hidden_sources()]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind == Rule.Kind.WATCH and not cleaned.get("watch_list"):
            self.add_error("watch_list", "A watch-list rule needs a watch list.")
        if kind == Rule.Kind.HEALTH and not cleaned.get("metric"):
            self.add_error("metric", "Say what a health rule counts.")
        if kind in KIND_FIELDS["window_minutes"] and not cleaned.get("window_minutes"):
            self.add_error("window_minutes", "The window is at least one minute.")
        items = self._check_rows()  # always, so a bad condition shows beside the other errors
        if items is not None and not self.errors:
            self._compile(items)
        return cleaned

    def _check_rows(self):
        """The conditions, each compiled alone so its ConditionError goes beside its row; None if one fails."""
        formset = self.conditions_formset
        if formset is None:
            return []
        if not formset.is_valid():
            self.add_error(None, "A condition needs fixing (see below).")
            return None
        rows = rows_to_conditions(formset)
        self.watch_lists = {w.name: w.values() for w in WatchList.objects.all()}
        failed = any(form.errors for form in formset.forms)
        for form, item in rows:
            try:
                conditions.compile_all([item], self.watch_lists)
            except conditions.ConditionError as exc:
                form.add_error(None, str(exc))
                failed = True
        if failed:
            self.add_error(None, "A condition needs fixing (see below).")
            return None
        return [item for _form, item in rows]

    def _compile(self, items):
        """Compile the whole rule as the evaluator will (a watch rule's list, the sources)."""
        candidate = construct_instance(self, copy.copy(self.instance))
        candidate.conditions = items
        watch_lists = self.watch_lists or {w.name: w.values() for w in WatchList.objects.all()}
        try:
            compiled.compile_rule(candidate, watch_lists, source_ids=self.source_ids())
        except conditions.ConditionError as exc:
            self.add_error(None, str(exc))
            return
        self.candidate = candidate

    def save(self, commit=True):
        hidden = self.hidden_sources()  # before save_m2m replaces the rule's sources with the ticked ones
        rule = super().save(commit=False)
        rule.conditions = self.candidate.conditions
        if commit:
            rule.save()
            self.save_m2m()
            if hidden:
                rule.sources.add(*hidden)
        return rule


class PreviewForm(forms.Form):
    hours = forms.IntegerField(min_value=1, max_value=24 * 14, initial=24, label="Preview over the last")


# --- Destinations ----------------------------------------------------------------------------------------


def masked_url(url):
    """A secret URL as it is shown once saved: its host and last 4 characters."""
    if not url:
        return ""
    host = urlsplit(url).hostname or "?"
    return f"{host} …{url[-4:]}"


def masked_token(token):
    return f"…{token[-4:]}" if token else ""


def check_outbound_url(url, https_only=False):
    """Refuse a URL Fluxo would not post to. Names are resolved again at send time (DNS can change)."""
    try:
        host, _port = urlguard.check_syntax(url)
    except urlguard.UnsafeURL as exc:
        raise forms.ValidationError(str(exc)) from None
    if https_only and urlsplit(url).scheme != "https":
        raise forms.ValidationError("Slack webhook URLs are https.")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not settings.FLUXO_ALLOW_PRIVATE_URLS and not urlguard.is_public(address):
        raise forms.ValidationError(
            "This URL points at a private or reserved address (here: a loopback or private network). Fluxo "
            "posts only to public addresses unless FLUXO_ALLOW_PRIVATE_URLS=1 is set (for a receiver on this "
            "machine or network, e.g. in development)."
        )


class DestinationForm(forms.ModelForm):
    """A destination; the Slack webhook URL and bot token are never shown back, and blank keeps them."""

    class Meta:
        model = Destination
        fields = [
            "name",
            "kind",
            "enabled",
            "email_to",
            "url",
            "slack_bot_token",
            "slack_channel",
            "send_resolved",
            "rate_limit_per_minute",
        ]
        widgets = {"email_to": forms.Textarea(attrs={"rows": 3, "cols": 50})}

    # Plain text fields: the model's URLField would render the saved Slack secret back into the page.
    url = forms.CharField(max_length=500, required=False, label="URL")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["url"].help_text = self._url_help()
        if self.instance.pk is None:
            self.fields["kind"].initial = Destination.Kind.EMAIL
        self.fields["slack_bot_token"] = forms.CharField(
            max_length=200,
            required=False,
            label="Slack bot token",
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
            help_text=self._token_help(),
        )
        self.fields["email_to"].widget.attrs["data-kinds"] = "email"
        self.fields["url"].widget.attrs["data-kinds"] = "slack webhook"
        for name in ("slack_bot_token", "slack_channel"):
            self.fields[name].widget.attrs["data-kinds"] = "slack"
        if self._slack_saved():
            # Never send the saved Slack URL back to the browser, not even in the input's value.
            self.initial["url"] = ""
            self.fields["url"].widget.attrs["autocomplete"] = "off"

    def _slack_saved(self):
        return self.instance.pk is not None and self.instance.kind == Destination.Kind.SLACK and self.instance.url

    def _url_help(self):
        base = "Slack: the incoming-webhook URL. Webhook: the URL Fluxo POSTs JSON to."
        if self._slack_saved():
            return f"{base} Saved: {masked_url(self.instance.url)}; leave blank to keep it."
        return base

    def _token_help(self):
        base = "Optional: with it, Fluxo edits the Slack message when the alert resolves."
        if self.instance.pk is not None and self.instance.slack_bot_token:
            return f"{base} Saved: {masked_token(self.instance.slack_bot_token)}; leave blank to keep it."
        return base

    def clean_url(self):
        url = self.cleaned_data.get("url", "").strip()
        kind = self.data.get(self.add_prefix("kind"))
        if not url and self.instance.pk is not None and self.instance.kind == Destination.Kind.SLACK == kind:
            return self.instance.url  # left blank: keep the saved secret
        if url:
            forms.URLField(assume_scheme="https").clean(url)
            check_outbound_url(url, https_only=kind == Destination.Kind.SLACK)
        return url

    def clean_slack_bot_token(self):
        token = self.cleaned_data.get("slack_bot_token", "").strip()
        if not token and self.instance.pk is not None:
            return self.instance.slack_bot_token
        return token

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind == Destination.Kind.EMAIL:
            if not Destination(email_to=cleaned.get("email_to", "")).recipients():
                self.add_error("email_to", "Give at least one recipient.")
            for address in Destination(email_to=cleaned.get("email_to", "")).recipients():
                try:
                    forms.EmailField().clean(address)
                except forms.ValidationError:
                    self.add_error("email_to", f"Not an e-mail address: {address}")
        elif (
            kind in (Destination.Kind.SLACK, Destination.Kind.WEBHOOK)
            and not cleaned.get("url")
            and "url" not in self.errors
        ):
            # A URL given but refused already says why; "needs a URL" would claim it is missing.
            self.add_error("url", "This kind of destination needs a URL.")
        if cleaned.get("slack_bot_token") and not cleaned.get("slack_channel"):
            self.add_error("slack_channel", "With a bot token, give the channel id.")
        return cleaned

    def save(self, commit=True):
        destination = super().save(commit=False)
        if destination.enabled:
            destination.disabled_reason, destination.disabled_at = "", None
        if commit:
            destination.save()
        return destination


# --- Silences ----------------------------------------------------------------------------------------------

DURATIONS = [
    ("1h", "1 hour"),
    ("2h", "2 hours"),
    ("4h", "4 hours"),
    ("8h", "8 hours"),
    ("24h", "1 day"),
    ("72h", "3 days"),
    ("168h", "1 week"),
]


class MatcherForm(forms.Form):
    label = forms.CharField(max_length=100, required=False, widget=forms.TextInput(attrs={"size": 16}))
    op = forms.ChoiceField(choices=[(op, op) for op in silencing.OPS], required=False)
    value = forms.CharField(max_length=500, required=False, widget=forms.TextInput(attrs={"size": 30}))

    def matcher(self):
        data = getattr(self, "cleaned_data", {})
        if not (data.get("label") or "").strip() or data.get("DELETE"):
            return None
        return {"label": data["label"].strip(), "op": data.get("op") or "=", "value": data.get("value") or ""}


MatcherFormSet = forms.formset_factory(MatcherForm, extra=2, can_delete=True, max_num=30, absolute_max=30)


def viewer_zone(name):
    """The zone the viewer's browser reported (a hidden input filled by the page's script); UTC if none."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class SilenceForm(forms.Form):
    starts_at = forms.DateTimeField(
        required=False,
        label="Starts",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Blank: now.",
    )
    ends_at = forms.DateTimeField(
        required=False,
        label="Ends",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Or choose a duration.",
    )
    duration = forms.ChoiceField(choices=[("", "—"), *DURATIONS], required=False, initial="2h")
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), required=False)
    tz = forms.CharField(required=False, widget=forms.HiddenInput(attrs={"class": "viewer-zone"}))

    def __init__(self, *args, matchers=None, now=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.matchers_formset = matchers
        self.now = now

    def _local(self, value, zone):
        # datetime-local has no zone: it is the viewer's wall clock.
        if value is None:
            return None
        return datetime.combine(value.date(), value.time(), tzinfo=zone)

    def clean(self):
        cleaned = super().clean()
        zone = viewer_zone(cleaned.get("tz", ""))
        starts = self._local(cleaned.get("starts_at"), zone) or self.now
        ends = self._local(cleaned.get("ends_at"), zone)
        if ends is None and cleaned.get("duration"):
            ends = starts + timedelta(hours=int(cleaned["duration"].rstrip("h")))
        if ends is None:
            self.add_error("ends_at", "Give an end or a duration.")
        elif ends <= starts:
            self.add_error("ends_at", "The end is after the start.")
        cleaned["starts"], cleaned["ends"] = starts, ends
        matchers = [m for m in (f.matcher() for f in self.matchers_formset.forms) if m is not None]
        try:
            silencing.check_matchers(matchers)
        except silencing.MatcherError as exc:
            self.add_error(None, str(exc))
        cleaned["matchers"] = matchers
        return cleaned

    def silence(self, user):
        data = self.cleaned_data
        return Silence(
            matchers=data["matchers"],
            starts_at=data["starts"],
            ends_at=data["ends"],
            comment=data.get("comment", ""),
            created_by=user,
        )


# --- Mute windows, watch lists, acknowledgements --------------------------------------------------------

WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]


class MuteWindowForm(forms.ModelForm):
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The days the window opens on; none ticked: every day.",
    )

    class Meta:
        model = MuteWindow
        fields = ["name", "time_zone", "weekdays", "start_time", "end_time"]
        widgets = {
            "start_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "end_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def clean_time_zone(self):
        name = self.cleaned_data["time_zone"].strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise forms.ValidationError(f"Not an IANA time zone: {name}") from None
        return name

    def clean_weekdays(self):
        return sorted(set(self.cleaned_data.get("weekdays") or []))


class WatchListForm(forms.ModelForm):
    class Meta:
        model = WatchList
        fields = ["name", "description", "entries"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            "entries": forms.Textarea(attrs={"rows": 12, "cols": 40}),
        }

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        old = self.instance.name if self.instance.pk else None
        if old and name != old:
            users = [r.name for r in rules_naming_watch_list(old)]
            if users:
                raise forms.ValidationError(
                    f"Rules name this watch list in their conditions ({', '.join(users)}): change them first."
                )
        return name


def rules_naming_watch_list(name):
    """Rules whose conditions name the watch list (in_watch_list takes its name)."""
    return [
        rule
        for rule in Rule.objects.only("name", "conditions")
        if any(
            isinstance(c, dict) and c.get("op") == "in_watch_list" and c.get("value") == name
            for c in rule.conditions or []
        )
    ]


class AcknowledgeForm(forms.Form):
    comment = forms.CharField(
        max_length=1000, required=False, widget=forms.TextInput(attrs={"size": 30, "placeholder": "comment (optional)"})
    )


class AlertFilterForm(forms.Form):
    """The history's filters (GET); unknown values are simply not valid and ignored."""

    rule = forms.ModelChoiceField(queryset=Rule.objects.all(), required=False, empty_label="Any rule")
    state = forms.ChoiceField(
        choices=[
            ("", "Any state"),
            ("resolved", "Resolved"),
            ("fired", "Fired"),
            ("inactive", "Cleared before firing"),
        ],
        required=False,
    )
    severity = forms.ChoiceField(
        choices=[("", "Any severity"), *Rule._meta.get_field("severity").choices], required=False
    )
    source = forms.ModelChoiceField(queryset=None, required=False, empty_label="Any source")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].queryset = visible_sources(user)
