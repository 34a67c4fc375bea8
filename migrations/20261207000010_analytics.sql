-- The analytics projection (`pmctl project-analytics`): read models built from the
-- `domain-events` topic, in a schema of their own so they never mix with the state they are
-- derived from (and could live in another database later).
--
-- Exactly-once effect over an at-least-once topic: every event is first recorded in
-- `analytics.inbox` (`ON CONFLICT DO NOTHING`), and the read models change only when that
-- row was new, in the same transaction. A redelivery, or a replay of the topic from offset
-- zero, finds its row and changes nothing. An event of a type or schema version the
-- projection does not know is recorded as `skipped`, so a replay skips it too; a later build
-- that knows it takes the row over (`skipped` → `projected`) and projects it once.
--
-- Days are UTC days. Orders carry no amount or currency in their events (the provider's
-- order webhooks have neither), so order volume is a count per day.
SET LOCAL timezone = 'UTC';

CREATE SCHEMA analytics;

CREATE TABLE analytics.inbox (
    event_id        uuid        PRIMARY KEY,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    -- `projected`: the read models took it; `skipped`: a type or version not known here.
    outcome         text        NOT NULL CHECK (outcome IN ('projected', 'skipped')),
    processed_at    timestamptz NOT NULL
);

-- Orders created, by the UTC day of their `order_created` event.
CREATE TABLE analytics.orders_daily (
    day             date        PRIMARY KEY,
    orders_created  bigint      NOT NULL CHECK (orders_created >= 0)
);

-- Captures settled, per UTC day of the event and currency, in the currency's minor units
-- (cents for USD, yen for JPY): declined (failed) captures are counted beside them.
CREATE TABLE analytics.captures_daily (
    day                 date    NOT NULL,
    currency            char(3) NOT NULL,
    captured            bigint  NOT NULL CHECK (captured >= 0),
    captured_minor      bigint  NOT NULL CHECK (captured_minor >= 0),
    failed              bigint  NOT NULL CHECK (failed >= 0),
    failed_minor        bigint  NOT NULL CHECK (failed_minor >= 0),
    PRIMARY KEY (day, currency)
);

-- Decisions per dispute: when it opened and when it was decided (the provider's times), for
-- the time to a decision, aggregated when read (mean, percentiles). A dispute is decided once;
-- a later event about the same decision (a late `opened` moved `opened_at` earlier) only
-- moves `opened_at`.
CREATE TABLE analytics.dispute_decisions (
    dispute_id      uuid        PRIMARY KEY,
    reason          text        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('won', 'lost')),
    opened_at       timestamptz NOT NULL,
    decided_at      timestamptz NOT NULL
);
CREATE INDEX dispute_decisions_decided_idx ON analytics.dispute_decisions (decided_at);

-- Outcomes per reason and UTC day of the decision: counted once per dispute, when its
-- decision row above is first written.
CREATE TABLE analytics.dispute_outcomes (
    day             date        NOT NULL,
    reason          text        NOT NULL,
    won             bigint      NOT NULL CHECK (won >= 0),
    lost            bigint      NOT NULL CHECK (lost >= 0),
    PRIMARY KEY (day, reason)
);
