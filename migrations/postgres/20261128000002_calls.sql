-- ElevenLabs integration: the unknown-caller fallback of the initiation route, the post-call
-- webhook's signing secret (encrypted by the service; the key is never in the database), and one
-- call record per organization and conversation.

ALTER TABLE organizations
    ADD COLUMN unknown_caller_name text NOT NULL DEFAULT ''
        CHECK (char_length(unknown_caller_name) <= 100),
    -- XChaCha20-Poly1305: 24-byte nonce followed by the ciphertext and tag.
    ADD COLUMN webhook_secret_sealed bytea;

CREATE TABLE calls (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- A contact deleted later leaves its calls, unlinked.
    contact_id      uuid REFERENCES contacts (id) ON DELETE SET NULL,
    conversation_id text NOT NULL,
    call_sid        text,
    agent_id        text,
    kind            text NOT NULL CHECK (kind IN ('completed', 'missed')),
    direction       text,
    external_number text,
    agent_number    text,
    status          text,
    call_successful text,
    summary         text,
    duration_secs   integer CHECK (duration_secs >= 0),
    started_at      timestamptz,
    event_at        timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    -- A duplicate delivery of the same conversation changes nothing.
    UNIQUE (org_id, conversation_id)
);

-- `relay calls list ORG_ID --since ...`: newest first.
CREATE INDEX calls_org_received_idx ON calls (org_id, received_at DESC);
