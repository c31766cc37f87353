#!/usr/bin/env bash
# Start or stop the PostgreSQL 16 + pgvector server the integration tests use.
#   .ci/postgres.sh start   -> the DSN is written to .ci-state/postgres.dsn
#   .ci/postgres.sh stop
# The caller exports RELAYCHAIN_TEST_POSTGRES="$(cat .ci-state/postgres.dsn)".
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
case "${1:-}" in
  start|stop) exec "$python" -m tests.support.postgres "$1" .ci-state ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
