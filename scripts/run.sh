#!/usr/bin/env bash
# make run: migrate, seed the demo history (once), start `auditlog serve`,
# and only once it listens print login links for a demo user, a maintainer
# and an admin; then wait on serve, passing Ctrl-C and SIGTERM on to it so
# it stops gracefully. When serve cannot start (the port is taken), its
# error is shown, no link is printed and this exits non-zero.
#
#   DATABASE_URL   the database (default: scripts/postgres.sh --database auditlog)
#   AUDITLOG_ADDR  where serve listens (default 127.0.0.1:8080)
#   AUDITLOG_SECRET signs the links; default: made once into .auditlog-secret
#   AUDITLOG_SIGNING_KEY the integrity key file (marks events, signs the
#                  checkpoints serve's workers make every minute); default:
#                  made once into .auditlog-signing-key by auditlog keygen
#   AUDITLOG_BIN   the binary (default bin/auditlog, which `make run` builds)
#   AUDITLOG_ROLES split: serve as a member of auditlog_writer, its workers
#                  as the owner (make run-roles); default: one role
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${AUDITLOG_BIN:-$root/bin/auditlog}
addr=${AUDITLOG_ADDR:-127.0.0.1:8080}
say() { printf 'run.sh: %s\n' "$*" >&2; }

url=$("$root/scripts/postgres.sh" --database auditlog)
export DATABASE_URL=$url
echo "== database: $url"
if [ -z "${AUDITLOG_SECRET:-}" ]; then
  [ -s "$root/.auditlog-secret" ] || head -c 32 /dev/urandom | base64 >"$root/.auditlog-secret"
  AUDITLOG_SECRET=$(cat "$root/.auditlog-secret")
fi
export AUDITLOG_SECRET
# The integrity key, before anything records: the demo's events are marked
# with it too.
made_key=""
if [ -z "${AUDITLOG_SIGNING_KEY:-}" ]; then
  AUDITLOG_SIGNING_KEY=$root/.auditlog-signing-key
  if [ ! -s "$AUDITLOG_SIGNING_KEY" ]; then
    rm -f "$AUDITLOG_SIGNING_KEY" # keygen never overwrites: an empty file left by a crash
    "$bin" keygen --out "$AUDITLOG_SIGNING_KEY" >/dev/null
    made_key=1
  fi
fi
export AUDITLOG_SIGNING_KEY
echo "== integrity key: $AUDITLOG_SIGNING_KEY (check proofs with: auditlog verify-proof PROOF --key $AUDITLOG_SIGNING_KEY)"

# The package-index vocabulary (the binary's default catalog) unless
# AUDITLOG_CATALOG names another.
export AUDITLOG_CATALOG=${AUDITLOG_CATALOG:-builtin:package-index}
"$bin" migrate up
if [ -n "$made_key" ] && [ -n "$("$bin" events --json --limit 1)" ]; then
  say "the database already holds events recorded without this integrity key: checkpoints leave them out and auditlog verify names them (drop the database for a clean start)"
fi
"$bin" demo

# serve's stdout comes through a fifo, so that its "auditlog serving on URL"
# line (printed once it listens) can be waited for; its stderr (logs,
# errors) goes straight to ours.
tmp=$(mktemp -d)
mkfifo "$tmp/serve.out"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# AUDITLOG_ROLES=split (make run-roles): serve's views and ingest connect
# as auditlog_web, a login member of auditlog_writer (insert and read
# only); its workers, like every destructive command, as the owner
# (AUDITLOG_ADMIN_DATABASE_URL).
serve_url=$DATABASE_URL
if [ "${AUDITLOG_ROLES:-}" = split ]; then
  psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_web') THEN
        CREATE ROLE auditlog_web LOGIN IN ROLE auditlog_writer;
      END IF; END \$\$" >/dev/null
  serve_url=$(DATABASE_URL=$DATABASE_URL python3 -c 'import os, urllib.parse as u; p = u.urlsplit(os.environ["DATABASE_URL"]); print(u.urlunsplit(p._replace(netloc="auditlog_web@" + p.netloc.rsplit("@", 1)[-1])))')
  echo "== split roles: serve's views as auditlog_web (auditlog_writer), its workers as the owner"
fi
AUDITLOG_ADMIN_DATABASE_URL=$DATABASE_URL DATABASE_URL=$serve_url "$bin" serve --addr "$addr" >"$tmp/serve.out" &
pid=$!
exec 3<"$tmp/serve.out"

base=""
while IFS= read -r line <&3; do
  printf '%s\n' "$line"
  case $line in
    "auditlog serving on "*) base=${line#auditlog serving on }; break ;;
  esac
done
if [ -z "$base" ]; then
  rc=0
  wait "$pid" || rc=$?
  pid=""
  say "auditlog serve stopped (exit status $rc) before listening on $addr; no login links printed"
  exit $((rc == 0 ? 1 : rc))
fi
# Whatever serve prints later still shows.
cat <&3 &

token() { "$bin" token --ttl 24h --login-url "$base" "$@"; }
echo "== open $base with one of these login links (valid 24 h):"
echo "   alice, a user:               $(token --user alice)"
echo "   erin, maintainer of tinyweb: $(token --user erin --maintains tinyweb)&next=/projects/tinyweb"
echo "   alice, owner of acme:        $(token --user alice --maintains fastjson --owns acme)&next=/orgs/acme"
echo "   root, an administrator:      $(token --user root --admin)"
echo "   the public:                  $base/projects/tinyweb  $base/orgs/acme  $base/orgs/acme/teams/release"

# Ctrl-C reaches serve from the terminal as well; SIGTERM sent to this
# script is passed on. Either way serve finishes its requests and jobs.
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
rc=0
while kill -0 "$pid" 2>/dev/null; do
  rc=0
  wait "$pid" || rc=$?
done
pid=""
exit "$rc"
