#!/usr/bin/env bash
# The test suite as `make test` runs it.
#  - DATABASE_URL set: one run against it.
#  - Not set: a run on the embedded defaults (SQLite + embedded Redis), then a second run against
#    the local PostgreSQL on 127.0.0.1:5432 when one answers (skipped, saying so, when none does),
#    with the local Redis on 127.0.0.1:6379 when one answers, else the embedded one
#    (FLUXO_EMBEDDED_REDIS=1: PostgreSQL without REDIS_URL is otherwise refused).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export FLUXO_VAR_DIR="${FLUXO_VAR_DIR:-$PWD/var/test}"

# Browser tests drive Debian's chromium; install it when missing and we may (root with apt).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "!! could not install chromium: browser tests will be skipped"
  else
    echo "!! chromium is missing and cannot be installed here: browser tests will be skipped"
  fi
fi

# The deployment kit's test runs Debian's nginx on deploy/nginx (nginx -t, then the site for real).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null) \
    || echo "!! could not install nginx: the deployment kit's nginx tests will be skipped"
fi

# The metrics tests run Debian's prometheus (the server and promtool); install it when missing and we may.
if ! command -v promtool >/dev/null 2>&1 || [ ! -x /usr/bin/prometheus ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian's prometheus for the metrics tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
      || echo "!! could not install prometheus: the Prometheus scrape tests will be skipped"
  else
    echo "!! prometheus is missing and cannot be installed here: the Prometheus scrape tests will be skipped"
  fi
fi

# PostgreSQL without REDIS_URL refuses the embedded Redis: take the local Redis when one answers
# PING on 127.0.0.1:6379, else allow the embedded one (FLUXO_EMBEDDED_REDIS=1).
# Sets REDIS_CHOICE to what it chose (not in a subshell: it exports).
redis_for_postgres() {
  if [ -n "${REDIS_URL:-}" ]; then
    REDIS_CHOICE="REDIS_URL"
  elif "$PY" -c "import redis; redis.Redis(host='127.0.0.1', port=6379, socket_timeout=2).ping()" 2>/dev/null; then
    export REDIS_URL="redis://127.0.0.1:6379/0"
    REDIS_CHOICE="the local Redis (127.0.0.1:6379)"
  else
    export FLUXO_EMBEDDED_REDIS=1
    REDIS_CHOICE="the embedded Redis (no Redis answers on 127.0.0.1:6379)"
  fi
}

if [ -n "${DATABASE_URL:-}" ]; then
  case "$DATABASE_URL" in postgres*) redis_for_postgres; echo "== suite on DATABASE_URL and $REDIS_CHOICE" ;; esac
  exec "$PY" -m pytest "$@"
fi

echo "== suite on the embedded defaults (SQLite + embedded Redis)"
"$PY" -m pytest "$@"

if "$PY" - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
except OSError:
    sys.exit(1)
PY
then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/fluxo"
  redis_for_postgres
  echo "== suite on the local PostgreSQL (127.0.0.1:5432) and $REDIS_CHOICE"
  "$PY" -m pytest "$@"
else
  echo "== SKIPPED the PostgreSQL run: nothing answers on 127.0.0.1:5432"
fi
