-- `pmctl partition-maintain` forgets inbox rows older than --analytics-inbox-keep (as it
-- forgets processed webhook ids): the index it deletes by.
CREATE INDEX analytics_inbox_processed_idx ON analytics.inbox (processed_at);
