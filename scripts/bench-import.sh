#!/usr/bin/env bash
# Times `relay contacts import` of ROWS generated contacts (default 1,000,000) into a scratch
# database on the local Postgres, then the idempotent re-import of the same file.
#
#   scripts/bench-import.sh [ROWS]
#
# Uses BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/relay_bench); the database is
# dropped and recreated. Builds the release binary into CARGO_TARGET_DIR (default target). Prints
# the machine, then each run's wall time, the CLI's summary and the load average after it.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
url=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/relay_bench}
relay=${CARGO_TARGET_DIR:-target}/release/relay

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "note: shared machine; Postgres runs on the same cores as the importer"
cargo build --release --locked --bin relay

csv=$(mktemp --suffix=.csv)
trap 'rm -f "$csv"' EXIT
python3 scripts/gen-contacts.py "$rows" > "$csv"

admin_url="${url%/*}/postgres"
db="${url##*/}"
psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
DATABASE_URL=$url $relay migrate --create-database
org=$(DATABASE_URL=$url $relay org create --name "Bench Org" --region CA)

for run in first re-import; do
    start=$(date +%s%N)
    summary=$(DATABASE_URL=$url $relay contacts import "$org" "$csv" 2>/dev/null)
    end=$(date +%s%N)
    awk -v run="$run" -v rows="$rows" -v ns="$((end - start))" -v s="$summary" \
        'BEGIN { printf "%s: %s rows in %.1f s (%s)\n", run, rows, ns / 1e9, s }'
    echo "  load average after it: $(cut -d' ' -f1-3 /proc/loadavg)"
done
