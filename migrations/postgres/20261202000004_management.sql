-- The management API: contacts' ids in the system that owns them, versions for If-Match, the
-- API's keys (digests only) and the append-only audit trail.

-- A CRM's record id: unique per organization, so a sync upserts by it.
ALTER TABLE contacts
    ADD COLUMN external_id text CHECK (char_length(external_id) BETWEEN 1 AND 200),
    -- 1 when created, +1 on every change (the ETag).
    ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE UNIQUE INDEX contacts_org_external_id_idx ON contacts (org_id, external_id)
    WHERE external_id IS NOT NULL;
-- List pages walk an organization's contacts in id order.
CREATE INDEX contacts_org_id_idx ON contacts (org_id, id);

CREATE TABLE management_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: an operator key (every organization).
    org_id     uuid REFERENCES organizations (id) ON DELETE CASCADE,
    label      text NOT NULL CHECK (char_length(label) BETWEEN 1 AND 100),
    -- SHA-256 of the key; the key itself is never stored.
    digest     bytea NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX management_keys_org_id_idx ON management_keys (org_id);

-- Who changed what, and when. No foreign key: the trail outlives what it names.
CREATE TABLE audit_log (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL,
    -- `key:<uuid>` or `cli`.
    actor  text NOT NULL,
    org_id uuid,
    action text NOT NULL,
    target text
);

CREATE INDEX audit_log_org_seq_idx ON audit_log (org_id, seq DESC);

-- Append-only, whoever connects with the service's role.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Deleting a contact (or an organization, contact by contact) unlinks its call records: without
-- this index each deleted contact scans every call record.
CREATE INDEX calls_contact_id_idx ON calls (contact_id) WHERE contact_id IS NOT NULL;
