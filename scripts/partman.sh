#!/usr/bin/env bash
# Best effort, for `make bench`: make the pg_partman extension available on
# the server at $DATABASE_URL, so BenchmarkRetention* can also report
# ratio_vs_partman. Installs Debian's postgresql-<major>-partman as root
# with apt when the server lacks it; otherwise says why and exits 0 (the
# benchmarks then log that pg_partman was not measured).
set -uo pipefail
say() { printf 'partman.sh: %s\n' "$*" >&2; }
url=${DATABASE_URL:?DATABASE_URL must be set}
q() { psql "$url" -Atqc "$1" 2>/dev/null; }
if [ "$(q "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'")" = 1 ]; then
  exit 0
fi
major=$(q "SELECT current_setting('server_version_num')::int / 10000")
if [ -z "$major" ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "pg_partman is not on the server and cannot be installed here; ratio_vs_partman will be missing"
  exit 0
fi
say "installing Debian's postgresql-$major-partman for the pg_partman comparison"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$major-partman" >&2; then
  say "postgresql-$major-partman did not install; ratio_vs_partman will be missing"
fi
exit 0
