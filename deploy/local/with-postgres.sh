#!/usr/bin/env bash
# Run a command with HERALD_TEST_PG_DSN pointing at a PostgreSQL server: the one on
# 127.0.0.1:5432 when it answers, else a private throwaway cluster (initdb + pg_ctl)
# on a free port, stopped afterwards (HERALD_TEST_PG_PRIVATE=1 forces the private one).
set -euo pipefail
bash "$(dirname "$0")/ensure-deps.sh" --pg
if [ -n "${HERALD_TEST_PG_DSN:-}" ]; then exec "$@"; fi
if [ -z "${HERALD_TEST_PG_PRIVATE:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  export HERALD_TEST_PG_DSN="postgresql://postgres@127.0.0.1:5432/postgres"
  exec "$@"
fi
bindir=$(dirname "$(command -v pg_ctl 2>/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")
dir=$(mktemp -d /tmp/herald-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
  chown postgres "$dir"; as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
trap '"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null; rm -rf "$dir"' EXIT
export HERALD_TEST_PG_DSN="postgresql://postgres@127.0.0.1:$port/postgres"
"$@"
