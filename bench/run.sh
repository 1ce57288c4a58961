#!/usr/bin/env bash
# `make bench`: the ingest benchmark on a dedicated PostgreSQL database, created here and dropped after.
#   PGURL   the PostgreSQL server (default postgres://postgres@127.0.0.1:5432); the database is fluxo_bench
#   REDIS_URL  default redis://127.0.0.1:6379/15 (announcements go there; nothing else is touched)
#   BENCH_DB   the database's name (default fluxo_bench; another name lets two benches share a server)
#   BENCH_VAR  where results, logs and the source go (default var/bench)
# Extra arguments go to bench/ingest.py (e.g. --workers 2 --prefill 0 --duration 5).
# `make bench-storage` / `bash bench/run.sh --storage [options]`: bench/storage.py instead (issue 10: the
#   partitioned storage at 20M rows; it creates and drops its own databases fluxo_benchst_*; BENCH_KEEP=1
#   keeps the filled one). Options: `bash bench/run.sh --storage --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
STORAGE=0
if [ "${1:-}" = "--storage" ]; then STORAGE=1; shift; fi
case " $* " in *" --help "*|*" -h "*) [ $STORAGE = 1 ] && exec "$PY" bench/storage.py --help; exec "$PY" bench/ingest.py --help ;; esac
PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432}"
DB="${BENCH_DB:-fluxo_bench}"
VAR="${BENCH_VAR:-$PWD/var/bench}"
mkdir -p "$VAR"
rm -f "$VAR/server.log"

export DATABASE_URL="$PGURL/$DB"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
export SECRET_KEY="${SECRET_KEY:-bench-only-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}"
export FLUXO_VAR_DIR="$VAR"
export FLUXO_LOG_LEVEL=WARNING
export ALLOWED_HOSTS=127.0.0.1,localhost
if [ $STORAGE = 1 ]; then
  export PGURL DATABASE_URL="$PGURL/fluxo_benchst_full" FLUXO_VAR_DIR="$VAR-storage"
  mkdir -p "$FLUXO_VAR_DIR"
  exec "$PY" bench/storage.py --var "$FLUXO_VAR_DIR" "$@"
fi

psql_admin() { "$PY" - "$PGURL/postgres" "$1" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
PY
}

drop_db() { psql_admin "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; }
trap drop_db EXIT

drop_db
psql_admin "CREATE DATABASE $DB"
"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py add_source Bench --munchkin-id 123-ABC-456 --adobe-client-id bench_client --json > "$VAR/source.json"

"$PY" bench/ingest.py --source-json "$VAR/source.json" --dsn "$DATABASE_URL" --results "$VAR/results.json" \
  --log "$VAR/server.log" "$@"
