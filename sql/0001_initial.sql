-- oxitraffic schema, version 1.
--
-- Applied by the tracker at start-up inside one transaction that holds an advisory lock (see
-- src/db/migrate.rs); everything lives in the `oxitraffic` schema so that sharing a database
-- with other applications cannot collide. Nothing here can identify a person: a visit is a
-- path, a time, a referrer without query or fragment, and a duration.

-- One row, written at start-up: the offset the per-day counters below are bucketed in. When
-- the configured offset changes, the tracker rebuilds the counters (rebuild_visit_counters).
CREATE TABLE settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    utc_offset_minutes integer NOT NULL CHECK (utc_offset_minutes BETWEEN -1439 AND 1439)
);
INSERT INTO settings (utc_offset_minutes) VALUES (0);

-- Paths of the tracked site that passed validation.
CREATE TABLE paths (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path text NOT NULL UNIQUE CHECK (left(path, 1) = '/' AND octet_length(path) <= 2048),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    -- Maintained by the visits triggers; the dashboard sorts by it (in memory: even 100,000
    -- paths sort in milliseconds). It is deliberately not indexed, and pages are left half
    -- empty, so that its constant updates are HOT: no index entry per update, and the old
    -- row versions are pruned as pages are read, without waiting for autovacuum.
    visits bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

-- One row per counted visit.
CREATE TABLE visits (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path_id integer NOT NULL REFERENCES paths (id) ON DELETE CASCADE,
    registered_at timestamptz NOT NULL,
    referrer text CHECK (octet_length(referrer) <= 2048),
    spent_time_seconds integer CHECK (spent_time_seconds >= 0),
    -- The random visitor token: with the registration time it makes writing a visit
    -- idempotent, so a retry after a lost acknowledgement cannot count it twice.
    token bigint NOT NULL,
    UNIQUE (token, registered_at)
);
-- History of one path in time order, streamed by /api/history.
CREATE INDEX visits_by_path_and_time ON visits (path_id, registered_at, id);

-- Counters the dashboard reads instead of scanning visits. `scope` is a path id, or 0 for
-- the whole site (path ids start at 1). `day` is the local date in settings.utc_offset_minutes.
-- Only the (unindexed) `visits` column changes, and free space is left on each page, so the
-- frequent updates are HOT and clean up after themselves.
CREATE TABLE daily_visits (
    scope integer NOT NULL,
    day date NOT NULL,
    visits bigint NOT NULL,
    PRIMARY KEY (scope, day)
) WITH (fillfactor = 70);

CREATE TABLE daily_referrers (
    scope integer NOT NULL,
    day date NOT NULL,
    referrer text NOT NULL,
    visits bigint NOT NULL,
    PRIMARY KEY (scope, day, referrer)
) WITH (fillfactor = 70);

-- Time on page as a histogram: `bucket` is spent_time_bucket(spent_time_seconds).
CREATE TABLE daily_spent_time (
    scope integer NOT NULL,
    day date NOT NULL,
    bucket smallint NOT NULL,
    visits bigint NOT NULL,
    PRIMARY KEY (scope, day, bucket)
) WITH (fillfactor = 70);

-- Bucket boundaries in seconds; bucket i holds [bound(i), bound(i+1)). The dashboard reads
-- them back with spent_time_bucket_bounds() instead of keeping its own copy.
CREATE FUNCTION spent_time_bucket_bounds() RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY[0, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600] $$;

CREATE FUNCTION spent_time_bucket(seconds integer) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (width_bucket(seconds, oxitraffic.spent_time_bucket_bounds()) - 1)::smallint $$;

-- A signed contribution of one visit to the counters.
CREATE TYPE visit_delta AS (
    path_id integer,
    registered_at timestamptz,
    referrer text,
    spent_time_seconds integer,
    sign integer
);

-- Adds (sign 1) or removes (sign -1) visits from every counter. Rows are upserted in key
-- order so that concurrent writers lock them in the same order and cannot deadlock.
-- The functions fix their search_path: triggers fire for any client (psql, an import)
-- whatever its own search_path is.
CREATE FUNCTION apply_visit_deltas(deltas visit_delta[]) RETURNS void
LANGUAGE plpgsql SET search_path = oxitraffic, pg_temp AS $$
DECLARE
    local_offset interval;
BEGIN
    SELECT make_interval(mins => utc_offset_minutes) INTO local_offset FROM settings;

    UPDATE paths p SET visits = p.visits + d.change
    FROM (
        SELECT path_id, sum(sign) AS change FROM unnest(deltas)
        GROUP BY path_id HAVING sum(sign) <> 0
    ) d
    WHERE p.id = d.path_id;

    INSERT INTO daily_visits AS c (scope, day, visits)
    SELECT s.scope, (d.registered_at AT TIME ZONE local_offset)::date, sum(d.sign)
    FROM unnest(deltas) d CROSS JOIN LATERAL (VALUES (d.path_id), (0)) s (scope)
    GROUP BY 1, 2 HAVING sum(d.sign) <> 0 ORDER BY 1, 2
    ON CONFLICT (scope, day) DO UPDATE SET visits = c.visits + excluded.visits;

    INSERT INTO daily_referrers AS c (scope, day, referrer, visits)
    SELECT s.scope, (d.registered_at AT TIME ZONE local_offset)::date, d.referrer, sum(d.sign)
    FROM unnest(deltas) d CROSS JOIN LATERAL (VALUES (d.path_id), (0)) s (scope)
    WHERE d.referrer IS NOT NULL
    GROUP BY 1, 2, 3 HAVING sum(d.sign) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (scope, day, referrer) DO UPDATE SET visits = c.visits + excluded.visits;

    INSERT INTO daily_spent_time AS c (scope, day, bucket, visits)
    SELECT s.scope, (d.registered_at AT TIME ZONE local_offset)::date,
           spent_time_bucket(d.spent_time_seconds), sum(d.sign)
    FROM unnest(deltas) d CROSS JOIN LATERAL (VALUES (d.path_id), (0)) s (scope)
    WHERE d.spent_time_seconds IS NOT NULL
    GROUP BY 1, 2, 3 HAVING sum(d.sign) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (scope, day, bucket) DO UPDATE SET visits = c.visits + excluded.visits;
END
$$;

-- Statement-level triggers see every row a statement changed at once (transition tables),
-- so a batch of visits costs one counter update per distinct key, not one per row. Any
-- writer (the tracker, an import, a manual fix) keeps the counters right.
CREATE FUNCTION visits_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = oxitraffic, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM apply_visit_deltas(ARRAY(
            SELECT ROW(path_id, registered_at, referrer, spent_time_seconds, 1)::visit_delta FROM new_rows));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM apply_visit_deltas(ARRAY(
            SELECT ROW(path_id, registered_at, referrer, spent_time_seconds, 1)::visit_delta FROM new_rows
            UNION ALL
            SELECT ROW(path_id, registered_at, referrer, spent_time_seconds, -1)::visit_delta FROM old_rows));
    ELSE
        PERFORM apply_visit_deltas(ARRAY(
            SELECT ROW(path_id, registered_at, referrer, spent_time_seconds, -1)::visit_delta FROM old_rows));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER visits_inserted AFTER INSERT ON visits
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION visits_changed();
CREATE TRIGGER visits_updated AFTER UPDATE ON visits
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION visits_changed();
CREATE TRIGGER visits_deleted AFTER DELETE ON visits
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION visits_changed();

-- Recomputes every counter from the visits, one path at a time to bound the memory the
-- database needs. Run when the configured UTC offset changes.
CREATE FUNCTION rebuild_visit_counters() RETURNS void
LANGUAGE plpgsql SET search_path = oxitraffic, pg_temp AS $$

DECLARE
    one_path integer;
BEGIN
    TRUNCATE daily_visits, daily_referrers, daily_spent_time;
    UPDATE paths SET visits = 0 WHERE visits <> 0;
    FOR one_path IN SELECT id FROM paths ORDER BY id LOOP
        PERFORM apply_visit_deltas(ARRAY(
            SELECT ROW(path_id, registered_at, referrer, spent_time_seconds, 1)::visit_delta
            FROM visits WHERE path_id = one_path));
    END LOOP;
END
$$;
