-- The same as migrations/postgres/20261202000003_caller_memory.sql, in SQLite's types.

ALTER TABLE organizations ADD COLUMN memory_retention_days INTEGER NOT NULL DEFAULT 90
    CHECK (memory_retention_days BETWEEN 0 AND 3650);
ALTER TABLE organizations ADD COLUMN memory_unknown_callers INTEGER NOT NULL DEFAULT 0
    CHECK (memory_unknown_callers IN (0, 1));

ALTER TABLE calls ADD COLUMN caller_e164 TEXT;
CREATE INDEX calls_org_caller_idx ON calls (org_id, caller_e164) WHERE caller_e164 IS NOT NULL;
CREATE INDEX calls_summary_event_idx ON calls (event_at) WHERE summary IS NOT NULL;

CREATE TABLE caller_memory (
    org_id            TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    phone_e164        TEXT NOT NULL,
    completed_calls   INTEGER NOT NULL DEFAULT 0 CHECK (completed_calls >= 0),
    last_call_at      INTEGER,
    last_summary      TEXT,
    last_outcome      TEXT,
    missed_since_last INTEGER NOT NULL DEFAULT 0 CHECK (missed_since_last >= 0),
    last_missed_at    INTEGER,
    last_activity_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone_e164)
) WITHOUT ROWID;

CREATE INDEX caller_memory_activity_idx ON caller_memory (last_activity_at);

UPDATE calls SET caller_e164 = external_number
 WHERE external_number GLOB '+[0-9]*'
   AND substr(external_number, 2) NOT GLOB '*[^0-9]*'
   AND length(external_number) BETWEEN 3 AND 16;
