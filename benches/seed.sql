-- Bulk data for the dashboard benchmarks: 10,000 paths and 1,200,000 visits over the last
-- year (1,000,000 of them on '/', so one path has a million-visit history). Written through
-- the same triggers as real visits, in batches so the counters stay cheap to maintain.
-- Run against a database the tracker has migrated: psql -v ON_ERROR_STOP=1 -f seed.sql
SET search_path TO oxitraffic;
INSERT INTO paths (path) SELECT '/' UNION ALL SELECT '/page/' || i FROM generate_series(1, 9999) i
ON CONFLICT DO NOTHING;
DO $$
DECLARE
    home integer := (SELECT id FROM paths WHERE path = '/');
    pages integer[] := ARRAY(SELECT id FROM paths WHERE path LIKE '/page/%' ORDER BY id);
    batch integer;
BEGIN
    FOR batch IN 0..11 LOOP
        INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds, token)
        SELECT CASE WHEN batch < 10 THEN home ELSE pages[1 + (i * 7919) % array_length(pages, 1)] END,
               now() - ((i * 104729) % (365 * 86400)) * interval '1 second',
               CASE i % 5 WHEN 0 THEN 'https://news.example/item' WHEN 1 THEN 'https://search.example/'
                          WHEN 2 THEN 'https://social.example/post/' || (i % 50) ELSE NULL END,
               CASE WHEN i % 9 = 0 THEN NULL ELSE 20 + (i * 31) % 900 END,
               batch::int8 * 1000000 + i
        FROM generate_series(1::int8, 100000) i;
    END LOOP;
END
$$;
ANALYZE;
