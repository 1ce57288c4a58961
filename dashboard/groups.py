"""Names shared by the live machinery: the socket path, group names, message types.

Group names are made here and nowhere else. Each web process coalesces announced batches for its
own sockets only (dashboard.tick) and keeps its groups in memory (dashboard.broadcast), so a group
belongs to one process; its name carries a token of that process all the same, so that a name seen
in a log says whose it is.
"""

import os
import secrets

SOCKET_PATH = "/ws/live/"
# The Redis channel on which a change of who sees which source is announced (dashboard.signals); each
# process's tick hears it and has its sockets check their sources again.
SOURCES_CHANGED_CHANNEL = "fluxo:dashboard:sources-changed"
# Message types on the socket, as the browser sees them.
HELLO = "live.hello"
DELTA_FRAME = "live.delta"
TAIL_FRAME = "live.tail"
HEALTH_FRAME = "live.health"
SOURCES_FRAME = "live.sources"
ALERTS_FRAME = "live.alerts"

PROCESS = f"{os.getpid()}x{secrets.token_hex(4)}"


def source_group(source_id):
    """The group of this process's sockets that watch one source."""
    return f"fluxo.live.{PROCESS}.source.{int(source_id)}"


def tail_group(source_id, filter_key):
    """The group of this process's sockets that tail one source's activities through one filter."""
    return f"fluxo.live.{PROCESS}.tail.{int(source_id)}.{filter_key}"


def alerts_group(source_id):
    """The group of this process's sockets that follow only the alerts of one source (the alerts page)."""
    return f"fluxo.live.{PROCESS}.alerts-of.{int(source_id)}"


def unscoped_alerts_group():
    """The group of this process's overview sockets whose users may see alerts of no single source."""
    return f"fluxo.live.{PROCESS}.alerts"
