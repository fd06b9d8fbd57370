-- oxitraffic schema, version 2: permanent roll-ups, views and visitors, campaigns, time zones,
-- bounded referrers, and raw visits as a window that retention may shorten.
--
-- Applied by the tracker inside the migration transaction, with search_path set to its schema
-- (db.schema) and check_function_bodies off; nothing below names the schema, so one database
-- can hold several. Functions capture that search_path (SET search_path FROM CURRENT): triggers
-- fire for any client (psql, an import) whatever its own search_path is.
--
-- Roll-ups are append-only facts. Inserting a visit adds to them, a changed spent time moves
-- its histogram bucket, and deleting visits (retention, or by hand) changes nothing: raw visits
-- are a window, roll-ups are the history. Views and visitors are never raw rows at all: the
-- tracker tallies them in memory and adds them here about once a second.

-- What changed from version 1 and why:
-- * The DELETE trigger subtracted, so deleting old visits erased history; it is gone.
-- * The UPDATE trigger pushed every changed row through the full counter pipeline (as a -1 and
--   a +1) although only the time-on-page bucket can change; it now touches that histogram only.
-- * Counters were rows per (scope, day[, key]) with scope 0 meaning the site. Site and path
--   roll-ups are now tables of their own, one row per day, with the histogram in columns, so
--   a range of a year is 365 rows.
-- * Tokens (the idempotency key of a write) lived in `visits` forever; they move to their own
--   table and are deleted a day after the visit (SPEC §12).

-- Days are local days in settings.time_zone (an IANA name: daylight saving included, from
-- PostgreSQL's own zone database) or, when it is null, in the fixed utc_offset_minutes. The
-- tracker writes both at start-up. A roll-up keeps the day it was written with: changing the
-- zone applies from then on (raw visits may be gone, so nothing is rebuilt).
ALTER TABLE settings ADD COLUMN time_zone text CHECK (time_zone <> '');

CREATE FUNCTION local_day(instant timestamptz, zone text, offset_minutes integer) RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN zone IS NULL
                THEN (instant AT TIME ZONE make_interval(mins => offset_minutes))::date
                ELSE (instant AT TIME ZONE zone)::date END
$$;

-- The UTC offset in seconds that applies at an instant, for timestamps written with their own
-- offset (2024-03-31T01:59:00+01:00, then 03:00:00+02:00).
CREATE FUNCTION local_offset_seconds(instant timestamptz, zone text, offset_minutes integer)
RETURNS integer LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN zone IS NULL THEN offset_minutes * 60
                ELSE extract(epoch FROM (instant AT TIME ZONE zone) - (instant AT TIME ZONE 'UTC'))::integer END
$$;

-- The instant a local day starts (its first second may not be 00:00 where daylight saving
-- begins at midnight).
CREATE FUNCTION day_start(day date, zone text, offset_minutes integer) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN zone IS NULL
                THEN (day::timestamp - make_interval(mins => offset_minutes)) AT TIME ZONE 'UTC'
                ELSE day::timestamp AT TIME ZONE zone END
$$;

-- Version 1 named its schema here. Without a SET clause the function is inlined into the
-- triggers' queries (a call per row would cost more than the rest of the row's work), and the
-- bounds resolve through the triggers' search_path.
CREATE OR REPLACE FUNCTION spent_time_bucket(seconds integer) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (width_bucket(seconds, spent_time_bucket_bounds()) - 1)::smallint $$;

-- Idempotency keys: a write retried after a lost acknowledgement finds its visit here instead
-- of counting it twice. Kept for a day (the tracker prunes older rows), after which a visit can
-- no longer change and its token says nothing more.
CREATE TABLE visit_tokens (
    registered_at timestamptz NOT NULL,
    token bigint NOT NULL,
    visit_id bigint NOT NULL,
    PRIMARY KEY (registered_at, token)
);
INSERT INTO visit_tokens (registered_at, token, visit_id)
SELECT registered_at, token, id FROM visits WHERE registered_at > now() - interval '1 day';
ALTER TABLE visits DROP COLUMN token;

-- Campaign parameters of the page's own URL; a missing one is null, never ''.
ALTER TABLE visits
    ADD COLUMN utm_source text CHECK (length(utm_source) BETWEEN 1 AND 100),
    ADD COLUMN utm_medium text CHECK (length(utm_medium) BETWEEN 1 AND 100),
    ADD COLUMN utm_campaign text CHECK (length(utm_campaign) BETWEEN 1 AND 100);
-- Room on each page for the spent-time update that follows most inserts within minutes: the
-- new row version then stays on its page and touches no index (a HOT update), instead of
-- leaving a dead tuple and new entries in every index behind.
ALTER TABLE visits SET (fillfactor = 85);
-- Retention deletes and site-wide exports go by time.
CREATE INDEX visits_by_time ON visits (registered_at, id);

-- Per-day roll-ups, one row per day (and path). Histogram column spent_N counts the visits
-- whose time on page falls in bucket N of spent_time_bucket_bounds(). Only counters change
-- after a row is created, none of them indexed, and each page keeps free space, so the constant
-- updates are HOT and prune themselves.
CREATE TABLE site_days (
    day date PRIMARY KEY,
    views bigint NOT NULL DEFAULT 0,
    visits bigint NOT NULL DEFAULT 0,
    visitors bigint NOT NULL DEFAULT 0,
    spent_0 integer NOT NULL DEFAULT 0, spent_1 integer NOT NULL DEFAULT 0,
    spent_2 integer NOT NULL DEFAULT 0, spent_3 integer NOT NULL DEFAULT 0,
    spent_4 integer NOT NULL DEFAULT 0, spent_5 integer NOT NULL DEFAULT 0,
    spent_6 integer NOT NULL DEFAULT 0, spent_7 integer NOT NULL DEFAULT 0,
    spent_8 integer NOT NULL DEFAULT 0, spent_9 integer NOT NULL DEFAULT 0,
    spent_10 integer NOT NULL DEFAULT 0, spent_11 integer NOT NULL DEFAULT 0,
    spent_12 integer NOT NULL DEFAULT 0, spent_13 integer NOT NULL DEFAULT 0
) WITH (fillfactor = 70);

-- A path's counts of one day fit in 32 bits, and summing integers is much cheaper than
-- summing bigints (numeric arithmetic) when the pages table adds up a year of every path.
CREATE TABLE path_days (
    path_id integer NOT NULL REFERENCES paths (id) ON DELETE CASCADE,
    day date NOT NULL,
    views integer NOT NULL DEFAULT 0,
    visits integer NOT NULL DEFAULT 0,
    visitors integer NOT NULL DEFAULT 0,
    spent_0 integer NOT NULL DEFAULT 0, spent_1 integer NOT NULL DEFAULT 0,
    spent_2 integer NOT NULL DEFAULT 0, spent_3 integer NOT NULL DEFAULT 0,
    spent_4 integer NOT NULL DEFAULT 0, spent_5 integer NOT NULL DEFAULT 0,
    spent_6 integer NOT NULL DEFAULT 0, spent_7 integer NOT NULL DEFAULT 0,
    spent_8 integer NOT NULL DEFAULT 0, spent_9 integer NOT NULL DEFAULT 0,
    spent_10 integer NOT NULL DEFAULT 0, spent_11 integer NOT NULL DEFAULT 0,
    spent_12 integer NOT NULL DEFAULT 0, spent_13 integer NOT NULL DEFAULT 0,
    PRIMARY KEY (path_id, day)
) WITH (fillfactor = 70);
-- Every path in a range (the pages table).
CREATE INDEX path_days_by_day ON path_days (day);

-- Where visits came from: referrers (kind 1, the cleaned referrer URL) and campaigns (kind 2,
-- utm_source, utm_medium and utm_campaign joined by U+001F, a missing part empty; a control
-- character never comes from a visitor, so the join cannot be forged). They come from
-- visitors, so a hostile client can make every one of them distinct: what is kept per day is
-- bounded (see record_sources), and past the bound a new key counts in the "others" row ''.
CREATE TABLE site_sources (
    day date NOT NULL,
    kind smallint NOT NULL CHECK (kind IN (1, 2)),
    key text NOT NULL,
    visits bigint NOT NULL,
    PRIMARY KEY (day, kind, key)
) WITH (fillfactor = 70);

CREATE TABLE path_sources (
    path_id integer NOT NULL REFERENCES paths (id) ON DELETE CASCADE,
    day date NOT NULL,
    kind smallint NOT NULL CHECK (kind IN (1, 2)),
    key text NOT NULL,
    visits bigint NOT NULL,
    PRIMARY KEY (path_id, day, kind, key)
) WITH (fillfactor = 70);

-- How many distinct keys the bounded tables hold per day, so a bound is checked without
-- counting rows.
CREATE TABLE day_keys (
    day date NOT NULL,
    kind smallint NOT NULL,
    per_path boolean NOT NULL,
    keys integer NOT NULL,
    PRIMARY KEY (day, kind, per_path)
);

-- Bumped by every change to a roll-up, in the same transaction, so a cached aggregate can be
-- checked for freshness with one tiny read that sees exactly the committed state.
CREATE TABLE rollup_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO rollup_state DEFAULT VALUES;

-- The version 1 counters, carried over exactly: per-day visits, referrers and time-on-page
-- histograms of the site (scope 0) and of every path. Rows a deletion had brought to zero are
-- left behind. Version 1 kept no views or visitors, so those days show none.
INSERT INTO site_days (day, visits) SELECT day, visits FROM daily_visits WHERE scope = 0 AND visits <> 0;
INSERT INTO path_days (path_id, day, visits)
SELECT scope, day, visits FROM daily_visits
WHERE scope <> 0 AND visits <> 0 AND scope IN (SELECT id FROM paths);
INSERT INTO site_sources (day, kind, key, visits)
SELECT day, 1, referrer, visits FROM daily_referrers WHERE scope = 0 AND visits <> 0;
INSERT INTO path_sources (path_id, day, kind, key, visits)
SELECT scope, day, 1, referrer, visits FROM daily_referrers
WHERE scope <> 0 AND visits <> 0 AND scope IN (SELECT id FROM paths);
INSERT INTO day_keys (day, kind, per_path, keys)
SELECT day, 1, false, count(*) FROM site_sources GROUP BY day
UNION ALL SELECT day, 1, true, count(*) FROM path_sources GROUP BY day;

-- A histogram bucket of version 1 becomes a column; a (scope, day) that had times but no
-- visits row (impossible through the triggers, possible by hand) still gets its row.
CREATE TEMPORARY TABLE spent_v1 ON COMMIT DROP AS
SELECT scope, day,
       sum(visits) FILTER (WHERE bucket = 0) AS s0, sum(visits) FILTER (WHERE bucket = 1) AS s1,
       sum(visits) FILTER (WHERE bucket = 2) AS s2, sum(visits) FILTER (WHERE bucket = 3) AS s3,
       sum(visits) FILTER (WHERE bucket = 4) AS s4, sum(visits) FILTER (WHERE bucket = 5) AS s5,
       sum(visits) FILTER (WHERE bucket = 6) AS s6, sum(visits) FILTER (WHERE bucket = 7) AS s7,
       sum(visits) FILTER (WHERE bucket = 8) AS s8, sum(visits) FILTER (WHERE bucket = 9) AS s9,
       sum(visits) FILTER (WHERE bucket = 10) AS s10, sum(visits) FILTER (WHERE bucket = 11) AS s11,
       sum(visits) FILTER (WHERE bucket = 12) AS s12, sum(visits) FILTER (WHERE bucket = 13) AS s13
FROM daily_spent_time WHERE visits <> 0 GROUP BY scope, day;

INSERT INTO site_days AS t (day, spent_0, spent_1, spent_2, spent_3, spent_4, spent_5, spent_6,
                            spent_7, spent_8, spent_9, spent_10, spent_11, spent_12, spent_13)
SELECT day, coalesce(s0, 0), coalesce(s1, 0), coalesce(s2, 0), coalesce(s3, 0), coalesce(s4, 0),
       coalesce(s5, 0), coalesce(s6, 0), coalesce(s7, 0), coalesce(s8, 0), coalesce(s9, 0),
       coalesce(s10, 0), coalesce(s11, 0), coalesce(s12, 0), coalesce(s13, 0)
FROM spent_v1 WHERE scope = 0
ON CONFLICT (day) DO UPDATE SET
    spent_0 = excluded.spent_0, spent_1 = excluded.spent_1, spent_2 = excluded.spent_2,
    spent_3 = excluded.spent_3, spent_4 = excluded.spent_4, spent_5 = excluded.spent_5,
    spent_6 = excluded.spent_6, spent_7 = excluded.spent_7, spent_8 = excluded.spent_8,
    spent_9 = excluded.spent_9, spent_10 = excluded.spent_10, spent_11 = excluded.spent_11,
    spent_12 = excluded.spent_12, spent_13 = excluded.spent_13;

INSERT INTO path_days AS t (path_id, day, spent_0, spent_1, spent_2, spent_3, spent_4, spent_5,
                            spent_6, spent_7, spent_8, spent_9, spent_10, spent_11, spent_12, spent_13)
SELECT scope, day, coalesce(s0, 0), coalesce(s1, 0), coalesce(s2, 0), coalesce(s3, 0), coalesce(s4, 0),
       coalesce(s5, 0), coalesce(s6, 0), coalesce(s7, 0), coalesce(s8, 0), coalesce(s9, 0),
       coalesce(s10, 0), coalesce(s11, 0), coalesce(s12, 0), coalesce(s13, 0)
FROM spent_v1 WHERE scope <> 0 AND scope IN (SELECT id FROM paths)
ON CONFLICT (path_id, day) DO UPDATE SET
    spent_0 = excluded.spent_0, spent_1 = excluded.spent_1, spent_2 = excluded.spent_2,
    spent_3 = excluded.spent_3, spent_4 = excluded.spent_4, spent_5 = excluded.spent_5,
    spent_6 = excluded.spent_6, spent_7 = excluded.spent_7, spent_8 = excluded.spent_8,
    spent_9 = excluded.spent_9, spent_10 = excluded.spent_10, spent_11 = excluded.spent_11,
    spent_12 = excluded.spent_12, spent_13 = excluded.spent_13;

DROP TRIGGER visits_inserted ON visits;
DROP TRIGGER visits_updated ON visits;
DROP TRIGGER visits_deleted ON visits;
DROP FUNCTION visits_changed();
DROP FUNCTION rebuild_visit_counters();
DROP FUNCTION apply_visit_deltas(visit_delta[]);
DROP TYPE visit_delta;
DROP TABLE daily_visits, daily_referrers, daily_spent_time;


-- Bounds on what is kept per day of the keyed roll-ups. A site rarely sees a thousand distinct
-- referring pages a day; an attack sending millions costs at most this many rows a day, and
-- a year of them stays a few hundred thousand rows to read at worst.
CREATE FUNCTION source_limits(OUT site_per_day integer, OUT path_per_day integer,
                              OUT all_paths_per_day integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1000, 100, 20000 $$;

-- Adds a batch of visits' sources of one kind (parallel arrays: local day, path, key) to the
-- site and path tables, within the bounds: a key already kept counts in its own row; a new key
-- gets a row while there is room (the most frequent first), else it counts in ''. Two writers
-- racing for the last free keys of a day may overshoot a bound by one batch.
CREATE FUNCTION record_sources(source_kind smallint, days date[], path_ids integer[], keys text[])
RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    limits record := source_limits();
BEGIN
    WITH batch AS (
        SELECT day, key, count(*) AS visits FROM unnest(days, keys) AS b (day, key) GROUP BY day, key
    ), known AS (
        SELECT b.*, (s.day IS NOT NULL) AS present
        FROM batch b
        LEFT JOIN site_sources s ON s.day = b.day AND s.kind = source_kind AND s.key = b.key
    ), ranked AS (
        SELECT k.*,
               row_number() OVER (PARTITION BY k.day, k.present ORDER BY k.visits DESC, k.key) AS rank,
               limits.site_per_day - coalesce(d.keys, 0) AS room
        FROM known k
        LEFT JOIN day_keys d ON d.day = k.day AND d.kind = source_kind AND NOT d.per_path
    ), placed AS (
        SELECT day, CASE WHEN present OR rank <= room THEN key ELSE '' END AS key, sum(visits) AS visits
        FROM ranked GROUP BY 1, 2
    ), written AS (
        INSERT INTO site_sources AS t (day, kind, key, visits)
        SELECT day, source_kind, key, visits FROM placed ORDER BY day, key
        ON CONFLICT (day, kind, key) DO UPDATE SET visits = t.visits + excluded.visits
        RETURNING day, (xmax = 0) AS created
    )
    INSERT INTO day_keys AS t (day, kind, per_path, keys)
    SELECT day, source_kind, false, count(*) FROM written WHERE created GROUP BY day ORDER BY day
    ON CONFLICT (day, kind, per_path) DO UPDATE SET keys = t.keys + excluded.keys;

    -- Paths: a bound per path and day, and one for all paths together per day.
    WITH batch AS (
        SELECT day, path_id, key, count(*) AS visits
        FROM unnest(days, path_ids, keys) AS b (day, path_id, key) GROUP BY day, path_id, key
    ), known AS (
        SELECT b.*, (s.day IS NOT NULL) AS present
        FROM batch b
        LEFT JOIN path_sources s
          ON s.path_id = b.path_id AND s.day = b.day AND s.kind = source_kind AND s.key = b.key
    ), rooms AS (
        SELECT n.day, n.path_id,
               limits.path_per_day - (SELECT count(*) FROM path_sources s
                                      WHERE s.path_id = n.path_id AND s.day = n.day
                                        AND s.kind = source_kind) AS path_room
        FROM (SELECT DISTINCT day, path_id FROM known WHERE NOT present) n
    ), ranked AS (
        SELECT k.*,
               row_number() OVER (PARTITION BY k.day, k.path_id, k.present
                                  ORDER BY k.visits DESC, k.key) AS path_rank,
               row_number() OVER (PARTITION BY k.day, k.present
                                  ORDER BY k.visits DESC, k.path_id, k.key) AS day_rank,
               r.path_room,
               limits.all_paths_per_day - coalesce(d.keys, 0) AS day_room
        FROM known k
        LEFT JOIN rooms r ON r.day = k.day AND r.path_id = k.path_id
        LEFT JOIN day_keys d ON d.day = k.day AND d.kind = source_kind AND d.per_path
    ), placed AS (
        SELECT day, path_id,
               CASE WHEN present OR (path_rank <= path_room AND day_rank <= day_room) THEN key ELSE '' END AS key,
               sum(visits) AS visits
        FROM ranked GROUP BY 1, 2, 3
    ), written AS (
        INSERT INTO path_sources AS t (path_id, day, kind, key, visits)
        SELECT path_id, day, source_kind, key, visits FROM placed ORDER BY path_id, day, key
        ON CONFLICT (path_id, day, kind, key) DO UPDATE SET visits = t.visits + excluded.visits
        RETURNING day, (xmax = 0) AS created
    )
    INSERT INTO day_keys AS t (day, kind, per_path, keys)
    SELECT day, source_kind, true, count(*) FROM written WHERE created GROUP BY day ORDER BY day
    ON CONFLICT (day, kind, per_path) DO UPDATE SET keys = t.keys + excluded.keys;
END
$$;

-- The key of a visit's campaign, or null when it has none. Only immutable operators (not
-- concat_ws), so the function is inlined instead of called per row.
CREATE FUNCTION campaign_key(source text, medium text, campaign text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN coalesce(source, medium, campaign) IS NOT NULL
                THEN coalesce(source, '') || E'\x1f' || coalesce(medium, '') || E'\x1f' || coalesce(campaign, '') END
$$;

-- New visits (one statement, any number of rows): every roll-up they touch, each in key order
-- so that concurrent writers (several instances) lock rows in the same order.
CREATE FUNCTION visits_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    zone text;
    offset_minutes integer;
    days date[];
    path_ids integer[];
    keys text[];
BEGIN
    SELECT time_zone, utc_offset_minutes INTO zone, offset_minutes FROM settings;

    UPDATE paths p SET visits = p.visits + n.visits
    FROM (SELECT path_id, count(*) AS visits FROM new_rows GROUP BY path_id) n
    WHERE p.id = n.path_id;

    WITH per_path AS (
        SELECT path_id, day, count(*) AS visits,
           count(*) FILTER (WHERE bucket = 0) AS spent_0, count(*) FILTER (WHERE bucket = 1) AS spent_1, count(*) FILTER (WHERE bucket = 2) AS spent_2,
           count(*) FILTER (WHERE bucket = 3) AS spent_3, count(*) FILTER (WHERE bucket = 4) AS spent_4, count(*) FILTER (WHERE bucket = 5) AS spent_5,
           count(*) FILTER (WHERE bucket = 6) AS spent_6, count(*) FILTER (WHERE bucket = 7) AS spent_7, count(*) FILTER (WHERE bucket = 8) AS spent_8,
           count(*) FILTER (WHERE bucket = 9) AS spent_9, count(*) FILTER (WHERE bucket = 10) AS spent_10, count(*) FILTER (WHERE bucket = 11) AS spent_11,
           count(*) FILTER (WHERE bucket = 12) AS spent_12, count(*) FILTER (WHERE bucket = 13) AS spent_13
        FROM (SELECT path_id, local_day(registered_at, zone, offset_minutes) AS day,
                     spent_time_bucket(spent_time_seconds) AS bucket
              FROM new_rows) r
        GROUP BY path_id, day
    ), paths_written AS (
        INSERT INTO path_days AS t (path_id, day, visits, spent_0, spent_1, spent_2, spent_3, spent_4, spent_5, spent_6, spent_7, spent_8, spent_9, spent_10, spent_11, spent_12, spent_13)
        SELECT * FROM per_path ORDER BY path_id, day
        ON CONFLICT (path_id, day) DO UPDATE SET visits = t.visits + excluded.visits,
            spent_0 = t.spent_0 + excluded.spent_0, spent_1 = t.spent_1 + excluded.spent_1, spent_2 = t.spent_2 + excluded.spent_2,
    spent_3 = t.spent_3 + excluded.spent_3, spent_4 = t.spent_4 + excluded.spent_4, spent_5 = t.spent_5 + excluded.spent_5,
    spent_6 = t.spent_6 + excluded.spent_6, spent_7 = t.spent_7 + excluded.spent_7, spent_8 = t.spent_8 + excluded.spent_8,
    spent_9 = t.spent_9 + excluded.spent_9, spent_10 = t.spent_10 + excluded.spent_10, spent_11 = t.spent_11 + excluded.spent_11,
    spent_12 = t.spent_12 + excluded.spent_12, spent_13 = t.spent_13 + excluded.spent_13
    )
    INSERT INTO site_days AS t (day, visits, spent_0, spent_1, spent_2, spent_3, spent_4, spent_5, spent_6, spent_7, spent_8, spent_9, spent_10, spent_11, spent_12, spent_13)
    SELECT day, sum(visits),
           sum(spent_0) AS spent_0, sum(spent_1) AS spent_1, sum(spent_2) AS spent_2, sum(spent_3) AS spent_3, sum(spent_4) AS spent_4, sum(spent_5) AS spent_5, sum(spent_6) AS spent_6,
           sum(spent_7) AS spent_7, sum(spent_8) AS spent_8, sum(spent_9) AS spent_9, sum(spent_10) AS spent_10, sum(spent_11) AS spent_11, sum(spent_12) AS spent_12, sum(spent_13) AS spent_13
    FROM per_path GROUP BY day ORDER BY day
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

    UPDATE rollup_state SET version = version + 1;
    RETURN NULL;
END
$$;

-- Changed visits: only the time on page moves a roll-up (from its old histogram bucket to the
-- new one, in the visit's row of its path and day). Any other change by hand is left to the
-- raw visit; roll-ups are facts about what was counted.
CREATE FUNCTION visits_updated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    zone text;
    offset_minutes integer;
    moved integer;
BEGIN
    SELECT time_zone, utc_offset_minutes INTO zone, offset_minutes FROM settings;

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
        UPDATE rollup_state SET version = version + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER visits_inserted AFTER INSERT ON visits
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION visits_inserted();
CREATE TRIGGER visits_updated AFTER UPDATE ON visits
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION visits_updated();
