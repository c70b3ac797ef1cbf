#!/usr/bin/env bash
# Finds, starts or installs a PostgreSQL server for auditlog and prints its
# connection URL (a server URL: tests and benchmarks create their own
# databases on it). Progress goes to stderr, the URL alone to stdout.
#
#   1. DATABASE_URL, when set, is used as it is.
#   2. Otherwise a PostgreSQL answering on 127.0.0.1:5432 that lets the
#      postgres role in without a password (as CI machines and most dev
#      set-ups do).
#   3. Otherwise a private cluster in .pgdata/ of this checkout (git-ignored),
#      on port $AUDITLOG_PG_PORT (54329) and its own socket, initialised from
#      the installed PostgreSQL 15+ binaries as a non-root OS user (initdb
#      refuses root: as root it runs as the postgres user), reused when it
#      is already running.
#   4. No PostgreSQL 15+ installed: as root with apt, install the Debian
#      package postgresql; otherwise print the command to run, and fail.
#
# With --database NAME (make run), the database NAME is created on the
# server when missing and the URL printed points at it; DATABASE_URL, when
# set, is still printed as it is.
set -euo pipefail

say() { printf 'postgres.sh: %s\n' "$*" >&2; }

dbname=""
if [ "${1:-}" = "--database" ]; then dbname=${2:?--database needs a name}; fi

if [ -n "${DATABASE_URL:-}" ]; then
  printf '%s\n' "$DATABASE_URL"
  exit 0
fi

# emit URL: print URL, or with --database the URL of that database,
# creating it first.
emit() {
  local url=$1
  if [ -n "$dbname" ]; then
    local psql=${bindir:+$bindir/psql}
    [ -x "${psql:-}" ] || psql=$(command -v psql)
    if [ -z "$("$psql" "$url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$dbname'")" ]; then
      say "creating database $dbname"
      "$psql" "$url" -qc "CREATE DATABASE \"$dbname\"" >&2
    fi
    url=${url/\/postgres\?//$dbname?}
  fi
  printf '%s\n' "$url"
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${AUDITLOG_PG_PORT:-54329}
system_url="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
private_url="postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable"

find_bindir() {
  local best="" v
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] || continue
    v=$(basename "$(dirname "$d")")
    [ "${v%%.*}" -ge 15 ] 2>/dev/null || continue
    if [ -z "$best" ] || [ "${v%%.*}" -gt "$(basename "$(dirname "$best")")" ]; then best=$d; fi
  done
  printf '%s' "$best"
}

answers() { # url: does a server there let us in?
  local psql=${bindir:+$bindir/psql}
  [ -x "${psql:-}" ] || psql=$(command -v psql || true)
  [ -n "$psql" ] || return 1
  PGCONNECT_TIMEOUT=3 "$psql" "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

bindir=$(find_bindir)

if answers "$system_url"; then
  emit "$system_url"
  exit 0
fi

if [ -z "$bindir" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "no PostgreSQL 15+ found; installing Debian's postgresql package"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bindir=$(find_bindir)
  fi
  if [ -z "$bindir" ]; then
    say "no PostgreSQL 15+ is installed and none answers on 127.0.0.1:5432."
    say "install it with:  sudo apt-get install -y postgresql"
    say "or point DATABASE_URL at a server:  export DATABASE_URL=postgres://user@host:5432/postgres"
    exit 1
  fi
fi

data="$root/.pgdata"
run_as=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
  # The postgres user must reach the checkout; if a parent folder shuts it
  # out (a checkout under /root), keep the cluster in /var/tmp instead.
  if ! su postgres -s /bin/sh -c "test -x '$root'" 2>/dev/null; then
    data="/var/tmp/auditlog-pgdata-$(printf '%s' "$root" | md5sum | cut -c1-12)"
    say "postgres cannot enter $root; keeping the private cluster in $data"
  fi
  run_as=(su postgres -s /bin/sh -c)
fi

as_owner() { # run a command line as the cluster's owner
  if [ ${#run_as[@]} -gt 0 ]; then "${run_as[@]}" "$*"; else sh -c "$*"; fi
}

if answers "$private_url"; then
  emit "$private_url"
  exit 0
fi

if [ ! -f "$data/PG_VERSION" ]; then
  say "initialising a private PostgreSQL cluster in $data"
  mkdir -p "$data"
  [ ${#run_as[@]} -gt 0 ] && chown postgres: "$data"
  chmod 700 "$data"
  as_owner "'$bindir/initdb' -D '$data' -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null"
fi
sock="$data/run"
mkdir -p "$sock"
[ ${#run_as[@]} -gt 0 ] && chown postgres: "$sock"
# A unix socket path must stay under ~100 bytes; a deep checkout uses TCP only.
[ ${#sock} -lt 90 ] || sock=""
say "starting the private cluster on 127.0.0.1:$port"
as_owner "'$bindir/pg_ctl' -D '$data' -l '$data/server.log' -w -t 60 \
  -o \"-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$sock'\" start >/dev/null" || {
  say "the private cluster did not start; its log:"; tail -n 20 "$data/server.log" >&2; exit 1; }
if ! answers "$private_url"; then
  say "the private cluster started but does not answer on $private_url"
  exit 1
fi
emit "$private_url"
