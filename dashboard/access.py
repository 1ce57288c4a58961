"""Who may see which source: defined by the receivers' app, shared with the alerts pages."""

from streams.access import visible_sources

__all__ = ["visible_sources"]
