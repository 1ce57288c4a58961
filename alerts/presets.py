"""The rule templates Fluxo ships: a new rule starts from one of these, then the admin adjusts it.

Each is the field values of a Rule (conditions in the syntax of alerts.conditions). ``watch_list`` names
the watch list the template expects; the rules page offers to create it, empty, when it is missing.
"""

NOTIFICATION = "com.adobe.platform.marketo.notification."

PRESETS = {
    "list-add": {
        "name": "Lead added to a watched list",
        "description": "A lead was added to one of the Marketo lists named in the watch list “Watched lists”.",
        "kind": "match",
        "severity": "warning",
        "conditions": [
            {"path": "activity_type_id", "op": "eq", "value": 24},
            {"path": "primary_attribute", "op": "in_watch_list", "value": "Watched lists"},
        ],
        "watch_list_needed": "Watched lists",
        "group_wait_seconds": 30,
    },
    "watched-leads": {
        "name": "Activity by a watched lead",
        "description": "Any activity by a lead in the watch list “VIP leads” (lead ids or e-mail addresses).",
        "kind": "watch",
        "severity": "info",
        "conditions": [],
        "watch_list": "VIP leads",
        "watch_list_needed": "VIP leads",
        "group_wait_seconds": 30,
    },
    "campaign-abort-audit": {
        "name": "Smart Campaign aborted (audit)",
        "description": "A user aborted a Smart Campaign (User Audit stream).",
        "kind": "match",
        "severity": "warning",
        "conditions": [
            {"path": "stream", "op": "eq", "value": "audit"},
            {"path": "component_type", "op": "eq", "value": "Smart Campaign"},
            {"path": "action", "op": "eq", "value": "abort"},
        ],
        "group_wait_seconds": 10,
    },
    "campaign-abort-notification": {
        "name": "Campaign aborted or failed (notification)",
        "description": "Marketo notified a campaign abort or failure (Notification stream).",
        "kind": "match",
        "severity": "critical",
        "conditions": [
            {"path": "stream", "op": "eq", "value": "notification"},
            {"path": "type", "op": "in", "value": [NOTIFICATION + "campaign_abort", NOTIFICATION + "campaign_failure"]},
        ],
        "group_wait_seconds": 10,
    },
    "login-failure": {
        "name": "Marketo login failure",
        "description": "A login to Marketo failed (User Audit stream).",
        "kind": "match",
        "severity": "warning",
        "conditions": [
            {"path": "stream", "op": "eq", "value": "audit"},
            {"path": "action", "op": "eq", "value": "login failure"},
        ],
        "group_by": "user",
        "group_wait_seconds": 60,
    },
    "quota-80": {
        "name": "Web-service quota at 80 % or more",
        "description": "Marketo's daily API quota is at or over 80 %: integrations will soon be refused.",
        "kind": "match",
        "severity": "critical",
        "conditions": [
            {"path": "stream", "op": "eq", "value": "notification"},
            {"path": "subtype", "op": "eq", "value": "dailyQuota"},
            {"path": "data.eventAction.percent", "op": "ge", "value": 80},
        ],
        "group_by": "source",
        "group_wait_seconds": 0,
        "repeat_minutes": 0,
    },
    "delete-lead": {
        "name": "Lead deleted",
        "description": "Any Delete Lead activity (type 37).",
        "kind": "match",
        "severity": "info",
        "conditions": [{"path": "activity_type_id", "op": "eq", "value": 37}],
        "group_wait_seconds": 60,
    },
    "bounce-surge": {
        "name": "E-mail bounces surging",
        "description": "More than 100 hard or soft bounces in 5 minutes, per source.",
        "kind": "threshold",
        "severity": "warning",
        "conditions": [{"path": "activity_type_id", "op": "in", "value": [8, 27]}],
        "group_by": "source",
        "threshold": 100,
        "window_minutes": 5,
        "for_minutes": 0,
        "group_wait_seconds": 30,
    },
    "stream-silent": {
        "name": "Stream silent",
        "description": "No event at all from a source for 30 minutes (received time).",
        "kind": "absence",
        "severity": "warning",
        "conditions": [],
        "group_by": "source",
        "window_minutes": 30,
        "group_wait_seconds": 0,
    },
    "registration-disabled": {
        "name": "Source silent for 6 hours: Adobe may have disabled the registration",
        "description": (
            "Adobe disables a webhook registration after a day of failed deliveries and does not re-enable "
            "it by itself; a source this quiet should be checked in the Adobe Developer Console."
        ),
        "kind": "absence",
        "severity": "critical",
        "conditions": [],
        "group_by": "source",
        "window_minutes": 360,
        "group_wait_seconds": 0,
    },
    "signature-failures": {
        "name": "Signature failures",
        "description": "More than 5 requests refused for a bad or missing Adobe signature in 10 minutes.",
        "kind": "health",
        "metric": "signature",
        "severity": "critical",
        "group_by": "source",
        "threshold": 5,
        "window_minutes": 10,
        "group_wait_seconds": 0,
    },
    "unavailable-run": {
        "name": "A run of 503s",
        "description": "More than 20 requests answered 503 (Fluxo could not store) in 5 minutes: senders are retrying.",
        "kind": "health",
        "metric": "unavailable",
        "severity": "critical",
        "group_by": "source",
        "threshold": 20,
        "window_minutes": 5,
        "group_wait_seconds": 0,
    },
    "journal-stopped": {
        "name": "Adobe journal stopped",
        "description": (
            "Fluxo stopped reading a registration's journal (Adobe refused the credentials, or the URL is "
            "wrong): the reason is on the source's Setup page. Events older than 7 days cannot come back."
        ),
        "kind": "health",
        "metric": "journal",
        "severity": "critical",
        "group_by": "source",
        "threshold": 0,
        "window_minutes": 1,
        "group_wait_seconds": 0,
    },
    "registration-at-risk": {
        "name": "Adobe registration at risk, unstable or disabled",
        "description": (
            "Adobe's registration API (or Fluxo's own view: a long silence, the journal ahead of the webhook) says "
            "the registration is failing. Adobe disables it after a day of failed deliveries; the journal keeps "
            "its events 7 days."
        ),
        "kind": "health",
        "metric": "at_risk",
        "severity": "critical",
        "group_by": "source",
        "threshold": 0,
        "window_minutes": 1,
        "group_wait_seconds": 0,
    },
    "archive-missed": {
        "name": "A day of events not archived",
        "description": (
            "With FLUXO_ARCHIVE_DEST set, a day whose Parquet archive failed and is still not written a day "
            "after the day ended. Retention keeps the day meanwhile (FLUXO_ARCHIVE_FAILURE_DAYS decides for "
            "how long); the reason is in the admin's Archived days and the log."
        ),
        "kind": "health",
        "metric": "archive",
        "severity": "warning",
        "group_by": "source",
        "threshold": 0,
        "window_minutes": 60,
        "group_wait_seconds": 0,
    },
}
