# relay: ElevenLabs personalization webhook. `just` lists the recipes.

# `run-pg` and `migrate` use these unless DATABASE_URL / REDIS_URL are exported.
pg_url := env_var_or_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/relay")
redis_url := env_var_or_default("REDIS_URL", "redis://127.0.0.1:6379")

# List the recipes
default:
    @just --list

# Serve with zero setup: embedded SQLite at data/relay.db and an in-process cache (seeds a demo on first start)
run:
    cargo run --release --locked --bin relay -- serve

# Serve against local Postgres and Redis: migrate (creating the database if needed), then serve
run-pg: migrate
    DATABASE_URL={{pg_url}} REDIS_URL={{redis_url}} cargo run --release --locked --bin relay -- serve

# Apply migrations to the Postgres database, creating it if it does not exist
migrate:
    DATABASE_URL={{pg_url}} cargo run --release --locked --bin relay -- migrate --create-database

# Tests create and drop their own databases on the server of TEST_DATABASE_URL, and use the
# Redis at REDIS_URL and the loopback Redis Cluster (started here if it is not up).
# Run every test: unit, property, adapter conformance (SQLite, Postgres, in-process, Redis, Redis Cluster), HTTP, end-to-end
test: redis-cluster
    DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" cargo test --workspace --locked

# Fuzz the debug binary against docs/openapi.yaml: pinned schemathesis, every phase and check, valid and wrong token (~2 min)
fuzz-contract:
    scripts/contract-fuzz.sh

# Fuzz the debug binary's management API against docs/openapi.yaml: every phase (stateful too) and check, operator and wrong key (~2 min)
fuzz-admin:
    scripts/admin-fuzz.sh

# Start the three-master Redis Cluster the tests use (loopback ports 7101-7103; idempotent)
redis-cluster:
    scripts/redis-cluster.sh start

# One clippy pass: with every feature on it sees all the code (nothing is compiled only when a
# feature is off), and a second pass without them would build the workspace again.
# Check formatting and lints (warnings are errors)
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

# Format the code
fmt:
    cargo fmt --all

# Lint the Dockerfile and validate every Kubernetes manifest offline (installs pinned tools into target/)
deploy-check:
    scripts/check-deploy.sh

# Build the release binary (the Dockerfile's exact command)
build:
    cargo build --release --locked --bin relay

# Seeds 1,000 organizations and 1,000,000 contacts in a scratch database, drives the release
# binary open-loop at 500/2,000/5,000 req/s and to saturation, and compares with the raw
# dependency limit (`just --list` shows only the doc line below).
[doc("Load benchmark against the raw dependency limit; prints a Markdown report (docs/benchmarks.md; `just bench --help`)")]
bench *args:
    cargo build --release --locked --package relay-app --package relay-bench
    target/release/relay-bench {{args}}

# Time the import of 1,000,000 generated contacts into a scratch database (results: docs/benchmarks.md)
bench-import rows="1000000":
    scripts/bench-import.sh {{rows}}
