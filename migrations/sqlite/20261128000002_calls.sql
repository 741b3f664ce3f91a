-- The same as migrations/postgres/20261128000002_calls.sql, in SQLite's types.

ALTER TABLE organizations ADD COLUMN unknown_caller_name TEXT NOT NULL DEFAULT ''
    CHECK (length(unknown_caller_name) <= 100);
ALTER TABLE organizations ADD COLUMN webhook_secret_sealed BLOB;

CREATE TABLE calls (
    id              TEXT PRIMARY KEY NOT NULL,
    org_id          TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    contact_id      TEXT REFERENCES contacts (id) ON DELETE SET NULL,
    conversation_id TEXT NOT NULL,
    call_sid        TEXT,
    agent_id        TEXT,
    kind            TEXT NOT NULL CHECK (kind IN ('completed', 'missed')),
    direction       TEXT,
    external_number TEXT,
    agent_number    TEXT,
    status          TEXT,
    call_successful TEXT,
    summary         TEXT,
    duration_secs   INTEGER CHECK (duration_secs >= 0),
    started_at      INTEGER,
    event_at        INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    UNIQUE (org_id, conversation_id)
);

CREATE INDEX calls_org_received_idx ON calls (org_id, received_at DESC);
