#!/usr/bin/env bash
# Start / stop a private redis-server for the distributed search tests (loopback only, no persistence).
#   bash .ci/redis.sh start   → installs redis-server (Debian package) if missing, starts it, prints the URL
#   bash .ci/redis.sh stop    → stops the server started by `start`
# The tests in test/distributed start their own private server on a random loopback port (they only need
# redis-server on PATH); this server is for running a search and workers by hand against the same setup.
# Without redis-server (no apt, no network) `start` warns and exits 0: those tests then say why they were skipped.
set -uo pipefail
cd "$(dirname "$0")"
PORT="${DSA_PRUNE_REDIS_PORT:-6391}"
DIR="${TMPDIR:-/tmp}/dsa-prune-ci-redis"
PIDFILE="$DIR/redis.pid"

case "${1:-}" in
  start)
    if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
        || echo "warning: could not install redis-server" >&2
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
      echo "warning: redis-server not available; the distributed search tests will be skipped" >&2
      exit 0
    fi
    mkdir -p "$DIR"
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "redis://127.0.0.1:$PORT"; exit 0
    fi
    redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no --protected-mode yes \
      --dir "$DIR" --daemonize yes --pidfile "$PIDFILE" --logfile "$DIR/redis.log" >/dev/null
    for _ in $(seq 1 50); do
      if redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null | grep -q PONG; then
        echo "redis://127.0.0.1:$PORT"; exit 0
      fi
      sleep 0.1
    done
    echo "warning: redis-server did not answer on 127.0.0.1:$PORT (see $DIR/redis.log)" >&2
    exit 0
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      pid="$(cat "$PIDFILE")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$PIDFILE"
    fi
    exit 0
    ;;
  *)
    echo "usage: bash .ci/redis.sh start|stop" >&2
    exit 2
    ;;
esac
