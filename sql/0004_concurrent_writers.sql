-- oxitraffic schema, version 4: several instances write at once without waiting on each
-- other or deadlocking.
--
-- Measured by benches/load with two instances on one database: PostgreSQL reported
-- deadlocks in every run (never with one instance), each stalling both writers for
-- deadlock_timeout (1 s), so two instances counted fewer visits than one. Three causes:
-- * `UPDATE … FROM (subquery)` takes its rows in the join's order, not in key order: two
--   inserts of visits on overlapping paths could lock `paths` (or a spent-time update
--   `path_days`) in opposite orders. The rows are now locked in key order first.
-- * A statement whose WITH clauses modify tables runs them in an order PostgreSQL does not
--   promise (the main statement first, the others after it): the insert trigger took
--   site_days before path_days, and the views flush took rollup_state first and the day
--   rows after. Now each table is one statement, always paths, path_days, site_days, the
--   sources, then the version, in every writer.
-- * Every write bumped the one row of rollup_state and held its lock until its commit, so
--   all writers of all instances took turns on it. The version is now 64 rows, each
--   connection bumping its own (by backend pid); readers add them up. A cache compares the
--   sum before and after, which changes whenever any row does.

ALTER TABLE rollup_state DROP COLUMN singleton;
ALTER TABLE rollup_state ADD COLUMN shard smallint NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 63);
ALTER TABLE rollup_state ADD PRIMARY KEY (shard);
INSERT INTO rollup_state (shard, version) SELECT s, 0 FROM generate_series(1, 63) s;

CREATE OR REPLACE FUNCTION visits_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    zone text;
    offset_minutes integer;
    days date[];
    path_ids integer[];
    keys text[];
BEGIN
    SELECT time_zone, utc_offset_minutes INTO zone, offset_minutes FROM settings;

    PERFORM 1 FROM paths WHERE id IN (SELECT path_id FROM new_rows) ORDER BY id FOR NO KEY UPDATE;
    UPDATE paths p SET visits = p.visits + n.visits
    FROM (SELECT path_id, count(*) AS visits FROM new_rows GROUP BY path_id) n
    WHERE p.id = n.path_id;

    -- Each table in key order, one statement after the other (the parts of one statement
    -- with data-modifying WITH clauses run in an order PostgreSQL does not promise).
    INSERT INTO path_days AS t (path_id, day, visits, spent_0, spent_1, spent_2, spent_3, spent_4, spent_5, spent_6, spent_7, spent_8, spent_9, spent_10, spent_11, spent_12, spent_13)
    SELECT path_id, day, count(*),
           count(*) FILTER (WHERE bucket = 0) AS spent_0, count(*) FILTER (WHERE bucket = 1) AS spent_1, count(*) FILTER (WHERE bucket = 2) AS spent_2,
           count(*) FILTER (WHERE bucket = 3) AS spent_3, count(*) FILTER (WHERE bucket = 4) AS spent_4, count(*) FILTER (WHERE bucket = 5) AS spent_5,
           count(*) FILTER (WHERE bucket = 6) AS spent_6, count(*) FILTER (WHERE bucket = 7) AS spent_7, count(*) FILTER (WHERE bucket = 8) AS spent_8,
           count(*) FILTER (WHERE bucket = 9) AS spent_9, count(*) FILTER (WHERE bucket = 10) AS spent_10, count(*) FILTER (WHERE bucket = 11) AS spent_11,
           count(*) FILTER (WHERE bucket = 12) AS spent_12, count(*) FILTER (WHERE bucket = 13) AS spent_13
    FROM (SELECT path_id, local_day(registered_at, zone, offset_minutes) AS day,
                 spent_time_bucket(spent_time_seconds) AS bucket
          FROM new_rows) r
    GROUP BY path_id, day ORDER BY path_id, day
    ON CONFLICT (path_id, day) DO UPDATE SET visits = t.visits + excluded.visits,
        spent_0 = t.spent_0 + excluded.spent_0, spent_1 = t.spent_1 + excluded.spent_1, spent_2 = t.spent_2 + excluded.spent_2,
    spent_3 = t.spent_3 + excluded.spent_3, spent_4 = t.spent_4 + excluded.spent_4, spent_5 = t.spent_5 + excluded.spent_5,
    spent_6 = t.spent_6 + excluded.spent_6, spent_7 = t.spent_7 + excluded.spent_7, spent_8 = t.spent_8 + excluded.spent_8,
    spent_9 = t.spent_9 + excluded.spent_9, spent_10 = t.spent_10 + excluded.spent_10, spent_11 = t.spent_11 + excluded.spent_11,
    spent_12 = t.spent_12 + excluded.spent_12, spent_13 = t.spent_13 + excluded.spent_13;

    INSERT INTO site_days AS t (day, visits, spent_0, spent_1, spent_2, spent_3, spent_4, spent_5, spent_6, spent_7, spent_8, spent_9, spent_10, spent_11, spent_12, spent_13)
    SELECT day, count(*),
           count(*) FILTER (WHERE bucket = 0) AS spent_0, count(*) FILTER (WHERE bucket = 1) AS spent_1, count(*) FILTER (WHERE bucket = 2) AS spent_2,
           count(*) FILTER (WHERE bucket = 3) AS spent_3, count(*) FILTER (WHERE bucket = 4) AS spent_4, count(*) FILTER (WHERE bucket = 5) AS spent_5,
           count(*) FILTER (WHERE bucket = 6) AS spent_6, count(*) FILTER (WHERE bucket = 7) AS spent_7, count(*) FILTER (WHERE bucket = 8) AS spent_8,
           count(*) FILTER (WHERE bucket = 9) AS spent_9, count(*) FILTER (WHERE bucket = 10) AS spent_10, count(*) FILTER (WHERE bucket = 11) AS spent_11,
           count(*) FILTER (WHERE bucket = 12) AS spent_12, count(*) FILTER (WHERE bucket = 13) AS spent_13
    FROM (SELECT local_day(registered_at, zone, offset_minutes) AS day,
                 spent_time_bucket(spent_time_seconds) AS bucket
          FROM new_rows) r
    GROUP BY day ORDER BY day
    ON CONFLICT (day) DO UPDATE SET visits = t.visits + excluded.visits,
        spent_0 = t.spent_0 + excluded.spent_0, spent_1 = t.spent_1 + excluded.spent_1, spent_2 = t.spent_2 + excluded.spent_2,
    spent_3 = t.spent_3 + excluded.spent_3, spent_4 = t.spent_4 + excluded.spent_4, spent_5 = t.spent_5 + excluded.spent_5,
    spent_6 = t.spent_6 + excluded.spent_6, spent_7 = t.spent_7 + excluded.spent_7, spent_8 = t.spent_8 + excluded.spent_8,
    spent_9 = t.spent_9 + excluded.spent_9, spent_10 = t.spent_10 + excluded.spent_10, spent_11 = t.spent_11 + excluded.spent_11,
    spent_12 = t.spent_12 + excluded.spent_12, spent_13 = t.spent_13 + excluded.spent_13;

    SELECT array_agg(local_day(registered_at, zone, offset_minutes)), array_agg(path_id), array_agg(referrer)
    INTO days, path_ids, keys FROM new_rows WHERE referrer IS NOT NULL;
    IF keys IS NOT NULL THEN
        PERFORM record_sources(1::smallint, days, path_ids, keys);
    END IF;

    SELECT array_agg(local_day(registered_at, zone, offset_minutes)), array_agg(path_id),
           array_agg(campaign_key(utm_source, utm_medium, utm_campaign))
    INTO days, path_ids, keys
    FROM new_rows WHERE campaign_key(utm_source, utm_medium, utm_campaign) IS NOT NULL;
    IF keys IS NOT NULL THEN
        PERFORM record_sources(2::smallint, days, path_ids, keys);
    END IF;

    UPDATE rollup_state SET version = version + 1 WHERE shard = pg_backend_pid() % 64;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION visits_updated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    zone text;
    offset_minutes integer;
    moved integer;
BEGIN
    SELECT time_zone, utc_offset_minutes INTO zone, offset_minutes FROM settings;

    -- The rows this may change, locked in key order before anything changes them.
    PERFORM 1 FROM path_days t
    WHERE (t.path_id, t.day) IN
          (SELECT n.path_id, local_day(n.registered_at, zone, offset_minutes) FROM new_rows n)
    ORDER BY t.path_id, t.day FOR NO KEY UPDATE;
    PERFORM 1 FROM site_days t
    WHERE t.day IN (SELECT local_day(n.registered_at, zone, offset_minutes) FROM new_rows n)
    ORDER BY t.day FOR NO KEY UPDATE;

    WITH moves AS (
        SELECT n.path_id, local_day(n.registered_at, zone, offset_minutes) AS day,
               spent_time_bucket(o.spent_time_seconds) AS old_bucket,
               spent_time_bucket(n.spent_time_seconds) AS new_bucket
        FROM old_rows o JOIN new_rows n ON n.id = o.id
    ), per_path AS (
        SELECT path_id, day,
               count(*) FILTER (WHERE new_bucket = 0) - count(*) FILTER (WHERE old_bucket = 0) AS spent_0,
               count(*) FILTER (WHERE new_bucket = 1) - count(*) FILTER (WHERE old_bucket = 1) AS spent_1,
               count(*) FILTER (WHERE new_bucket = 2) - count(*) FILTER (WHERE old_bucket = 2) AS spent_2,
               count(*) FILTER (WHERE new_bucket = 3) - count(*) FILTER (WHERE old_bucket = 3) AS spent_3,
               count(*) FILTER (WHERE new_bucket = 4) - count(*) FILTER (WHERE old_bucket = 4) AS spent_4,
               count(*) FILTER (WHERE new_bucket = 5) - count(*) FILTER (WHERE old_bucket = 5) AS spent_5,
               count(*) FILTER (WHERE new_bucket = 6) - count(*) FILTER (WHERE old_bucket = 6) AS spent_6,
               count(*) FILTER (WHERE new_bucket = 7) - count(*) FILTER (WHERE old_bucket = 7) AS spent_7,
               count(*) FILTER (WHERE new_bucket = 8) - count(*) FILTER (WHERE old_bucket = 8) AS spent_8,
               count(*) FILTER (WHERE new_bucket = 9) - count(*) FILTER (WHERE old_bucket = 9) AS spent_9,
               count(*) FILTER (WHERE new_bucket = 10) - count(*) FILTER (WHERE old_bucket = 10) AS spent_10,
               count(*) FILTER (WHERE new_bucket = 11) - count(*) FILTER (WHERE old_bucket = 11) AS spent_11,
               count(*) FILTER (WHERE new_bucket = 12) - count(*) FILTER (WHERE old_bucket = 12) AS spent_12,
               count(*) FILTER (WHERE new_bucket = 13) - count(*) FILTER (WHERE old_bucket = 13) AS spent_13
        FROM moves WHERE old_bucket IS DISTINCT FROM new_bucket
        GROUP BY path_id, day
    ), paths_written AS (
        UPDATE path_days t SET
        spent_0 = t.spent_0 + d.spent_0, spent_1 = t.spent_1 + d.spent_1, spent_2 = t.spent_2 + d.spent_2,
        spent_3 = t.spent_3 + d.spent_3, spent_4 = t.spent_4 + d.spent_4, spent_5 = t.spent_5 + d.spent_5,
        spent_6 = t.spent_6 + d.spent_6, spent_7 = t.spent_7 + d.spent_7, spent_8 = t.spent_8 + d.spent_8,
        spent_9 = t.spent_9 + d.spent_9, spent_10 = t.spent_10 + d.spent_10, spent_11 = t.spent_11 + d.spent_11,
        spent_12 = t.spent_12 + d.spent_12, spent_13 = t.spent_13 + d.spent_13
        FROM (SELECT * FROM per_path ORDER BY path_id, day) d
        WHERE t.path_id = d.path_id AND t.day = d.day
    )
    UPDATE site_days t SET
        spent_0 = t.spent_0 + d.spent_0, spent_1 = t.spent_1 + d.spent_1, spent_2 = t.spent_2 + d.spent_2,
        spent_3 = t.spent_3 + d.spent_3, spent_4 = t.spent_4 + d.spent_4, spent_5 = t.spent_5 + d.spent_5,
        spent_6 = t.spent_6 + d.spent_6, spent_7 = t.spent_7 + d.spent_7, spent_8 = t.spent_8 + d.spent_8,
        spent_9 = t.spent_9 + d.spent_9, spent_10 = t.spent_10 + d.spent_10, spent_11 = t.spent_11 + d.spent_11,
        spent_12 = t.spent_12 + d.spent_12, spent_13 = t.spent_13 + d.spent_13
    FROM (SELECT day, sum(spent_0) AS spent_0, sum(spent_1) AS spent_1, sum(spent_2) AS spent_2, sum(spent_3) AS spent_3, sum(spent_4) AS spent_4, sum(spent_5) AS spent_5, sum(spent_6) AS spent_6,
           sum(spent_7) AS spent_7, sum(spent_8) AS spent_8, sum(spent_9) AS spent_9, sum(spent_10) AS spent_10, sum(spent_11) AS spent_11, sum(spent_12) AS spent_12, sum(spent_13) AS spent_13 FROM per_path GROUP BY day ORDER BY day) d
    WHERE t.day = d.day;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        UPDATE rollup_state SET version = version + 1 WHERE shard = pg_backend_pid() % 64;
    END IF;
    RETURN NULL;
END
$$;


-- The views and visitors tallied in memory (SPEC §8), in the same order as the triggers.
-- A path deleted by hand meanwhile is skipped.
CREATE FUNCTION flush_views(p_path_ids integer[], p_path_days integer[], p_path_views bigint[],
                            p_path_visitors bigint[], p_site_days integer[], p_site_views bigint[],
                            p_site_visitors bigint[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO path_days AS t (path_id, day, views, visitors)
    SELECT f.path_id, DATE '1970-01-01' + f.day, f.views, f.visitors
    FROM unnest(p_path_ids, p_path_days, p_path_views, p_path_visitors)
      AS f (path_id, day, views, visitors)
    WHERE f.path_id IN (SELECT id FROM paths)
    ORDER BY 1, 2
    ON CONFLICT (path_id, day) DO UPDATE
    SET views = t.views + excluded.views, visitors = t.visitors + excluded.visitors;

    INSERT INTO site_days AS t (day, views, visitors)
    SELECT DATE '1970-01-01' + f.day, f.views, f.visitors
    FROM unnest(p_site_days, p_site_views, p_site_visitors) AS f (day, views, visitors)
    ORDER BY 1
    ON CONFLICT (day) DO UPDATE
    SET views = t.views + excluded.views, visitors = t.visitors + excluded.visitors;

    UPDATE rollup_state SET version = version + 1 WHERE shard = pg_backend_pid() % 64;
END
$$;
