-- Raw visits past any sensible retention for the pruning phase of benches/load: :rows visits
-- of one path, spread over 300 days ending 100 days ago, in time order (as a real site wrote
-- them), half of them with a referrer and all with a time on page, so rows are as wide as
-- real ones.
--
-- They are written straight into `visits` with triggers off (session_replication_role =
-- replica): the roll-up triggers would make ten million rows take most of an hour, and
-- pruning never reads roll-ups (deleting raw visits changes none). The path must exist.
--
-- Run against a database the tracker has migrated:
--   psql -v ON_ERROR_STOP=1 -v rows=10000000 -v path=/p/1.html -f seed_old_visits.sql
\set ON_ERROR_STOP 1
SET search_path TO oxitraffic;
SET synchronous_commit TO off;
SET session_replication_role TO replica;

INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds)
SELECT (SELECT id FROM paths WHERE path = :'path'),
       now() - interval '400 days' + (i::float8 / :rows) * interval '300 days',
       CASE WHEN i % 2 = 0 THEN 'https://news.example/item' END,
       (i % 600)::int
FROM generate_series(1, :rows) i;

RESET session_replication_role;
VACUUM ANALYZE visits;
