-- A capture whose provider answer was lost (timeout, reset, 5xx, 409, 429) is neither
-- pending nor finished: it is `unknown` until a retry with the same key or the capture
-- reconciliation learns what the provider did.
ALTER TABLE order_captures DROP CONSTRAINT order_captures_status_check;
ALTER TABLE order_captures ADD CONSTRAINT order_captures_status_check
    CHECK (status IN ('pending', 'unknown', 'success', 'failed'));
-- Provider calls made under the key, and why the last one ended without an outcome.
ALTER TABLE order_captures ADD COLUMN attempts integer NOT NULL DEFAULT 1 CHECK (attempts >= 1);
ALTER TABLE order_captures ADD COLUMN last_error text;
-- The invariant that makes a double charge impossible: at most one capture per order whose
-- outcome is open (being asked, or unknown). A second key is refused until it is settled.
CREATE UNIQUE INDEX order_captures_one_open_idx ON order_captures (order_id)
    WHERE status IN ('pending', 'unknown');
-- The reconciliation's work list.
CREATE INDEX order_captures_open_idx ON order_captures (attempt_started_at)
    WHERE status IN ('pending', 'unknown');
-- The audit trail records when a capture's outcome became unknown.
ALTER TABLE order_events DROP CONSTRAINT order_events_kind_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_kind_check
    CHECK (kind IN ('webhook_received', 'hold_set', 'hold_cleared', 'capture_requested',
                    'capture_completed', 'capture_failed', 'capture_unknown'));
