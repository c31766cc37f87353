#!/usr/bin/env bash
# Start or stop the Kafka-compatible broker (Tansu, in-memory) the integration tests use.
#   .ci/tansu.sh start [PORT]  -> host:port is written to .ci-state/tansu.bootstrap, the pid to .ci-state/tansu.pid
#   .ci/tansu.sh stop
# The caller exports RELAYCHAIN_TEST_KAFKA="$(cat .ci-state/tansu.bootstrap)".
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
case "${1:-}" in
  start) exec "$python" -m tests.support.tansu start .ci-state ${2:+"$2"} ;;
  stop) exec "$python" -m tests.support.tansu stop .ci-state ;;
  *) echo "usage: $0 start [PORT] | stop" >&2; exit 2 ;;
esac
