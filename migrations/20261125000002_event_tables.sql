-- The audit trail: the big, time-ordered tables, range-partitioned by day.
-- No foreign keys: rows are written at webhook rate and only ever appended.
SET LOCAL timezone = 'UTC';

CREATE TABLE order_events (
    event_id            uuid        NOT NULL,
    order_id            text        NOT NULL,
    kind                text        NOT NULL
                        CHECK (kind IN ('webhook_received', 'hold_set', 'hold_cleared',
                                        'capture_requested', 'capture_completed', 'capture_failed')),
    provider_event_id   text,
    data                jsonb       NOT NULL,
    created_at          timestamptz NOT NULL,
    -- Also the keyset-pagination order of GET /orders/events.
    PRIMARY KEY (created_at, event_id)
) PARTITION BY RANGE (created_at);
CREATE INDEX order_events_order_idx ON order_events (order_id, created_at, event_id);
CREATE INDEX order_events_kind_idx ON order_events (kind, created_at);

CREATE TABLE dispute_events (
    event_id            uuid        NOT NULL,
    dispute_id          uuid        NOT NULL,
    kind                text        NOT NULL
                        CHECK (kind IN ('webhook_opened', 'webhook_updated', 'provider_decision',
                                        'evidence_added', 'evidence_submitted')),
    provider_event_id   text,
    data                jsonb       NOT NULL,
    created_at          timestamptz NOT NULL,
    PRIMARY KEY (created_at, event_id)
) PARTITION BY RANGE (created_at);
CREATE INDEX dispute_events_dispute_idx ON dispute_events (dispute_id, created_at, event_id);
CREATE INDEX dispute_events_kind_idx ON dispute_events (kind, created_at);
