-- Operator API keys. Only a hash of each key's secret is stored; the key itself is shown
-- once, when it is created. A key is never deleted: revoking keeps the row (who had access,
-- and until when).
CREATE TABLE api_keys (
    key_id      text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    name        text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    secret_hash bytea       NOT NULL CHECK (length(secret_hash) = 32),
    scopes      text[]      NOT NULL CHECK (scopes <@ ARRAY['read', 'operate', 'admin'] AND cardinality(scopes) > 0),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz
);
