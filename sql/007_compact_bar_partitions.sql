-- 006: rewrite a monthly bar partition in primary-key order (md_maintenance, after its month).
-- Sweeps store bars minute by minute across every symbol, so one symbol's session is spread
-- over hundreds of heap pages (one row on each). Rewritten in (symbol, interval, ts, as_of)
-- order, a symbol's session sits on a few consecutive pages: a day read from a month long
-- past costs what a day read of this week costs, however large `bars` grows.
--
-- A sorted copy is swapped in for the partition, in one transaction:
-- 1. the copy takes no lock that anyone waits for: readers and writers go on;
-- 2. then writers of that month (late backfills, corrections: rare once it has ended) wait
--    while the rows they stored during the copy are added to it (bars are append-only: a
--    different count means new rows);
-- 3. the swap (DETACH + ATTACH) takes short exclusive locks on `bars`, waiting at most 0.5 s
--    at a time (readers queue behind a waiting lock) and trying 30 times. When a writer of
--    the month is waiting meanwhile, it gives up at once rather than hold that writer (and
--    deadlock with it: the writer already holds `bars`): everything is rolled back, the
--    partition is as it was, and the next maintenance run tries again.
-- The partition's comment records the rows it held when compacted.

CREATE FUNCTION md_compact_bar_partition(part text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    bound text;
    lo text;
    hi text;
    tmp text := part || '_sorted';
    copied bigint;
    total bigint;
    added bigint := 0;
    attempt integer := 0;
BEGIN
    SELECT pg_get_expr(c.relpartbound, c.oid) INTO bound
    FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
    WHERE c.oid = to_regclass(part) AND i.inhparent = 'bars'::regclass;
    IF bound IS NULL OR bound = 'DEFAULT' THEN
        RAISE EXCEPTION 'md_compact_bar_partition: % is not a range partition of bars', part;
    END IF;
    lo := substring(bound FROM $re$FROM \('([^']+)'\)$re$);
    hi := substring(bound FROM $re$TO \('([^']+)'\)$re$);

    -- 1. the sorted copy
    EXECUTE format(
        'CREATE TABLE %I (LIKE bars INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)', tmp);
    EXECUTE format(
        'INSERT INTO %I SELECT * FROM %I ORDER BY symbol, interval, ts, as_of', tmp, part);
    GET DIAGNOSTICS copied = ROW_COUNT;
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (symbol, interval, ts, as_of)', tmp);
    -- the bound as a constraint: ATTACH then need not scan the copy to prove it
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (ts >= %L::timestamptz AND ts < %L::timestamptz)',
                   tmp, tmp || '_bound', lo, hi);

    -- 2. what was written during the copy
    EXECUTE format('LOCK TABLE %I IN SHARE MODE', part);
    EXECUTE format('SELECT count(*) FROM %I', part) INTO total;
    IF total <> copied THEN
        EXECUTE format(
            'INSERT INTO %1$I SELECT * FROM %2$I p WHERE NOT EXISTS (SELECT 1 FROM %1$I t WHERE '
            't.symbol = p.symbol AND t.interval = p.interval AND t.ts = p.ts AND t.as_of = p.as_of)',
            tmp, part);
        GET DIAGNOSTICS added = ROW_COUNT;
    END IF;
    EXECUTE format('ANALYZE %I', tmp);

    -- 3. the swap
    PERFORM set_config('lock_timeout', '500ms', true);
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE bars DETACH PARTITION %I', part);
            EXECUTE format('ALTER TABLE bars ATTACH PARTITION %I %s', tmp, bound);
            EXIT;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            attempt := attempt + 1;
            IF attempt >= 30 OR EXISTS (
                SELECT 1 FROM pg_locks WHERE relation = to_regclass(part) AND NOT granted
            ) THEN
                RAISE EXCEPTION 'md_compact_bar_partition: % is in use (attempt %); left as it was',
                    part, attempt USING ERRCODE = 'lock_not_available';
            END IF;
            PERFORM pg_sleep(0.5);
        END;
    END LOOP;
    EXECUTE format('DROP TABLE %I', part);
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tmp, part);
    EXECUTE format('ALTER INDEX %I RENAME TO %I', tmp || '_pkey', part || '_pkey');
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, tmp || '_bound');
    EXECUTE format('COMMENT ON TABLE %I IS %L', part,
                   'md:compacted rows=' || (copied + added) || ' at=' || now());
    RETURN copied + added;
END $$;
