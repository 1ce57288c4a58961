"""How a message leaves Fluxo: e-mail over SMTP, Slack (incoming webhook or bot token), a generic JSON webhook.

``send()`` returns Sent or raises SendError, which says whether trying again later can help
(``transient``), how long the far end asked us to wait (``retry_after``), and whether the destination
itself is broken and should be turned off (``disable``). The caller (alerts.delivery) decides what to
do with that; nothing here touches the database.

URLs that users type (a Slack incoming webhook, a webhook URL) go through fluxo.urlguard: no private or
loopback address unless FLUXO_ALLOW_PRIVATE_URLS, no redirect followed. The Slack Web API base is an
operator setting (FLUXO_SLACK_API_URL) and is trusted like ADOBE_IO_KEY_BASE_URL, but redirects are not
followed there either (a redirect would carry the bot token away). Slack webhook URLs and bot tokens
are secrets: they never appear in a detail, a log line or an exception message.
"""

import http.client
import json
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils import timezone

from alerts.models import Destination
from fluxo import urlguard

TIMEOUT = 10
MAX_BODY = 64 * 1024
MAX_RETRY_AFTER = 24 * 3600
USER_AGENT = "Fluxo-Alerts/1"

# Slack error codes (webhook bodies and Web API "error") that mean the destination no longer works:
# it is turned off and shown as such, until an admin fixes and re-enables it.
SLACK_DISABLING = {
    "invalid_token",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_service",
    "channel_not_found",
    "channel_is_archived",
    "is_archived",
    "not_in_channel",
    "team_disabled",
}
SLACK_TRANSIENT = {"ratelimited", "fatal_error", "internal_error", "service_unavailable", "request_timeout"}
# chat.update cannot edit the firing message: post the resolved message as a new one instead.
SLACK_CANNOT_EDIT = {"message_not_found", "cant_update_message", "edit_window_closed", "msg_too_long"}


@dataclass
class Sent:
    status_code: int | None
    detail: str
    external_id: str = ""


class SendError(Exception):
    """A send that did not go through. ``detail`` is safe to store and show: it carries no secret."""

    def __init__(self, detail, status_code=None, transient=True, retry_after=None, disable=False, code=""):
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.transient = transient
        self.retry_after = retry_after
        self.disable = disable
        self.code = code  # Slack's error code, when it gave one


def send(destination, message, previous=""):
    """Send ``message`` (alerts.messages.Message) to ``destination``.

    ``previous`` is the external id of the message this one follows (Slack bot: the firing message a
    resolved message edits in place). Returns Sent; raises SendError.
    """
    if destination.kind == Destination.Kind.EMAIL:
        return send_email(destination, message)
    if destination.kind == Destination.Kind.SLACK:
        if destination.slack_bot_token and destination.slack_channel:
            return send_slack_bot(destination, message, previous)
        return send_slack_webhook(destination, message)
    if destination.kind == Destination.Kind.WEBHOOK:
        return send_webhook(destination, message)
    raise SendError(f"unknown destination kind {destination.kind!r}", transient=False)


# --- E-mail ------------------------------------------------------------------------------------------------


def send_email(destination, message):
    recipients = destination.recipients()
    if not recipients:
        raise SendError("the destination has no recipients", transient=False)
    mail = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        to=recipients,
        connection=get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or TIMEOUT),
        headers={"Auto-Submitted": "auto-generated", "X-Fluxo-Status": message.status},
    )
    mail.attach_alternative(message.html, "text/html")
    try:
        mail.send()
    except smtplib.SMTPRecipientsRefused as exc:
        raise _refused(exc) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise SendError(f"SMTP authentication failed ({exc.smtp_code})", exc.smtp_code, transient=False) from None
    except smtplib.SMTPResponseException as exc:
        temporary = 400 <= exc.smtp_code < 500
        raise SendError(f"SMTP error {exc.smtp_code}: {_smtp_text(exc.smtp_error)}", exc.smtp_code, temporary) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP server unreachable: {_os_error(exc)}") from None
    return Sent(None, f"handed to the SMTP server for {len(recipients)} recipient(s)")


def _refused(exc):
    codes = [code for code, _text in exc.recipients.values()]
    temporary = bool(codes) and all(400 <= code < 500 for code in codes)
    text = "; ".join(f"{addr}: {code} {_smtp_text(msg)}" for addr, (code, msg) in exc.recipients.items())
    return SendError(f"recipients refused: {text}"[:500], max(codes, default=None), transient=temporary)


def _smtp_text(raw):
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]


# --- Slack ---------------------------------------------------------------------------------------------------


def send_slack_webhook(destination, message):
    """POST the Block Kit message to an incoming webhook. Slack answers 200 "ok", or an error code as text."""
    try:
        status, _headers, body = _post(destination.url, message.slack, guarded=True, secrets=[destination.url])
    except SendError as exc:
        # 404/410 already turn it off; so do 403 invalid_token, no_service and the like.
        exc.disable = exc.disable or (not exc.transient and exc.code in SLACK_DISABLING)
        raise
    return Sent(status, f"Slack answered {status} {_text(body, [destination.url])[:50]}".strip())


def send_slack_bot(destination, message, previous=""):
    """chat.postMessage; a resolved message edits the firing one in place (chat.update) when it can."""
    payload = {"text": message.slack["text"], "blocks": message.slack["blocks"]}
    if previous and message.status == "resolved" and "/" in previous:
        channel, ts = previous.split("/", 1)
        try:
            _slack_api(destination, "chat.update", {"channel": channel, "ts": ts, **payload})
        except SendError as exc:
            if exc.code not in SLACK_CANNOT_EDIT:
                raise
        else:
            return Sent(200, "edited the firing message in place", external_id=previous)
    answer = _slack_api(destination, "chat.postMessage", {"channel": destination.slack_channel, **payload})
    external_id = f"{answer.get('channel', destination.slack_channel)}/{answer.get('ts', '')}"
    return Sent(200, "posted with chat.postMessage", external_id=external_id[:200])


def _slack_api(destination, method, payload):
    """Call a Slack Web API method; its JSON answer when ok, SendError otherwise."""
    token = destination.slack_bot_token
    url = f"{settings.FLUXO_SLACK_API_URL.rstrip('/')}/{method}"
    headers = {"Authorization": f"Bearer {token}"}
    status, _headers, body = _post(url, payload, guarded=False, secrets=[token], headers=headers)
    try:
        answer = json.loads(body)
    except ValueError:
        raise SendError(f"Slack {method} answered {status} with something not JSON", status) from None
    if not isinstance(answer, dict):
        raise SendError(f"Slack {method} answered {status} with something unexpected", status)
    if answer.get("ok"):
        return answer
    error = str(answer.get("error", "unknown_error"))[:80]
    raise SendError(
        f"Slack {method}: {error}",
        status,
        transient=error in SLACK_TRANSIENT,
        disable=error in SLACK_DISABLING,
        code=error,
    )


# --- Generic webhook -------------------------------------------------------------------------------------------


def send_webhook(destination, message):
    status, _headers, _body = _post(destination.url, message.webhook, guarded=True, secrets=[destination.url])
    return Sent(status, f"the webhook answered {status}")


# --- HTTP -------------------------------------------------------------------------------------------------------


def _plain_opener():
    # For the operator's Slack API base: no redirect handler (a 3xx is an error), no proxies.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ):
        opener.add_handler(handler)
    return opener


_PLAIN = _plain_opener()


def _post(url, payload, guarded, secrets, headers=None):
    """POST JSON; (status, headers, body) of a 2xx answer, SendError for anything else."""
    if not url:
        raise SendError("the destination has no URL", transient=False)
    body = json.dumps(payload, ensure_ascii=False).encode()
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (http(s) only: see above)
    request.add_header("Content-Type", "application/json; charset=utf-8")
    request.add_header("User-Agent", USER_AGENT)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        response = urlguard.open_url(request, TIMEOUT) if guarded else _PLAIN.open(request, timeout=TIMEOUT)
        with response:
            return response.status, response.headers, response.read(MAX_BODY)
    except urlguard.UnsafeURL as exc:
        # A name that does not resolve may be a DNS hiccup; a private address or a bad URL stays so.
        transient = str(exc).startswith("cannot resolve")
        raise SendError(f"URL refused: {_scrub(str(exc), secrets)}", transient=transient) from None
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, secrets) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise SendError(f"could not reach the server: {_scrub(_os_error(exc), secrets)}") from None


def _http_error(exc, secrets):
    status = exc.code
    try:
        text = _text(exc.read(MAX_BODY), secrets)
    except (OSError, http.client.HTTPException):
        text = ""
    finally:
        exc.close()
    code = text.split()[0][:80] if text and " " not in text.strip()[:80] else ""
    detail = f"answered {status}" + (f": {text[:200]}" if text else "")
    if status == 429 or status == 408 or status >= 500:
        return SendError(detail, status, retry_after=retry_after(exc.headers), code=code)
    if 300 <= status < 400:
        return SendError(f"answered {status}: redirects are not followed", status, transient=False)
    return SendError(detail, status, transient=False, disable=status in (404, 410), code=code)


def retry_after(headers):
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date), or None."""
    raw = (headers or {}).get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return min(int(raw), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0, min(int((moment - timezone.now()).total_seconds()) + 1, MAX_RETRY_AFTER))


def _text(body, secrets):
    return _scrub(" ".join(body.decode("utf-8", "replace").split())[:300], secrets)


def _scrub(text, secrets):
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    return text


def _os_error(exc):
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, str):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{exc.__class__.__name__}: {exc}"[:200]
