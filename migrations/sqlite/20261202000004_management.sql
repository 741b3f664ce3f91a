-- The same as migrations/postgres/20261202000004_management.sql, in SQLite's types.

ALTER TABLE contacts ADD COLUMN external_id TEXT
    CHECK (length(external_id) BETWEEN 1 AND 200);
ALTER TABLE contacts ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

CREATE UNIQUE INDEX contacts_org_external_id_idx ON contacts (org_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX contacts_org_id_idx ON contacts (org_id, id);

CREATE TABLE management_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    org_id     TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    label      TEXT NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
    digest     BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE INDEX management_keys_org_id_idx ON management_keys (org_id);

CREATE TABLE audit_log (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    org_id TEXT,
    action TEXT NOT NULL,
    target TEXT
);

CREATE INDEX audit_log_org_seq_idx ON audit_log (org_id, seq DESC);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- Deleting a contact (or an organization, contact by contact) unlinks its call records: without
-- this index each deleted contact scans every call record.
CREATE INDEX calls_contact_id_idx ON calls (contact_id) WHERE contact_id IS NOT NULL;
