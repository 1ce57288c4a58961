"""Screenshots of pages into the suite's artefacts (var/screenshots/, gitignored), at laptop and phone width."""

from pathlib import Path

from tests.processes import ROOT

SCREENSHOTS = ROOT / "var" / "screenshots"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def screenshot(page, name):
    """Save the whole page as var/screenshots/<name>.png; the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = Path(SCREENSHOTS / f"{name}.png")
    page.screenshot(path=str(path), full_page=True)
    return path
