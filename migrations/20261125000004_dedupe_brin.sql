-- The dedupe table is searched by age only when `partition-maintain` prunes it, and rows
-- arrive in time order: a BRIN index serves that range scan at a fraction of a B-tree's cost
-- on every webhook's insert.
DROP INDEX IF EXISTS processed_webhooks_processed_at_idx;
CREATE INDEX processed_webhooks_processed_at_brin ON processed_webhooks USING brin (processed_at);
