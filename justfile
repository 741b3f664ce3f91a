# relay: ElevenLabs personalization webhook. `just` lists the recipes.

# Local services: override by exporting DATABASE_URL / REDIS_URL before calling just.
export DATABASE_URL := env_var_or_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/relay")
export REDIS_URL := env_var_or_default("REDIS_URL", "redis://127.0.0.1:6379")

# List the recipes
default:
    @just --list

# Migrate the local database (creating it if needed), then serve on LISTEN_ADDR (default 0.0.0.0:2212)
run: migrate
    cargo run --release --locked --bin relay -- serve

# Apply migrations to DATABASE_URL, creating the database if it does not exist
migrate:
    cargo run --release --locked --bin relay -- migrate --create-database

# Run every test: unit, property, adapter (real Postgres and Redis), HTTP and end-to-end.
# Each test creates and drops its own database on the server of TEST_DATABASE_URL.
test:
    DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" cargo test --workspace --locked

# Check formatting and lints (warnings are errors)
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

# Format the code
fmt:
    cargo fmt --all

# Build the release binary
build:
    cargo build --release --locked --bin relay

# Time the import of 1,000,000 generated contacts into a scratch database (results: docs/benchmarks.md)
bench-import rows="1000000":
    scripts/bench-import.sh {{rows}}
