-- Returning-caller memory: per organization and caller number, what the agent may know of the
-- previous calls. Written by the post-call webhook in the same transaction as the call record,
-- read with the contact by the personalization lookup, deleted past the organization's
-- retention (the service's purge job) and on request (`relay contacts forget`).

ALTER TABLE organizations
    -- 0 turns memory off; the default keeps 90 days of contacts' calls and nothing of strangers.
    ADD COLUMN memory_retention_days integer NOT NULL DEFAULT 90
        CHECK (memory_retention_days BETWEEN 0 AND 3650),
    ADD COLUMN memory_unknown_callers boolean NOT NULL DEFAULT false;

-- The caller's number in E.164 (the memory's key), so erasure finds every record of a number
-- however ElevenLabs wrote it.
ALTER TABLE calls ADD COLUMN caller_e164 text;
CREATE INDEX calls_org_caller_idx ON calls (org_id, caller_e164) WHERE caller_e164 IS NOT NULL;
-- The purge's walk over summaries older than a window.
CREATE INDEX calls_summary_event_idx ON calls (event_at) WHERE summary IS NOT NULL;

CREATE TABLE caller_memory (
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    phone_e164        text NOT NULL CHECK (phone_e164 ~ '^\+[0-9]{2,15}$'),
    completed_calls   integer NOT NULL DEFAULT 0 CHECK (completed_calls >= 0),
    -- The newest completed call (ElevenLabs' event time) and what it left.
    last_call_at      timestamptz,
    last_summary      text,
    last_outcome      text,
    -- Calls that never reached the agent after the newest completed call.
    missed_since_last integer NOT NULL DEFAULT 0 CHECK (missed_since_last >= 0),
    last_missed_at    timestamptz,
    -- The newest call of either kind: the memory expires a retention window after it.
    last_activity_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, phone_e164)
);

CREATE INDEX caller_memory_activity_idx ON caller_memory (last_activity_at);

-- Whether the contact's number has a memory (set with it, and by an import for a number already
-- remembered), so the caller lookup probes `caller_memory` only for those and for callers who are
-- not contacts. Left set after a purge it costs one probe, never a wrong answer.
ALTER TABLE contacts ADD COLUMN has_memory boolean NOT NULL DEFAULT false;

-- Records written before this column: numbers ElevenLabs already sent in E.164 are keys as they
-- are (others stay unkeyed; erasure still finds them by their contact).
UPDATE calls SET caller_e164 = external_number WHERE external_number ~ '^\+[0-9]{2,15}$';
