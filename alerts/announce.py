"""Alerts announce their changes over Redis, after commit, for the live dashboards to forward.

``dashboard`` subscribes to ALERT_CHANNEL (as it does to the receivers' batches): neither app imports
the other's tasks, and a lost announcement only delays the dashboard until its next snapshot.
"""

import orjson

from streams.announce import publish

ALERT_CHANNEL = "fluxo:alerts"


def message(alert):
    """What a dashboard shows of an alert (the text in it is untrusted: escape it where shown)."""
    return {
        "id": alert.pk,
        "rule_id": alert.rule_id,
        "rule": getattr(alert.rule, "name", ""),
        "severity": alert.severity,
        "state": alert.state,
        "source_id": alert.source_id,
        "labels": alert.labels,
        "summary": alert.summary,
        "hits": alert.hits,
        "started_at": alert.started_at.isoformat() if alert.started_at else None,
        "fired_at": alert.fired_at.isoformat() if alert.fired_at else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "acknowledged": alert.acknowledged_at is not None,
    }


def alerts_changed(alerts):
    alerts = list(alerts)
    if alerts:
        publish(ALERT_CHANNEL, orjson.dumps({"alerts": [message(a) for a in alerts]}))
