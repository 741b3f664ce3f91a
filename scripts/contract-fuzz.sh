#!/usr/bin/env bash
# Contract fuzzing: runs a pinned schemathesis against the served debug binary with the webhook
# routes of docs/openapi.yaml, every phase (examples, coverage, fuzzing) and every check, once
# with a valid tool secret and once with a wrong one. Any failure, schema error or warning fails
# the script. The management API's paths (`/admin/`, another listener) are fuzzed by
# scripts/admin-fuzz.sh.
#
# The server runs on the embedded SQLite store and the in-process cache in a temporary
# directory: the HTTP adapter (what the contract describes) is the same whatever the store, this
# needs nothing but the binary, and each run starts from a fresh database. The store adapters
# have their own conformance suites on SQLite and Postgres in `just test`.
#
# Environment: CONTRACT_FUZZ_MAX_EXAMPLES (fuzzed cases per operation; 1500 takes about two
# minutes for both runs on two cores), CONTRACT_FUZZ_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${CONTRACT_FUZZ_MAX_EXAMPLES:-1500}
SEED=${CONTRACT_FUZZ_SEED:-20251202}
VENV=target/contract-fuzz/venv
RELAY=target/debug/relay
# Hypothesis keeps caches (Unicode tables) in ./.hypothesis otherwise.
export HYPOTHESIS_STORAGE_DIRECTORY=target/contract-fuzz/hypothesis

log() { printf '\n== %s\n' "$*"; }

# --- schemathesis, pinned, in a venv reused across runs --------------------------------------
if ! "$VENV/bin/st" --version 2>/dev/null | grep -qx "st, version ${SCHEMATHESIS_VERSION}"; then
    log "installing schemathesis ${SCHEMATHESIS_VERSION} into ${VENV}"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
fi

# --- the binary: the one `just test` built; built here only when missing ---------------------
# (`cargo build` after `cargo test` would recompile with other features for nothing.)
if [[ ! -x $RELAY ]]; then
    log "building ${RELAY}"
    cargo build --locked --bin relay
fi
if [[ -n $(find crates migrations -newer "$RELAY" -type f -print -quit) ]]; then
    echo "warning: sources changed since ${RELAY} was built; run \`cargo build --bin relay\` to fuzz them" >&2
fi

# --- a server on a fresh embedded store -------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/relay-contract-fuzz.XXXXXX")
server=""
cleanup() {
    if [[ -n $server ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Only what this run sets reaches the binary: no DATABASE_URL, REDIS_URL or OTLP endpoint of the
# calling shell (`just test` exports some).
relay_env=(
    env -i PATH="$PATH" HOME="${HOME:-/root}"
    DATABASE_URL="sqlite://${work}/relay.db"
    WEBHOOK_SECRET_KEY="$(head -c 32 /dev/urandom | base64)"
    LOG_FORMAT=json
)
relay() { "${relay_env[@]}" RUST_LOG=warn "$RELAY" "$@"; }

log "seeding an organization, a tool secret, a webhook secret and a contact"
org=$(relay org create --name "Contract Org" --region CA)
token=$(relay secret add "$org" 2>/dev/null)
printf 'wsec_contract_fuzz_%s' "$org" | relay org set-webhook-secret "$org" >/dev/null
printf 'first_name,last_name,phone\nAlex,Morgan,(416) 555-0100\n' >"$work/contacts.csv"
relay contacts import "$org" "$work/contacts.csv" >/dev/null 2>&1

# Failed authentication is throttled per client address, and every request of the wrong-token
# run fails it: a budget this large keeps the fuzzer from being answered 429 everywhere (429 is
# documented and unit-tested; here it would hide every other answer). No drain on exit.
"${relay_env[@]}" RUST_LOG=info LISTEN_ADDR=127.0.0.1:0 \
    AUTH_FAILURES_PER_MINUTE=1000000 AUTH_FAILURE_BURST=1000000 SHUTDOWN_DRAIN_SECONDS=0 \
    "$RELAY" serve >"$work/stdout.log" 2>"$work/server.log" &
server=$!

listen_addr=""
for _ in $(seq 1 100); do
    listen_addr=$(python3 -c '
import json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    addr = event.get("listen_addr") or event.get("fields", {}).get("listen_addr")
    if addr:
        print(addr)
        break
' "$work/server.log")
    [[ -n $listen_addr ]] && break
    if ! kill -0 "$server" 2>/dev/null; then
        cat "$work/server.log" >&2
        echo "relay serve exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z $listen_addr ]]; then
    cat "$work/server.log" >&2
    echo "relay serve did not log its listen_addr within 10 s" >&2
    exit 1
fi
base="http://${listen_addr}"
echo "relay serving on ${base} (organization ${org})"

# --- the two runs ------------------------------------------------------------------------------
fuzz() {
    local label=$1 authorization=$2 config=$3
    log "schemathesis, ${label}"
    if ! kill -0 "$server" 2>/dev/null; then
        echo "relay serve is not running" >&2
        return 1
    fi
    "$VENV/bin/st" --config-file "$config" --no-color \
        run docs/openapi.yaml \
        --url "$base" \
        --exclude-path-regex '^/admin/' \
        --phases examples,coverage,fuzzing \
        --checks all \
        --mode all \
        --seed "$SEED" \
        --max-examples "$MAX_EXAMPLES" \
        --generation-database none \
        --workers 1 \
        --request-timeout 10 \
        -H "Authorization: ${authorization}"
}

status=0
fuzz "valid tool secret" "Bearer ${token}" scripts/schemathesis.toml || status=1

fuzz "wrong tool secret" "Bearer wrong-${token}" scripts/schemathesis-wrong-token.toml \
    | tee "$work/wrong-token.log" || status=1
if ! grep -q "Authentication failed: 3 operations returned only 401/403 responses" "$work/wrong-token.log"; then
    echo "the wrong tool secret was not refused with 401 on all three routes" >&2
    status=1
fi

# What the checks cannot see from outside: a panic, or an error the server logged. (actix-http
# logs a request it cannot parse, such as schemathesis's probe with a NUL byte in a header, as
# an error of its own; that is the client's fault and answered 400 before any route.)
if ! kill -0 "$server" 2>/dev/null; then
    echo "relay serve died during the runs" >&2
    status=1
fi
if grep -v '"target":"actix_http::h1::dispatcher"' "$work/server.log" | grep -E 'panicked at|"level":"ERROR"'; then
    echo "relay panicked or logged errors during the runs (above)" >&2
    status=1
fi
exit "$status"
