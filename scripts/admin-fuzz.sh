#!/usr/bin/env bash
# Management API fuzzing: runs the pinned schemathesis of contract-fuzz.sh against the served debug
# binary's management listener with the `/admin/v1` paths of docs/openapi.yaml: every phase
# (examples, coverage, fuzzing, stateful, the last following the document's `links`) and every
# check, once with an operator key and once with a wrong key (every answer must then be 401 with
# the envelope). Any failure, schema error or warning fails the script.
#
# The server runs on the embedded SQLite store in a temporary directory, with the request budget
# and the failed-authentication throttle off (both are unit-tested; here they would answer 429
# where the contract is being checked). The operator key is created with the CLI on the same
# database; organizations, contacts, keys and a call record are seeded through the API and the
# webhook so that generated requests reach existing resources (schemathesis dictionaries):
# the ones the fuzzer may delete (organizations, contacts, keys) are kept apart from those the
# other operations use, and the key the fuzzer authenticates with is never among them.
#
# What the contract cannot state is taught to the generator in a hooks file (written below):
# values for `format: phone` (numbers valid in any region), `contact-cursor`, `call-cursor` and
# `audit-cursor` (cursors the service gives), an NDJSON serializer (and no NDJSON body that is not
# a string), and, in positive cases, a fresh `Idempotency-Key` and created `external_id` per
# request, a seeded organization or contact not deleted yet per deletion, and, on the upsert by
# external id, a body `external_id` equal to the path's (the contract requires it in prose).
#
# Environment: ADMIN_FUZZ_MAX_EXAMPLES (fuzzed cases per operation, a third of them with the wrong
# key; 300 takes about a minute and a half for both runs on two cores), ADMIN_FUZZ_SEED,
# ADMIN_FUZZ_REPORT_DIR (when set, every request and answer of both runs, and schemathesis'
# events, are kept there).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${ADMIN_FUZZ_MAX_EXAMPLES:-300}
SEED=${ADMIN_FUZZ_SEED:-20251202}
VENV=target/contract-fuzz/venv
RELAY=target/debug/relay
export HYPOTHESIS_STORAGE_DIRECTORY=target/contract-fuzz/hypothesis

log() { printf '\n== %s\n' "$*"; }

# --- schemathesis, pinned, in the venv contract-fuzz.sh uses ---------------------------------
if ! "$VENV/bin/st" --version 2>/dev/null | grep -qx "st, version ${SCHEMATHESIS_VERSION}"; then
    log "installing schemathesis ${SCHEMATHESIS_VERSION} into ${VENV}"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
fi

# --- the binary: the one `just test` built; built here only when missing ---------------------
if [[ ! -x $RELAY ]]; then
    log "building ${RELAY}"
    cargo build --locked --bin relay
fi
if [[ -n $(find crates migrations -newer "$RELAY" -type f -print -quit) ]]; then
    echo "warning: sources changed since ${RELAY} was built; run \`cargo build --bin relay\` to fuzz them" >&2
fi

# --- a server on a fresh embedded store -------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/relay-admin-fuzz.XXXXXX")
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

# Only what this run sets reaches the binary (no DATABASE_URL, REDIS_URL or OTLP endpoint of the
# calling shell).
relay_env=(
    env -i PATH="$PATH" HOME="${HOME:-/root}"
    DATABASE_URL="sqlite://${work}/relay.db"
    WEBHOOK_SECRET_KEY="$(head -c 32 /dev/urandom | base64)"
    LOG_FORMAT=json
)
relay() { "${relay_env[@]}" RUST_LOG=warn "$RELAY" "$@"; }

log "creating the operator key with the CLI"
operator_key=$(relay keys create --label admin-fuzz 2>"$work/key.log")
uuid='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
operator_key_id=$(grep -oE "$uuid" "$work/key.log" | head -n 1)
if [[ $operator_key != rmk_* || -z $operator_key_id ]]; then
    cat "$work/key.log" >&2
    echo "relay keys create did not print a management key and its id" >&2
    exit 1
fi

# Both listeners on ports the system picks, read back from the log. No budget, no throttle, no
# drain on exit.
"${relay_env[@]}" RUST_LOG=info LISTEN_ADDR=127.0.0.1:0 ADMIN_LISTEN_ADDR=127.0.0.1:0 \
    ADMIN_REQUESTS_PER_MINUTE=0 AUTH_FAILURES_PER_MINUTE=0 SHUTDOWN_DRAIN_SECONDS=0 \
    "$RELAY" serve >"$work/stdout.log" 2>"$work/server.log" &
server=$!

addresses=""
for _ in $(seq 1 100); do
    addresses=$(python3 -c '
import json, sys
found = {}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    fields = {**event, **event.get("fields", {})}
    for name in ("listen_addr", "admin_listen_addr"):
        if fields.get(name):
            found[name] = fields[name]
if len(found) == 2:
    print(found["listen_addr"], found["admin_listen_addr"])
' "$work/server.log")
    [[ -n $addresses ]] && break
    if ! kill -0 "$server" 2>/dev/null; then
        cat "$work/server.log" >&2
        echo "relay serve exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z $addresses ]]; then
    cat "$work/server.log" >&2
    echo "relay serve did not log both listen addresses within 10 s" >&2
    exit 1
fi
read -r webhook_addr admin_addr <<<"$addresses"
base="http://${admin_addr}"
echo "management API on ${base}, webhooks on http://${webhook_addr}"

# --- seed data, and the schemathesis configuration naming it ----------------------------------
log "seeding organizations, contacts, keys and a call record"
python3 - "$base" "$operator_key" "http://${webhook_addr}" "$operator_key_id" "$MAX_EXAMPLES" \
    "$work/doomed.json" >"$work/dictionaries.toml" <<'PY'
import json
import sys
import urllib.request

base, key, webhook, own_key, examples, doomed_file = sys.argv[1:7]
# As many of what the fuzzer deletes as it makes cases per operation: most deletions delete.
doomed_count = int(examples)


def call(method, url, body=None, token=key):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


def org(name, region):
    return call("POST", f"{base}/admin/v1/organizations", {"name": name, "default_region": region})["id"]


kept = [org("Fuzz Org", "CA")]
doomed = [org(f"Doomed Org {n}", "US") for n in range(doomed_count)]
contacts, doomed_contacts = [], []
for n in range(10 + doomed_count):
    contact = call(
        "POST",
        f"{base}/admin/v1/organizations/{kept[0]}/contacts",
        {"first_name": "Alex", "last_name": f"Morgan {n}", "phone": f"+1 416 555 {100 + n % 100:04d}",
         "external_id": f"crm-{n}"},
    )
    (contacts if n < 10 else doomed_contacts).append(contact["id"])
keys = [call("POST", f"{base}/admin/v1/organizations/{kept[0]}/keys", {"label": f"doomed {n}"})["id"]
        for n in range(4)]
keys += [call("POST", f"{base}/admin/v1/keys", {"label": f"doomed operator {n}"})["id"] for n in range(4)]
assert own_key not in keys
secret = call("POST", f"{base}/admin/v1/organizations/{kept[0]}/secrets")
secrets = [secret["id"]] + [call("POST", f"{base}/admin/v1/organizations/{kept[0]}/secrets")["id"]
                            for _ in range(3)]
call("PUT", f"{base}/admin/v1/organizations/{kept[0]}/webhook-secret", {"secret": "wsec_admin_fuzz"})
recorded = call(
    "POST",
    f"{webhook}/api/webhook/elevenlabs",
    {"type": "post_call_transcription", "event_timestamp": 1764325800,
     "data": {"conversation_id": "conv_admin_fuzz", "agent_id": "agent_admin_fuzz", "status": "done",
              "metadata": {"start_time_unix_secs": 1764325712, "call_duration_secs": 81,
                           "phone_call": {"direction": "inbound", "external_number": "+14165550100",
                                          "agent_number": "+12362320246", "call_sid": "CAadminfuzz"}},
              "analysis": {"call_successful": "success", "transcript_summary": "Moved an appointment."}}},
    token=secret["token"],
)


def dictionary(name, values):
    print(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n")


dictionary("orgs", kept)
dictionary("doomed_orgs", doomed)
dictionary("contacts", contacts)
dictionary("doomed_contacts", doomed_contacts)
dictionary("doomed_keys", keys)
dictionary("secrets", secrets)
dictionary("calls", [recorded["call_id"]])
with open(doomed_file, "w", encoding="utf-8") as out:
    json.dump({"organizations": doomed, "contacts": doomed_contacts}, out)
PY

# Every warning is displayed and, but where said, fails the run (as in contract-fuzz.sh).
warnings=(
    missing_auth missing_test_data base_url_mismatch validation_mismatch missing_deserializer
    unused_openapi_auth unsupported_regex method_not_allowed constants_extraction
    unmatched_filter unresolvable_reference low_valid_rate rate_limited dictionary_mismatch
    timeout_units
)
# The TOML list of the warnings but those named.
warnings_but() {
    local out="" w
    for w in "${warnings[@]}"; do
        [[ " $* " == *" $w "* ]] || out+="\"$w\", "
    done
    printf '[%s]' "${out%, }"
}

# Two answers to well-formed requests are about state, not data, so positive cases may get them:
# 412, an `If-Match` naming another version (negative cases get it too: a malformed one), and 422,
# an `Idempotency-Key` already used for another request. Three in four generated `If-Match`
# headers are drawn from `*` and the versions contacts have; the rest name versions a contact
# never had, and on the three operations taking one, 412 can outnumber every other answer in a
# phase, which schemathesis reports as a validation mismatch. That warning is shown but does not
# fail the run (schemathesis reads it for the whole run, not per operation): a valid request
# refused with 400 fails it anyway (`positive_data_acceptance`). Seeded resources are drawn for
# path ids; what the fuzzer may delete is never what the others use, nor the key it
# authenticates with.
config() { # FILE FAIL-ON-LIST
    cat >"$1" <<TOML
[warnings]
display = $(warnings_but)
fail-on = $2

[cache]
enabled = false

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429", "5xx"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "415", "422", "428", "429", "5xx"]

[dictionaries.versions]
values = ["*", "\"1\"", "\"2\""]

[parameters]
"header.If-Match" = { dictionary = "versions", probability = 0.75 }
"path.org" = { dictionary = "orgs", probability = 0.9 }
"path.contact" = { dictionary = "contacts", probability = 0.9 }
"path.secret" = { dictionary = "secrets", probability = 0.5 }
"path.call" = { dictionary = "calls", probability = 0.9 }

[[operations]]
include-operation-id = "deleteOrganization"
parameters = { "path.org" = { dictionary = "doomed_orgs", probability = 1.0 } }

[[operations]]
include-operation-id = "deleteContact"
parameters = { "path.contact" = { dictionary = "doomed_contacts", probability = 1.0 } }

[[operations]]
include-operation-id = "revokeKey"
parameters = { "path.key" = { dictionary = "doomed_keys", probability = 1.0 } }

TOML
    cat "$work/dictionaries.toml" >>"$1"
}
config "$work/schemathesis.toml" "$(warnings_but validation_mismatch)"
# With the wrong key, answering nothing but 401 is the point (`missing_auth`, checked below) and
# no case can succeed (`low_valid_rate`).
config "$work/schemathesis-wrong-key.toml" "$(warnings_but validation_mismatch missing_auth low_valid_rate)"

cat >"$work/hooks.py" <<'PY'
import base64
import itertools
import json
import os
from urllib.parse import unquote

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

# Numbers valid in every region: written with their country code, spelled as clients write them.
NUMBERS = [
    ("1", "416", "555", "0100"), ("1", "212", "555", "0147"), ("1", "604", "555", "0199"),
    ("44", "20", "7946", "0958"), ("44", "161", "496", "0000"), ("61", "2", "9374", "4000"),
    ("33", "1", "4268", "5300"), ("49", "30", "9018", "20"), ("81", "3", "3224", "9999"),
    ("39", "06", "6982", "0000"), ("52", "55", "5128", "0000"), ("34", "912", "345", "678"),
]
SPELLINGS = [
    "+{}{}{}{}", "+{} {} {} {}", "+{} ({}) {}-{}", "+{}-{}-{}-{}", "+{}.{}.{}.{}", "  +{} {} {}{} ",
]


def b64(text):
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


schemathesis.openapi.format(
    "phone", st.builds(lambda n, s: s.format(*n), st.sampled_from(NUMBERS), st.sampled_from(SPELLINGS))
)
schemathesis.openapi.format("contact-cursor", st.uuids().map(lambda u: b64(str(u))))
schemathesis.openapi.format("audit-cursor", st.integers(min_value=0, max_value=2**53).map(lambda n: b64(str(n))))
schemathesis.openapi.format(
    "call-cursor",
    st.builds(lambda micros, u: b64(f"{micros}/{u}"), st.integers(min_value=0, max_value=2**52), st.uuids()),
)


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value)).encode()


@schemathesis.hook
def filter_case(ctx, case):
    # An NDJSON body is bytes: a "non-string" body (a type mutation) does not exist on the wire.
    return case.media_type != "application/x-ndjson" or isinstance(case.body, (str, bytes))


CONTACTS = "/admin/v1/organizations/{org}/contacts"
UPSERT = "/admin/v1/organizations/{org}/contacts/by-external-id/{external_id}"
requests = itertools.count()
# Each deletion drawn from the seeded ones gets one not deleted yet (draws repeat: most would
# delete what is already gone), while there are any.
with open(os.environ["ADMIN_FUZZ_DOOMED"], encoding="utf-8") as doomed:
    DOOMED = json.load(doomed)
FRESH = {
    ("/admin/v1/organizations/{org}", "org"): iter(DOOMED["organizations"]),
    ("/admin/v1/organizations/{org}/contacts/{contact}", "contact"): iter(DOOMED["contacts"]),
}
DOOMED_IDS = set(DOOMED["organizations"]) | set(DOOMED["contacts"])


@schemathesis.hook
def map_case(ctx, case):
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return case
    if case.method.upper() == "DELETE" and case.path_parameters is not None:
        for (path, name), fresh in FRESH.items():
            if case.path == path and case.path_parameters.get(name) in DOOMED_IDS:
                case.path_parameters[name] = next(fresh, case.path_parameters[name])
    # A client makes a new Idempotency-Key per request; generated ones repeat ("0"), and a repeat
    # on another request is a 422 that would drown every other answer.
    key = case.headers.get("Idempotency-Key") if case.headers is not None else None
    if isinstance(key, str) and len(key.strip()) < 240:
        case.headers["Idempotency-Key"] = f"{key.strip()}-{next(requests)}"
    # So do generated external ids, which a create must not reuse (409 `external_id_taken`).
    if (
        case.path == CONTACTS
        and case.method.upper() == "POST"
        and isinstance(case.body, dict)
        and isinstance(case.body.get("external_id"), str)
        and len(case.body["external_id"]) < 190
    ):
        case.body["external_id"] = f"{case.body['external_id']}-{next(requests)}"
    # The body's `external_id`, when given, must equal the path's: a rule between two parameters
    # that a schema cannot state.
    if (
        case.path == UPSERT
        and isinstance(case.body, dict)
        and isinstance(case.body.get("external_id"), str)
        and case.path_parameters is not None
        and isinstance(case.path_parameters.get("external_id"), str)
    ):
        # Path parameters are kept percent-encoded, as they are sent.
        case.body["external_id"] = unquote(case.path_parameters["external_id"])
    return case
PY

# --- the two runs ------------------------------------------------------------------------------
fuzz() {
    local label=$1 authorization=$2 config=$3 phases=$4 examples=$5
    log "schemathesis, ${label}"
    if ! kill -0 "$server" 2>/dev/null; then
        echo "relay serve is not running" >&2
        return 1
    fi
    SCHEMATHESIS_HOOKS="$work/hooks.py" ADMIN_FUZZ_DOOMED="$work/doomed.json" \
        "$VENV/bin/st" --config-file "$config" --no-color \
        run docs/openapi.yaml \
        --url "$base" \
        --include-path-regex '^/admin/v1/' \
        --phases "$phases" \
        --checks all \
        --mode all \
        --seed "$SEED" \
        --max-examples "$examples" \
        --generation-database none \
        --workers 1 \
        --request-timeout 10 \
        ${ADMIN_FUZZ_REPORT_DIR:+--report har,ndjson --report-dir "${ADMIN_FUZZ_REPORT_DIR}/${label// /-}"} \
        -H "Authorization: ${authorization}"
}

status=0
fuzz "operator key" "Bearer ${operator_key}" "$work/schemathesis.toml" \
    examples,coverage,fuzzing,stateful "$MAX_EXAMPLES" || status=1

# The wrong key has the management key's shape, so it is looked up (and found nowhere). A third
# of the cases: every one meets the same refusal.
fuzz "wrong key" "Bearer rmk_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')" \
    "$work/schemathesis-wrong-key.toml" examples,coverage,fuzzing "$((MAX_EXAMPLES / 3 + 1))" \
    | tee "$work/wrong-key.log" || status=1
operations=$(sed -n '/^  \/admin\/v1\//,/^components:/p' docs/openapi.yaml | grep -cE '^    (get|put|post|patch|delete):$' || true)
if ! grep -q "Authentication failed: ${operations} operations returned only 401/403 responses" "$work/wrong-key.log"; then
    echo "the wrong key was not refused with 401 on all ${operations} management operations" >&2
    status=1
fi

if ! kill -0 "$server" 2>/dev/null; then
    echo "relay serve died during the runs" >&2
    status=1
fi
if grep -v '"target":"actix_http::h1::dispatcher"' "$work/server.log" | grep -E 'panicked at|"level":"ERROR"'; then
    echo "relay panicked or logged errors during the runs (above)" >&2
    status=1
fi
exit "$status"
