--
-- analyze: ANALYZE samples a table with at most the server's
-- analyze_requests requests (100 by default), stores the rows it expects
-- (reltuples) and the units of the list (relpages: batches, or tasks), and
-- the planner plans with them before anything a backend has learned.
--
\getenv big_mock_url NIMBLE_BIG_MOCK_URL

-- the 12 batches of the small account, 5 a page: every batch is read
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
ANALYZE nimble.batches;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
ANALYZE nimble.batch_tasks;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;
ANALYZE nimble.batch_progress;
-- 1,033 tasks are 207 pages of 5: the first 100 are read, the total is
-- the list's pagination.total
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
ANALYZE nimble.tasks;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
SELECT c.relname, c.relpages AS units, c.reltuples,
       (SELECT count(*) FROM nimble.batch_tasks) AS true_batch_tasks,
       (SELECT count(*) FROM nimble.tasks) AS true_tasks
  FROM pg_class c WHERE c.relnamespace = 'nimble'::regnamespace AND c.relkind = 'f'
 ORDER BY 1;

-- task_results has no list: nothing to sample
ANALYZE nimble.task_results;

-- column statistics come from the sampled rows
SELECT attname, round(null_frac::numeric, 3) AS null_frac, n_distinct,
       (most_common_vals::text::text[])[1] AS most_common
  FROM pg_stats WHERE schemaname = 'nimble' AND tablename = 'batch_tasks'
   AND attname IN ('batch_id', 'state', 'error_type')
 ORDER BY 1;

-- a budget of 4: two list pages reach 10 batches, of which every fifth is
-- read (the 1st and the 6th): a small sample, which misses the batch of
-- 1,000 tasks
ALTER SERVER nimble OPTIONS (ADD analyze_requests '4');
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
ANALYZE nimble.batch_tasks;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;
SELECT relpages AS units, reltuples FROM pg_class WHERE oid = 'nimble.batch_tasks'::regclass;
ALTER SERVER nimble OPTIONS (DROP analyze_requests);
ANALYZE nimble.batch_tasks;
\set VERBOSITY terse
ALTER SERVER nimble OPTIONS (ADD analyze_requests '0');
\set VERBOSITY default

--
-- 2,000 batches of 3 tasks: at most 100 requests, and reltuples within
-- 10% of the truth
--
\set big_url :big_mock_url '/v1'
CREATE SERVER big FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url :'big_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER big OPTIONS (api_key 'test-key');
CREATE SCHEMA big;
IMPORT FOREIGN SCHEMA nimble FROM SERVER big INTO big;
CREATE TABLE big_truth (relname text, true_rows bigint);
INSERT INTO big_truth VALUES ('batches', 2000), ('batch_progress', 2000),
  ('batch_tasks', 6000), ('tasks', 6000);
CREATE TABLE big_requests (relname text, requests jsonb);
\set x `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/reset"`
ANALYZE big.batches;
\set n `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/stats"`
INSERT INTO big_requests VALUES ('batches', (:'n'::jsonb) - 'by_path' - 'unauthorized');
\set x `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/reset"`
ANALYZE big.batch_progress;
\set n `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/stats"`
INSERT INTO big_requests VALUES ('batch_progress', (:'n'::jsonb) - 'by_path' - 'unauthorized');
\set x `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/reset"`
ANALYZE big.batch_tasks;
\set n `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/stats"`
INSERT INTO big_requests VALUES ('batch_tasks', (:'n'::jsonb) - 'by_path' - 'unauthorized');
\set x `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/reset"`
ANALYZE big.tasks;
\set n `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/stats"`
INSERT INTO big_requests VALUES ('tasks', (:'n'::jsonb) - 'by_path' - 'unauthorized');
SELECT c.relname, c.relpages AS units, c.reltuples, t.true_rows,
       abs(c.reltuples - t.true_rows) <= 0.1 * t.true_rows AS within_10_percent,
       (r.requests->>'total')::int AS requests,
       r.requests->>'list' AS list_pages
  FROM pg_class c JOIN big_truth t USING (relname) JOIN big_requests r USING (relname)
 WHERE c.relnamespace = 'big'::regnamespace
 ORDER BY 1;
-- the sample is spread over the list: batches from every part of it
SELECT count(DISTINCT v) AS distinct_batches_sampled,
       min(v) < 'b1000000-0000-4000-8000-000000000100' AS has_old,
       max(v) > 'b1000000-0000-4000-8000-000000000700' AS has_new
  FROM pg_stats, unnest(histogram_bounds::text::text[]) v
 WHERE schemaname = 'big' AND tablename = 'batch_progress' AND attname = 'batch_id';

-- the planner: ANALYZE's figures first...
SELECT plan_rows('SELECT * FROM big.batch_progress') AS analyzed_progress,
       plan_rows('SELECT * FROM big.batch_tasks') AS analyzed_tasks,
       plan_rows($$SELECT * FROM big.batch_tasks WHERE batch_id = 'b1000000-0000-4000-8000-000000000001'$$)
         AS analyzed_tasks_of_one_batch;
-- ...then what this backend learned (a table never analyzed, of the same
-- server, after the scans above)...
CREATE FOREIGN TABLE big.progress_again (batch_id text, progress numeric)
  SERVER big OPTIONS (resource 'batch_progress');
SELECT plan_rows('SELECT * FROM big.progress_again') AS learned;
-- ...and ANALYZE wins over what was learned: stored figures of 150
-- batches, as if the account had shrunk since
UPDATE pg_class SET reltuples = 150, relpages = 150 WHERE oid = 'big.batch_progress'::regclass;
SELECT plan_rows('SELECT * FROM big.batch_progress') AS analyzed,
       plan_rows('SELECT * FROM big.progress_again') AS learned;
-- a new backend has learned nothing: the guess for a table never analyzed
\c
SELECT plan_rows('SELECT * FROM big.progress_again') AS guessed,
       plan_rows('SELECT * FROM big.batch_progress') AS analyzed;

DROP TABLE big_truth, big_requests;
DROP SERVER big CASCADE;
DROP SCHEMA big;
