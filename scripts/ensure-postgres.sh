#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests of the PostgreSQL
# storage path (installing Debian's postgresql first if needed) and prints
# its URL on stdout. Idempotent: a server it started earlier is reused.
#
# The server is the tests' own: its data lives under $CHORUS_PG_DIR
# (default /var/cache/chorus-postgres), it listens on 127.0.0.1 only, on
# $CHORUS_PG_PORT (default 55432, away from a system server's 5432), and
# trusts local connections, so never point it at real data.
set -euo pipefail

dir="${CHORUS_PG_DIR:-/var/cache/chorus-postgres}"
port="${CHORUS_PG_PORT:-55432}"
db=chorus_test

log() { printf '%s\n' "$*" >&2; }

bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(bindir)" ] || ! [ -x "$(bindir)/postgres" ]; then
  log "installing postgresql from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # The package's own cluster is not used; skip creating it.
  mkdir -p /etc/postgresql-common
  if ! grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
    echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
  fi
  apt-get install -y -qq postgresql >&2
fi
bin="$(bindir)"

# PostgreSQL refuses to run as root: as root, run it as `postgres`.
if [ "$(id -u)" = 0 ]; then
  owner=postgres
  as_owner() { runuser -u postgres -- "$@"; }
else
  owner="$(id -un)"
  as_owner() { "$@"; }
fi

mkdir -p "$dir"
chown "$owner" "$dir"
if ! [ -f "$dir/data/PG_VERSION" ]; then
  log "creating a test cluster in $dir/data"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >&2
fi
if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  log "starting PostgreSQL on 127.0.0.1:$port"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2
fi
if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" postgres | grep -q 1; then
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db" >&2
fi
echo "postgres://postgres@127.0.0.1:$port/$db"
