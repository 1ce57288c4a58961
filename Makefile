# Fluxo: `make run` starts everything on embedded defaults; `make test` runs the suite.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv lint bench bench-storage migrate

venv: $(STAMP)

# Re-install whenever a requirements file changes: the runtime ones and those of tests and tooling.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput

# The web process serves http://127.0.0.1:8000 (Procfile): that is the public URL unless one is given,
# so alert messages link to their alert (the worker has no request to build the link from).
run: migrate
	$(PY) manage.py bootstrap_demo
	$(PY) manage.py install_rule_presets --demo
	FLUXO_PUBLIC_URL="$${FLUXO_PUBLIC_URL:-http://127.0.0.1:$${FLUXO_PORT:-8000}}" $(VENV)/bin/honcho start -f Procfile

test: venv
	bash tests/run.sh

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	bash bench/run.sh

# Issue 10: the partitioned storage at 20M rows (its own databases fluxo_benchst_*; BENCH_KEEP=1 keeps the filled one).
bench-storage: venv
	bash bench/run.sh --storage
