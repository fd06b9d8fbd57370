-- A large site for the insights benchmarks of benches/load: 100,000 paths and 10,000,000
-- visits over the last two years, written through the real triggers (so every roll-up is
-- what the tracker would have built), then views and visitors added to the roll-ups the way
-- the tracker's flush adds them.
--
-- Traffic is shaped like a real site's: path popularity follows Zipf's law (a path's share
-- is proportional to 1 / its rank), referrers come from a few dozen sites, a few percent of
-- visits carry a campaign, times on page spread from seconds to an hour, and visits are
-- written in time order.
--
-- Run against a database the tracker has migrated:
--   psql -v ON_ERROR_STOP=1 -v paths=100000 -v visits=10000000 -f seed_insights.sql
\set ON_ERROR_STOP 1
SET search_path TO oxitraffic;
SET synchronous_commit TO off;

INSERT INTO paths (path)
SELECT CASE WHEN i = 1 THEN '/' ELSE '/articles/' || i END FROM generate_series(1, :paths) i
ON CONFLICT DO NOTHING;

-- psql does not substitute variables inside the DO block below.
CREATE TEMPORARY TABLE seed_settings AS SELECT :visits::bigint AS visits;

CREATE TEMPORARY TABLE seed_paths AS
SELECT row_number() OVER (ORDER BY id) AS rank, id FROM paths;
CREATE UNIQUE INDEX ON seed_paths (rank);
ANALYZE seed_paths;

DO $$
DECLARE
    batch integer;
    batches integer := ceil((SELECT visits FROM seed_settings) / 100000.0);
    path_count integer := (SELECT count(*) FROM seed_paths);
BEGIN
    FOR batch IN 1..batches LOOP
        INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds,
                            utm_source, utm_medium, utm_campaign)
        SELECT p.id,
               -- Two years in time order, as a real site writes them (batch by batch,
               -- a week or so each, sorted within): raw visits lie on disk in time order
               -- and each day's roll-up rows are written by a few batches only.
               now() - interval '730 days' + (730 * 86400 * (batch - 1 + random()) / batches) * interval '1 second',
               CASE WHEN r.kind < 0.40 THEN NULL
                    WHEN r.kind < 0.55 THEN 'https://www.google.com/'
                    WHEN r.kind < 0.60 THEN 'https://duckduckgo.com/'
                    WHEN r.kind < 0.85 THEN 'https://site' || (r.pick * 40)::int || '.example/posts/' || (r.pick2 * 5)::int
                    ELSE 'https://news.example/item' END,
               CASE WHEN r.spent < 0.85 THEN exp(r.spent2 * 8.2)::int END,
               CASE WHEN r.campaign < 0.05 THEN (ARRAY['newsletter', 'mastodon', 'partner'])[1 + (r.pick * 2.99)::int] END,
               CASE WHEN r.campaign < 0.04 THEN (ARRAY['email', 'social'])[1 + (r.pick2 * 1.99)::int] END,
               CASE WHEN r.campaign < 0.05 THEN 'campaign-' || (r.pick * 20)::int END
        FROM generate_series(1, 100000) g
        -- The reference to g makes the subquery run once per row, not once per batch.
        CROSS JOIN LATERAL (SELECT g + random() - g AS kind, random() AS pick, random() AS pick2,
                                   random() AS spent, random() AS spent2, random() AS campaign,
                                   -- Zipf: density of the rank proportional to 1 / rank.
                                   least(path_count, floor(exp(random() * ln(path_count))) + 1)::int AS rank
                            OFFSET 0) r
        JOIN seed_paths p ON p.rank = r.rank
        ORDER BY 2;
        RAISE NOTICE 'batch % of %', batch, batches;
    END LOOP;
END
$$;

-- Views and visitors: the tracker tallies them; about 2.5 views and 0.8 visitors per visit.
UPDATE path_days SET views = (visits * (2 + random()))::bigint,
                     visitors = greatest(1, (visits * (0.6 + 0.3 * random()))::bigint);
UPDATE site_days s SET views = p.views, visitors = (p.visitors * 0.9)::bigint
FROM (SELECT day, sum(views) AS views, sum(visitors) AS visitors FROM path_days GROUP BY day) p
WHERE s.day = p.day;
UPDATE rollup_state SET version = version + 1;

VACUUM ANALYZE;
