--
-- The demo that `make demo` runs: nimble_fdw against the bundled mock API,
-- or against the real API when NIMBLE_API_KEY is set.
--
\getenv nimble_url NIMBLE_URL
\getenv nimble_key NIMBLE_API_KEY
\pset footer off
\set ECHO queries

CREATE EXTENSION nimble_fdw;
CREATE SERVER nimble FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url :'nimble_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER nimble OPTIONS (api_key :'nimble_key');
CREATE SCHEMA nimble;
IMPORT FOREIGN SCHEMA nimble FROM SERVER nimble INTO nimble;

-- the newest batches
SELECT batch_id, username, completed, task_count, created_at
  FROM nimble.batches ORDER BY created_at DESC LIMIT 5;

-- how far along is each batch?
SELECT batch_id, completed, completed_count, progress
  FROM nimble.batch_progress ORDER BY progress, batch_id LIMIT 5;

-- which tasks failed, and why?
SELECT batch_id, task_id, error_type, error
  FROM nimble.batch_tasks WHERE state = 'error'
 ORDER BY modified_at DESC NULLS LAST LIMIT 5;

-- task states across all batches
SELECT state, count(*) FROM nimble.batch_tasks GROUP BY state ORDER BY count(*) DESC;

-- a join with a local table: one request per watched batch
CREATE TEMP TABLE watched AS SELECT batch_id FROM nimble.batches LIMIT 2;
ANALYZE watched;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT w.batch_id, t.state, count(*)
  FROM watched w JOIN nimble.batch_tasks t USING (batch_id)
 GROUP BY 1, 2;

-- the results of the successful tasks of the newest batch
SELECT t.task_id, r.result->'data'->'parsing' AS parsed
  FROM nimble.batch_tasks t JOIN nimble.task_results r USING (task_id)
 WHERE t.batch_id = (SELECT batch_id FROM nimble.batches
                      ORDER BY created_at DESC LIMIT 1)
   AND t.state = 'success'
 ORDER BY t.task_id LIMIT 3;
