-- The audit trail of operator actions: who (the API key's name, or `reconciliation`, or
-- `cli:<command>`), what, on which object, when, with which correlation id, and how it ended.
-- Written in the same transaction as the change it records, where there is one.
CREATE TABLE audit_log (
    audit_id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at     timestamptz NOT NULL,
    actor          text        NOT NULL,
    action         text        NOT NULL,
    object_type    text        NOT NULL,
    object_id      text        NOT NULL,
    outcome        text        NOT NULL,
    correlation_id text,
    detail         jsonb       NOT NULL
);
-- Keyset pagination of GET /audit, and the trail of one object.
CREATE INDEX audit_log_keyset_idx ON audit_log (created_at, audit_id);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, created_at);

-- Append-only, whoever connects: rows can be added, never changed or removed.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
