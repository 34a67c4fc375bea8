-- no-transaction
-- Reports over disputes by outcome and reason (the original's "evidence of lost fraud
-- disputes") join events to the few disputes that match; with the joined columns in the index,
-- that side is an index-only scan instead of a visit to every matching dispute's heap page.
--
-- Built CONCURRENTLY so a large disputes table keeps taking writes meanwhile; that cannot run
-- in a transaction, hence this file's first line and its single statement. If it is
-- interrupted it leaves an INVALID index of this name: drop it and run `pmctl migrate` again.
CREATE INDEX CONCURRENTLY disputes_status_reason_covering_idx
    ON disputes (status, reason) INCLUDE (dispute_id, amount, currency);
