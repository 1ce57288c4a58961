# Fluxo: `make run` starts everything on embedded defaults; `make test` runs the suite.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv lint bench migrate

venv: $(STAMP)

# Re-install whenever requirements.txt changes.
$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput

# The web process serves http://127.0.0.1:8000 (Procfile): that is the public URL unless one is given,
# so alert messages link to their alert (the worker has no request to build the link from).
run: migrate
	$(PY) manage.py bootstrap_demo
	$(PY) manage.py install_rule_presets --demo
	FLUXO_PUBLIC_URL="$${FLUXO_PUBLIC_URL:-http://127.0.0.1:8000}" $(VENV)/bin/honcho start -f Procfile

test: venv
	bash tests/run.sh

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	bash bench/run.sh
