-- Daily partitions through pg_partman: 7 days premade ahead, a default partition for
-- anything outside them, retention off (`pmctl partition-maintain --retention` applies it).
--
-- pg_partman 4.x (Debian 12 ships 4.7) and 5.x differ in create_parent's signature:
--   4.x: create_parent(p_parent_table, p_control, p_type := 'native', p_interval := 'daily', ...)
--   5.x: create_parent(p_parent_table, p_control, p_interval := '1 day', p_type := 'range', ...)
-- so the installed version is detected and the call built for it. An extension already
-- installed in another schema is used where it is.
SET LOCAL timezone = 'UTC';

CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

DO $$
DECLARE
    ver     text;
    sch     text;
    parent  text;
BEGIN
    SELECT e.extversion, n.nspname INTO ver, sch
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_partman';

    FOREACH parent IN ARRAY ARRAY['public.order_events', 'public.dispute_events'] LOOP
        IF split_part(ver, '.', 1)::int >= 5 THEN
            EXECUTE format(
                'SELECT %I.create_parent(p_parent_table := %L, p_control := %L, p_interval := %L, p_premake := 7)',
                sch, parent, 'created_at', '1 day');
        ELSE
            EXECUTE format(
                'SELECT %I.create_parent(p_parent_table := %L, p_control := %L, p_type := %L, p_interval := %L, p_premake := 7)',
                sch, parent, 'created_at', 'native', 'daily');
        END IF;
        -- Keep premaking partitions relative to now(), not to the newest row: with no
        -- traffic for a while, maintenance must still create tomorrow's partition.
        EXECUTE format(
            'UPDATE %I.part_config SET infinite_time_partitions = true WHERE parent_table = %L',
            sch, parent);
    END LOOP;
END
$$;
