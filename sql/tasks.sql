--
-- tasks and task_results: GET /tasks, /tasks/{id}, /tasks/{id}/results
--
\getenv mock_url NIMBLE_MOCK_URL
\set api_url :mock_url '/v1'
\set VERBOSITY terse
\set b1 'b1000000-0000-4000-8000-000000000001'
\set b7 'b1000000-0000-4000-8000-000000000007'
\set t1_1 '7a000000-0001-4000-8000-000000000001'
\set t6_1 '7a000000-0006-4000-8000-000000000001'
\set t7_3 '7a000000-0007-4000-8000-000000000003'

-- page_size 200: the mock's 1,033 tasks are six list pages
CREATE SERVER tsk FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'api_url', page_size '200', max_retries '0',
           max_requests_per_second '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER tsk OPTIONS (api_key 'test-key');
CREATE SCHEMA tsk;
IMPORT FOREIGN SCHEMA nimble LIMIT TO (tasks, task_results, batch_tasks)
  FROM SERVER tsk INTO tsk;
\d tsk.tasks
\d tsk.task_results

-- the whole list: six pages, no other request
EXPLAIN (COSTS OFF) SELECT * FROM tsk.tasks WHERE state = 'error';
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(*), count(batch_id) AS with_batch_id,
       count(*) FILTER (WHERE state = 'error') AS errors
  FROM tsk.tasks;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;

-- tasks has the rows of batch_tasks, every column equal; batch 6's tasks
-- carry no batch_id of their own (NULL in tasks, the key in batch_tasks)
CREATE TEMP TABLE all_tasks AS SELECT * FROM tsk.tasks;
CREATE TEMP TABLE all_batch_tasks AS SELECT * FROM tsk.batch_tasks;
SELECT task_id, batch_id, state FROM all_tasks WHERE batch_id IS NULL ORDER BY task_id;
CREATE TEMP TABLE all_tasks_keyed AS SELECT * FROM all_tasks;
UPDATE all_tasks_keyed SET batch_id = 'b1000000-0000-4000-8000-000000000006'
 WHERE batch_id IS NULL;
SELECT count(*) FROM (
  (SELECT * FROM all_tasks_keyed EXCEPT ALL SELECT * FROM all_batch_tasks)
  UNION ALL
  (SELECT * FROM all_batch_tasks EXCEPT ALL SELECT * FROM all_tasks_keyed)
) different;

-- task_id = ... goes to /tasks/{id}: one request, the same row as the list's
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
EXPLAIN (COSTS OFF) SELECT * FROM tsk.tasks WHERE task_id = :'t7_3';
SELECT task_id, batch_id, state, status_code, error, error_type, input
  FROM tsk.tasks WHERE task_id = :'t7_3';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=task"`
SELECT :n AS task_requests;
SELECT count(*) FROM (
  SELECT * FROM all_tasks
  EXCEPT ALL
  SELECT k.* FROM all_tasks f,
         LATERAL (SELECT * FROM tsk.tasks k WHERE k.task_id = f.task_id) k
) missing_or_different;

-- IN: one request per distinct id; an unknown id is no row (404)
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT task_id, state FROM tsk.tasks
 WHERE task_id IN (:'t1_1', :'t6_1', :'t1_1', 'no-such-task') ORDER BY task_id;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;

-- lazy: LIMIT 5 reads one page
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT task_id, state FROM tsk.tasks LIMIT 5;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- task_results needs task ids: without a condition, a planning error
SELECT * FROM tsk.task_results;
\set VERBOSITY default
SELECT result FROM tsk.task_results WHERE result->>'status' = 'success';
EXPLAIN SELECT * FROM tsk.task_results;
\set VERBOSITY terse

-- one task's results: the body as jsonb; unfinished or unknown -> no row
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT task_id, jsonb_pretty(result) FROM tsk.task_results WHERE task_id = :'t1_1';
SELECT * FROM tsk.task_results WHERE task_id IN (:'t6_1', 'no-such-task');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=results"`
SELECT :n AS results_requests;
-- non-ASCII text inside the result survives
SELECT result->'data'->'parsing'->>'title' AS title
  FROM tsk.task_results WHERE task_id = '7a000000-0005-4000-8000-000000000002';

-- the issue's query: a join from batch_tasks gives the task ids
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
PREPARE batch_results(text) AS
  SELECT t.task_id, r.result->'data'->'parsing'->>'title' AS title,
         (r.result->'data'->'parsing'->>'price')::numeric AS price
    FROM tsk.batch_tasks t JOIN tsk.task_results r USING (task_id)
   WHERE t.batch_id = $1 AND t.state = 'success'
   ORDER BY t.task_id;
-- (the plan, a key join that asks for the results of the outer side's
-- task ids max_concurrency at a time, is in key_join)
EXECUTE batch_results(:'b7');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;
-- states other than success: a 404 is no row, so the join drops them
SELECT t.task_id, t.state, r.task_id IS NOT NULL AS has_result
  FROM tsk.batch_tasks t LEFT JOIN tsk.task_results r USING (task_id)
 WHERE t.batch_id = :'b7' ORDER BY t.task_id;

-- the same as one keyed scan: every result requested at once
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(*), sum((result->'data'->'parsing'->>'price')::numeric) AS total_price
  FROM tsk.task_results
 WHERE task_id = ANY (ARRAY(SELECT task_id FROM tsk.batch_tasks
                             WHERE batch_id = 'b1000000-0000-4000-8000-000000000003'
                               AND state = 'success'));
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;

-- a local table of ids joins too
CREATE TEMP TABLE wanted (task_id text);
INSERT INTO wanted VALUES (:'t1_1'), (:'t7_3'), ('7a000000-0008-4000-8000-000000000002');
SELECT w.task_id, r.result->>'status' AS status
  FROM wanted w LEFT JOIN tsk.task_results r ON r.task_id = w.task_id
 ORDER BY w.task_id;

-- '$row': any table can keep its whole row as jsonb
CREATE FOREIGN TABLE tsk.raw_tasks
  (batch_id text, task_id text, raw jsonb OPTIONS (field '$row'))
  SERVER tsk OPTIONS (resource 'batch_tasks');
SELECT task_id, raw->>'id' = task_id AS same_id, jsonb_typeof(raw) AS type,
       raw->'input'->>'url' AS url
  FROM tsk.raw_tasks WHERE batch_id = :'b1' ORDER BY task_id;
-- the whole row equals the columns read one by one
SELECT count(*) FROM tsk.raw_tasks r JOIN all_batch_tasks t USING (task_id)
 WHERE r.batch_id = 'b1000000-0000-4000-8000-000000000004'
   AND r.raw->>'state' = t.state AND r.raw->'input' = t.input;

-- bad bodies are errors naming the endpoint
\set fault_url :mock_url '/fault=data_not_array/on=task/v1'
CREATE SERVER tsk_fault FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'fault_url', max_retries '0',
           max_requests_per_second '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER tsk_fault OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE tsk.fault_tasks (task_id text, state text)
  SERVER tsk_fault OPTIONS (resource 'tasks');
\set VERBOSITY default
SELECT * FROM tsk.fault_tasks WHERE task_id = :'t1_1';
\set fault_url :mock_url '/fault=wrong_type/on=task/v1'
ALTER SERVER tsk_fault OPTIONS (SET url :'fault_url');
ALTER FOREIGN TABLE tsk.fault_tasks ADD COLUMN status_code integer;
SELECT * FROM tsk.fault_tasks WHERE task_id = :'t1_1';
SELECT task_id, state FROM tsk.fault_tasks WHERE task_id = :'t1_1';
\set VERBOSITY terse

DROP SCHEMA tsk CASCADE;
DROP SERVER tsk_fault CASCADE;
DROP SERVER tsk CASCADE;
