"""The login throttle: django-axes, set up for Fluxo's two login pages (/accounts/login/, /admin/login/).

Two limits, both counted over the cool-off window (``AXES_COOLOFF_TIME``):

- a (user name, client address) pair is locked after ``AXES_FAILURE_LIMIT`` failures. Only that pair:
  somebody guessing ``admin``'s password elsewhere cannot lock ``admin`` out of their own address;
- a client address is locked after ``FLUXO_LOGIN_ADDRESS_FAILURE_LIMIT`` failures over every name it
  tried, so one address cannot sweep many users a few guesses each.

The client address is the one ``fluxo.proxies`` believes (``AXES_CLIENT_IP_CALLABLE``). Axes counts
both with ``AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]``, in that order,
and has one limit; :class:`LoginThrottle` gives the address its own. A lockout ends by itself after
the cool-off, or when an admin deletes it (admin: *Axes → Access attempts*; ``manage.py axes_reset``,
``axes_reset_username``, ``axes_reset_ip``, ``axes_reset_ip_username``).
"""

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.shortcuts import render


def _failures(attempts):
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


class LoginThrottle(AxesDatabaseHandler):
    """Axes' database handler with a separate, higher limit for a client address over all names."""

    def failure_counts(self, request, credentials=None):
        """``(failures of this name from this address, failures from this address)`` in the window."""
        pair, address = self.get_user_attempts(request, credentials)
        return _failures(pair), _failures(address)

    def get_failures(self, request, credentials=None):
        # Axes compares this with its one limit: an address over its own limit counts as the pair's limit.
        pair, address = self.failure_counts(request, credentials)
        if address >= settings.FLUXO_LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(pair, get_failure_limit(request, credentials))
        return pair

    def reset_user_attempts(self, request, credentials=None):
        """After a successful login, forget that name's failures from that address, and no others.

        Axes would delete every attempt the lockout parameters match, the address's too: an attacker
        with an account of their own could then wipe their address's count by logging in.
        """
        username = get_client_username(request, credentials)
        count, _ = AccessAttempt.objects.filter(username=username, ip_address=request.axes_ip_address).delete()
        return count


def locked_out(request, *args, **kwargs):
    """The login page again (429), saying that log-in is locked, for how long, and who can lift it.

    Axes calls this with ``(request, response, credentials)`` from its synchronous middleware and
    ``(request, credentials)`` from its asynchronous one; only the request is used.
    """
    username = request.POST.get("username", "")
    pair, _address = LoginThrottle().failure_counts(request, {"username": username})
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "locked_out": "name" if pair >= get_failure_limit(request, None) else "address",
        "lockout_minutes": int(get_cool_off(request).total_seconds() // 60),
        "username": username,
        "next": request.POST.get("next", request.GET.get("next", "")),
    }
    return render(request, "registration/login.html", context, status=429)
