"""Where the machine's CPU went during a phase: server processes, PostgreSQL, the bench client, the rest.

Read from /proc (Linux). PostgreSQL's share is its live processes plus what its exited backends
used (counted into the postmaster's cutime/cstime when it reaps them), so per-request connections
are not lost from the count. ``pg_db`` is the part that is the bench's own: the backends of its
database plus PostgreSQL's shared processes (WAL writer, checkpointer, …), without other sessions'
backends of other databases on the same server (their test suites), which count as "other".
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    """(utime + stime, cutime + cstime) of a process in seconds; zeros when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = text.rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])
    reaped = int(fields[13]) + int(fields[14])
    return own / TICK, reaped / TICK


def _machine_busy():
    """Seconds of CPU the whole machine spent not idle (all cores added)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


# A backend's title: "postgres: [cluster: ]user database host(port) state" ("[local]" on a socket).
_BACKEND_TITLE = re.compile(r"postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")


def database_of(pid):
    """The database a PostgreSQL backend serves, from its process title; None for a shared process."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    found = _BACKEND_TITLE.match(title)
    return found[1] if found else None


def children_of(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def peak_rss_mib(pid):
    """The process's peak resident memory so far (VmHWM), in MiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def postmaster_pid():
    """The local PostgreSQL's postmaster (the ``postgres`` process whose parent is not one), or None."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if (Path(f"/proc/{parent}/comm").read_text().strip()) != "postgres":
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


@dataclass
class Sample:
    machine: float
    server: float
    postgres: float
    client: float
    each_server: tuple = ()
    pg_db: float = 0.0


class Meter:
    """Snapshots of CPU seconds; ``share`` turns two of them into percent of one core."""

    def __init__(self, server_pids, postmaster, database=None):
        self.server_pids, self.postmaster, self.database = list(server_pids), postmaster, database

    def _postgres(self):
        """(all of PostgreSQL, the bench database's backends plus the shared processes)."""
        if self.postmaster is None:
            return 0.0, 0.0
        own, reaped = _stat(self.postmaster)
        everything, ours = own + reaped, own
        for pid in children_of(self.postmaster):
            used = _stat(pid)[0]
            everything += used
            if self.database is None or database_of(pid) in (None, self.database):
                ours += used
        return everything, ours + (reaped if self.database is None else 0.0)

    def sample(self):
        times = os.times()
        each = tuple(_stat(pid)[0] for pid in self.server_pids)
        postgres, pg_db = self._postgres()
        return Sample(
            machine=_machine_busy(),
            server=sum(each),
            postgres=postgres,
            client=times.user + times.system,
            each_server=each,
            pg_db=pg_db,
        )

    @staticmethod
    def share(before, after, elapsed):
        """Percent of one core each used between two samples (the machine has os.cpu_count() cores)."""
        names = ("machine", "server", "postgres", "client", "pg_db")
        used = {name: (getattr(after, name) - getattr(before, name)) / elapsed * 100 for name in names}
        # Other databases' backends (other sessions' tests on the same server) count as "other".
        used["other"] = max(0.0, used["machine"] - used["server"] - used["pg_db"] - used["client"])
        shares = {name: round(value) for name, value in used.items()}
        # Per daphne process: shows whether the kernel spread the connections over them.
        pairs = zip(before.each_server, after.each_server, strict=True)
        shares["each_server"] = [round((b - a) / elapsed * 100) for a, b in pairs]
        return shares
