-- The transactional outbox: one row per domain event (an order or a dispute changed),
-- written in the transaction of the change, published to Kafka's `domain-events` by a relay
-- (`pmctl outbox-relay`, or Debezium reading the WAL), and pruned once published.
--
-- `sequence` numbers each aggregate's events 1, 2, 3…; it is drawn from the aggregate's row
-- (`orders.outbox_sequence`, `disputes.outbox_sequence`) under that row's lock, so event n+1
-- of an aggregate can only commit after event n did: a relay that publishes each aggregate's
-- unpublished events in sequence order never publishes them out of order, and never skips one
-- that was still in flight (no global id is used as a watermark).
SET LOCAL timezone = 'UTC';

ALTER TABLE orders ADD COLUMN outbox_sequence bigint NOT NULL DEFAULT 0;
ALTER TABLE disputes ADD COLUMN outbox_sequence bigint NOT NULL DEFAULT 0;

CREATE TABLE outbox (
    event_id        uuid        NOT NULL,
    aggregate_type  text        NOT NULL CHECK (aggregate_type IN ('order', 'dispute')),
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence > 0),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    -- The whole message as published (the envelope with the event's data), so the polling
    -- relay and Debezium's outbox router publish the same bytes.
    payload         jsonb       NOT NULL,
    correlation_id  text,
    trace_id        text,
    created_at      timestamptz NOT NULL,
    published_at    timestamptz,
    PRIMARY KEY (created_at, event_id)
) PARTITION BY RANGE (created_at);
-- What the relay reads: the unpublished events, oldest first, and per aggregate in sequence
-- order. Both are partial: once published, a row leaves them.
CREATE INDEX outbox_unpublished_idx ON outbox (created_at) WHERE published_at IS NULL;
CREATE INDEX outbox_unpublished_aggregate_idx ON outbox (aggregate_type, aggregate_id, sequence)
    WHERE published_at IS NULL;

DO $$
DECLARE
    ver text;
    sch text;
BEGIN
    SELECT e.extversion, n.nspname INTO ver, sch
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_partman';
    IF split_part(ver, '.', 1)::int >= 5 THEN
        EXECUTE format(
            'SELECT %I.create_parent(p_parent_table := %L, p_control := %L, p_interval := %L, p_premake := 7)',
            sch, 'public.outbox', 'created_at', '1 day');
    ELSE
        EXECUTE format(
            'SELECT %I.create_parent(p_parent_table := %L, p_control := %L, p_type := %L, p_interval := %L, p_premake := 7)',
            sch, 'public.outbox', 'created_at', 'native', 'daily');
    END IF;
    EXECUTE format(
        'UPDATE %I.part_config SET infinite_time_partitions = true WHERE parent_table = %L',
        sch, 'public.outbox');
END
$$;
