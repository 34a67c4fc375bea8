-- Orders, disputes, evidence, captures and webhook deduplication.
-- All timestamps are timestamptz and the database speaks UTC, so pg_partman's daily
-- partitions start at midnight UTC whatever the server's own time zone is.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET timezone TO %L', current_database(), 'UTC');
END
$$;
SET LOCAL timezone = 'UTC';

CREATE TABLE orders (
    order_id            text        PRIMARY KEY,
    user_id             uuid        NOT NULL,
    status              text        NOT NULL
                        CHECK (status IN ('created', 'updated', 'success', 'failed')),
    on_hold             boolean     NOT NULL DEFAULT false,
    hold_reason         text        CHECK (hold_reason IN ('manual_review', 'risk')),
    hold_updated_at     timestamptz,
    -- The provider's timestamps of the order and of the webhook that set `status`;
    -- `updated_at` is what later webhooks are compared against.
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    CHECK (on_hold = (hold_reason IS NOT NULL))
);
CREATE INDEX orders_created_idx ON orders (created_at, order_id);
CREATE INDEX orders_user_created_idx ON orders (user_id, created_at, order_id);
CREATE INDEX orders_status_created_idx ON orders (status, created_at, order_id);

CREATE TABLE disputes (
    dispute_id          uuid        PRIMARY KEY,
    -- One dispute per order.
    order_id            text        NOT NULL UNIQUE REFERENCES orders (order_id),
    user_id             uuid        NOT NULL,
    status              text        NOT NULL
                        CHECK (status IN ('open', 'under_review', 'submitted', 'won', 'lost', 'closed', 'canceled')),
    reason              text        NOT NULL,
    amount              numeric(19, 4) NOT NULL CHECK (amount > 0),
    currency            char(3)     NOT NULL,
    opened_at           timestamptz NOT NULL,
    evidence_due_at     timestamptz,
    submitted_at        timestamptz,
    closed_at           timestamptz,
    submission_id       text,
    -- occurred_at of the newest webhook that changed the dispute (reordering guard).
    provider_updated_at timestamptz NOT NULL,
    -- When we first recorded it; the list order.
    created_at          timestamptz NOT NULL
);
CREATE INDEX disputes_created_idx ON disputes (created_at, dispute_id);
CREATE INDEX disputes_status_created_idx ON disputes (status, created_at, dispute_id);

CREATE TABLE dispute_evidence (
    dispute_id          uuid        PRIMARY KEY REFERENCES disputes (dispute_id),
    fields              jsonb       NOT NULL,
    files               jsonb       NOT NULL,
    updated_at          timestamptz NOT NULL
);

-- One row per capture idempotency key: replays return the stored result, and a key reused
-- with a different request is refused by comparing fingerprints.
CREATE TABLE order_captures (
    idempotency_key     text        PRIMARY KEY,
    order_id            text        NOT NULL REFERENCES orders (order_id),
    amount              numeric(19, 4) NOT NULL CHECK (amount > 0),
    currency            char(3)     NOT NULL,
    request_fingerprint text        NOT NULL,
    status              text        NOT NULL CHECK (status IN ('pending', 'success', 'failed')),
    provider_tx_id      text,
    failure_reason      text,
    -- When the current attempt to call the provider began; a pending capture whose
    -- attempt is old was abandoned (crash) and may be taken over by a retry.
    attempt_started_at  timestamptz NOT NULL,
    captured_at         timestamptz,
    created_at          timestamptz NOT NULL
);
CREATE INDEX order_captures_order_idx ON order_captures (order_id);
CREATE UNIQUE INDEX order_captures_one_success_idx ON order_captures (order_id) WHERE status = 'success';

-- Webhook deduplication by the provider's event id. The event tables are partitioned by
-- time, and a unique index on a partitioned table must contain the partition key, so it
-- cannot enforce uniqueness of provider_event_id across days: this small table does.
-- `pmctl partition-maintain` prunes it by age (providers retry for up to 30 days).
CREATE TABLE processed_webhooks (
    source              text        NOT NULL CHECK (source IN ('order', 'chargeback')),
    provider_event_id   text        NOT NULL,
    processed_at        timestamptz NOT NULL,
    PRIMARY KEY (source, provider_event_id)
);
CREATE INDEX processed_webhooks_processed_at_idx ON processed_webhooks (processed_at);
