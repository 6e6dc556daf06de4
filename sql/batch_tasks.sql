--
-- batch_tasks: one row per non-null task of each batch
--
\set VERBOSITY terse
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`

-- before any scan, the planner guesses 100 batches of 100 tasks
SELECT plan_rows('SELECT * FROM nimble.batch_tasks') AS guessed_rows;

-- every task: 3 list pages, then one /batches/{id} per batch (12)
SELECT count(*) AS tasks, count(DISTINCT batch_id) AS batches FROM nimble.batch_tasks;

-- now it knows: pagination.total said 12 batches, and they held 1,033 tasks
SELECT plan_rows('SELECT * FROM nimble.batch_tasks') AS learned_rows,
       plan_rows('SELECT * FROM nimble.batch_tasks WHERE batch_id = ''x''') AS rows_per_batch,
       plan_rows('SELECT * FROM nimble.batch_progress') AS batches;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=list"`
SELECT :n AS list_requests;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=details"`
SELECT :n AS details_requests;

-- unknown states pass through as text
SELECT state, count(*) FROM nimble.batch_tasks GROUP BY state ORDER BY state;

-- the 1,000-task batch, and the empty batch
SELECT count(*), min(task_id), max(task_id)
  FROM nimble.batch_tasks WHERE batch_id = 'b1000000-0000-4000-8000-000000000003';
SELECT count(*) FROM nimble.batch_tasks WHERE batch_id = 'b1000000-0000-4000-8000-000000000002';

-- null entries of "tasks" are skipped
SELECT task_id, state FROM nimble.batch_tasks
 WHERE batch_id = 'b1000000-0000-4000-8000-000000000004' ORDER BY task_id;

-- non-ASCII text, \u escapes (a surrogate pair too), jsonb columns
SELECT task_id, state, error, account_name, input, query
  FROM nimble.batch_tasks
 WHERE batch_id = 'b1000000-0000-4000-8000-000000000005' ORDER BY task_id;

-- a task with only the required fields: the others are NULL
SELECT * FROM nimble.batch_tasks
 WHERE batch_id = 'b1000000-0000-4000-8000-000000000006' ORDER BY task_id LIMIT 1;

-- the question the wrapper exists for
SELECT batch_id, count(*) FROM nimble.batch_tasks WHERE state = 'error'
 GROUP BY batch_id ORDER BY batch_id;

-- LIMIT stops the requests: no more batches than rows needed
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT task_id FROM nimble.batch_tasks LIMIT 3;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=details"`
SELECT :n <= 3 AS at_most_one_batch_per_row, :n AS details_requests;

-- a row never depends on the route
CREATE TEMP TABLE full_tasks AS SELECT * FROM nimble.batch_tasks;
SELECT count(*) FROM (
  SELECT * FROM full_tasks
  EXCEPT ALL
  SELECT t.* FROM (SELECT DISTINCT batch_id FROM full_tasks) b,
         LATERAL (SELECT * FROM nimble.batch_tasks k WHERE k.batch_id = b.batch_id) t
) missing_or_different;
SELECT count(*) FROM (
  SELECT t.* FROM (SELECT DISTINCT batch_id FROM full_tasks) b,
         LATERAL (SELECT * FROM nimble.batch_tasks k WHERE k.batch_id = b.batch_id) t
  EXCEPT ALL
  SELECT * FROM full_tasks
) extra_or_different;

-- a hand-written table: nested fields, other types, a column the API lacks
CREATE FOREIGN TABLE my_tasks (
  url text OPTIONS (field 'input.url'),
  render boolean OPTIONS (field 'input.render'),
  id uuid OPTIONS (field 'id'),
  code numeric OPTIONS (field 'status_code'),
  batch_id varchar,
  made timestamp OPTIONS (field 'created_at'),
  raw_input json OPTIONS (field 'input'),
  nonexistent text
) SERVER nimble OPTIONS (resource 'batch_tasks');
SELECT * FROM my_tasks WHERE batch_id = 'b1000000-0000-4000-8000-000000000001' ORDER BY id;
-- a value that does not fit: the error names the column, the value, the batch
CREATE FOREIGN TABLE bad_tasks (state integer, batch_id text)
  SERVER nimble OPTIONS (resource 'batch_tasks');
\set VERBOSITY default
SELECT * FROM bad_tasks WHERE batch_id = 'b1000000-0000-4000-8000-000000000001';
DROP FOREIGN TABLE my_tasks, bad_tasks;
