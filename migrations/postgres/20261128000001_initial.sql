-- Organizations (tenants), their tool secrets (digests only) and their contacts.

CREATE TABLE organizations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- ISO 3166-1 alpha-2 region in which national-format numbers are read.
    default_region text NOT NULL CHECK (default_region ~ '^[A-Z]{2}$'),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organization_secrets (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- SHA-256 of the token; the token itself is never stored.
    digest     bytea NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX organization_secrets_org_id_idx ON organization_secrets (org_id);

CREATE TABLE contacts (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    first_name text,
    last_name  text,
    -- The number as the source wrote it, and normalized to E.164 in the org's region.
    phone_raw  text NOT NULL,
    phone_e164 text NOT NULL CHECK (phone_e164 ~ '^\+[0-9]{2,15}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The caller lookup: one equality on (org, number), newest first. Not unique: contacts written by
-- other systems may share a number, and the most recently updated one wins.
CREATE INDEX contacts_org_phone_idx ON contacts (org_id, phone_e164, updated_at DESC, id DESC);
