"""`pip install .`: a wheel with every app, its migrations, templates and static files, that works installed."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.processes import ROOT, bare_env

pytestmark = pytest.mark.slow

NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", ".*_cache", ".hypothesis"
)
USE_IT = """
import django
django.setup()
from django.contrib.staticfiles import finders
from django.template.loader import get_template
import fluxo, streams.migrations, alerts.tasks
print(fluxo.__file__)
print(get_template("base.html").origin.name)
print(finders.find("css/fluxo.css"))
print(get_template("admin/streams/source/setup.html").origin.name)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source") / "fluxo"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)  # the build writes build/ beside the sources
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("fluxo-*.whl")
    return path


def test_the_wheel_holds_every_app_with_its_migrations_templates_and_static_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [
        "fluxo/settings.py",
        "fluxo/celery.py",
        "fluxo/beat.py",
        "fluxo/templates/base.html",
        "fluxo/templates/alerts/email/alert.txt",
        "fluxo/static/css/fluxo.css",
        "fluxo/static/vendor/plotly.min.js",
        "streams/migrations/0001_initial.py",
        "streams/management/commands/add_source.py",
        "streams/simulator/__init__.py",
        "streams/templates/admin/streams/source/setup.html",
        "dashboard/migrations/0001_initial.py",
        "alerts/migrations/0001_initial.py",
        "alerts/templatetags/__init__.py",
    ]:
        assert name in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_its_requirements_are_the_pinned_runtime_ones(wheel):
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    required = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.startswith("Django") and "==5.2" in r for r in required)
    assert all("==" in r for r in required)
    assert not any(r.startswith(("pytest", "ruff", "playwright", "hypothesis")) for r in required)


def test_installed_away_from_the_checkout_it_finds_its_templates_and_static_files(wheel, tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    env = {**bare_env(tmp_path / "var"), "PYTHONPATH": str(site), "DJANGO_SETTINGS_MODULE": "fluxo.settings"}
    used = subprocess.run(
        [sys.executable, "-c", USE_IT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert used.returncode == 0, used.stderr
    lines = used.stdout.split()
    assert all(line.startswith(str(site)) for line in lines), lines
