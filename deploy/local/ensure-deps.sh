#!/usr/bin/env bash
# Install the servers Herald runs on when they are absent (Debian/Ubuntu, apt).
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have nats-server || need+=(nats-server)
have redis-server || need+=(redis-server)
# make bench: wrk is the load generator of the tracking endpoint figures
if [ "${1:-}" = "--bench" ]; then
  have wrk || need+=(wrk)
  have bearerbox || need+=(kannel)  # Kannel, measured beside Herald (bench/bench_kannel.py)
fi
# make test: promtool (Debian's prometheus package) runs the alert rules' unit tests
if [ "${1:-}" = "--test" ]; then
  have promtool || need+=(prometheus)
  have pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
fi
if [ "${HERALD_TEST_NEEDS_PG:-}" = 1 ] || [ "${1:-}" = "--pg" ]; then
  have pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
fi
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing: ${need[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
