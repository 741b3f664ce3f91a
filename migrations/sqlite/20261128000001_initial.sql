-- The embedded store: the same tables as migrations/postgres, in SQLite's types.
-- Ids are UUIDs as lower-case hyphenated text (their text order is their byte order, as in
-- Postgres); times are Unix microseconds (Postgres' resolution), so ordering is numeric.

CREATE TABLE organizations (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    default_region TEXT NOT NULL CHECK (length(default_region) = 2),
    created_at     INTEGER NOT NULL
);

CREATE TABLE organization_secrets (
    id         TEXT PRIMARY KEY NOT NULL,
    org_id     TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    digest     BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE INDEX organization_secrets_org_id_idx ON organization_secrets (org_id);

CREATE TABLE contacts (
    id         TEXT PRIMARY KEY NOT NULL,
    org_id     TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    first_name TEXT,
    last_name  TEXT,
    phone_raw  TEXT NOT NULL,
    phone_e164 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Not unique, as in Postgres: the newest contact of a number wins.
CREATE INDEX contacts_org_phone_idx ON contacts (org_id, phone_e164, updated_at DESC, id DESC);
