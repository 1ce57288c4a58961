"""The live status display (rich) and the JSON summary.

On a terminal: a table redrawn a few times a second, one row per stream and protocol of each
Munchkin ID. Elsewhere (under honcho, in CI): one plain line every PLAIN_EVERY seconds.
"""

import sys
import time

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

PLAIN_EVERY = 10.0
STATE_STYLES = {"active": "green", "unstable": "yellow", "retrying": "yellow", "paused": "red", "disabled": "red"}
COLUMNS = ("sent", "acknowledged", "retried", "queued", "dropped")
HEADERS = {"acknowledged": "acked"}
WIDE = 96  # columns needed to show the last error too


def table(all_stats, title="Fluxo sandbox Marketo", width=140):
    grid = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    for name, least in (("Munchkin ID", 11), ("stream", 15), ("state", 8)):
        grid.add_column(name, no_wrap=True, min_width=least)
    for name in COLUMNS:
        header = HEADERS.get(name, name)
        grid.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    with_error = width >= WIDE  # on a narrow terminal the numbers matter more
    if with_error:
        grid.add_column("last error", overflow="ellipsis", no_wrap=True, max_width=width - WIDE + 12)
    for stats in all_stats:
        state = Text(stats.state, style=STATE_STYLES.get(stats.state, ""))
        numbers = [str(getattr(stats, name)) for name in COLUMNS]
        dropped = Text(numbers[-1], style="red" if stats.dropped else "")
        stream = f"{stats.protocol} {stats.stream}"
        grid.add_row(stats.source, stream, state, *numbers[:-1], dropped, *([stats.last_error] if with_error else []))
    return grid


def plain_line(all_stats):
    total = {name: sum(getattr(stats, name) for stats in all_stats) for name in COLUMNS}
    states = ",".join(sorted({f"{s.protocol}/{s.stream}:{s.state}" for s in all_stats if s.state != "active"}))
    return (
        "simulate: " + " ".join(f"{name}={value}" for name, value in total.items()) + (f" [{states}]" if states else "")
    )


class Display:
    """Shows progress on stderr (stdout is kept for the JSON summary)."""

    def __init__(self, all_stats, enabled=True, stream=None):
        self.all_stats = all_stats
        self.console = Console(file=stream or sys.stderr)
        if not self.console.is_terminal:
            self.console = Console(file=stream or sys.stderr, width=140)  # logs: no terminal to fit
        self.enabled = enabled
        self.live = None
        self._last_plain = time.monotonic()

    def __enter__(self):
        if self.enabled and self.console.is_terminal:
            self.live = Live(
                table(self.all_stats, width=self.console.width),
                console=self.console,
                auto_refresh=False,
                transient=False,
            )
            self.live.__enter__()
        return self

    def refresh(self):
        if not self.enabled:
            return
        if self.live is not None:
            self.live.update(table(self.all_stats, width=self.console.width), refresh=True)
        elif time.monotonic() - self._last_plain >= PLAIN_EVERY:
            self._last_plain = time.monotonic()
            self.console.print(plain_line(self.all_stats), markup=False, highlight=False)

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.update(table(self.all_stats, width=self.console.width), refresh=True)
            self.live.__exit__(*exc)
        elif self.enabled:
            self.console.print(table(self.all_stats, width=self.console.width))
