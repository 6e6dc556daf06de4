--
-- pushdown: every form of a batch_id condition becomes endpoint calls
--
\set VERBOSITY terse
\set b1 'b1000000-0000-4000-8000-000000000001'
\set b4 'b1000000-0000-4000-8000-000000000004'
\set b8 'b1000000-0000-4000-8000-000000000008'

-- = constant
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks WHERE batch_id = :'b1';
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT task_id FROM nimble.batch_tasks WHERE batch_id = :'b1' ORDER BY 1;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- IN (...), duplicates and NULLs included: one request per distinct key
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks
 WHERE batch_id IN (:'b1', :'b4', :'b1', NULL);
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT batch_id, count(*) FROM nimble.batch_tasks
 WHERE batch_id IN (:'b1', :'b4', :'b1', NULL) GROUP BY 1 ORDER BY 1;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- = ANY(array)
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks
 WHERE batch_id = ANY (ARRAY[:'b1', :'b8']);
SELECT batch_id, count(*) FROM nimble.batch_tasks
 WHERE batch_id = ANY (ARRAY[:'b1', :'b8']) GROUP BY 1 ORDER BY 1;

-- OR of key conditions
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks
 WHERE batch_id = :'b1' OR batch_id IN (:'b4', :'b8');
SELECT batch_id, count(*) FROM nimble.batch_tasks
 WHERE batch_id = :'b1' OR batch_id IN (:'b4', :'b8') GROUP BY 1 ORDER BY 1;

-- an expression computed before the scan (stable, no columns)
SELECT count(*) FROM nimble.batch_tasks
 WHERE batch_id = 'b1000000-0000-4000-8000-' || lpad('1', 12, '0');

-- the key condition and other conditions: the others are checked locally
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks
 WHERE batch_id = :'b4' AND state = 'error';
SELECT task_id, state FROM nimble.batch_tasks WHERE batch_id = :'b4' AND state = 'error';

-- two key conditions ANDed: the narrower is pushed, both are checked
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks
 WHERE batch_id IN (:'b1', :'b4', :'b8') AND batch_id = :'b4';
SELECT count(*) FROM nimble.batch_tasks
 WHERE batch_id IN (:'b1', :'b4', :'b8') AND batch_id = :'b4';

-- conditions that are not key conditions are not pushed
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks WHERE batch_id LIKE 'b1%';
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks
 WHERE batch_id = :'b1' OR state = 'error';
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks
 WHERE batch_id = (random()::text);
-- a case-insensitive collation would match ids the API does not: the key
-- is matched in the list under the collation, never sent
CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
EXPLAIN (COSTS OFF) SELECT task_id FROM nimble.batch_tasks
 WHERE batch_id = upper(:'b1') COLLATE case_insensitive;
SELECT count(*) FROM nimble.batch_tasks WHERE batch_id = upper(:'b1') COLLATE case_insensitive;
DROP COLLATION case_insensitive;

-- prepared statements: custom plans, then the generic plan
PREPARE by_id(text) AS SELECT count(*) FROM nimble.batch_tasks WHERE batch_id = $1;
EXECUTE by_id(:'b1');
EXECUTE by_id(:'b4');
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE by_id(:'b1');
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
EXECUTE by_id(:'b1');
EXECUTE by_id(:'b8');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests_for_two_executions;
PREPARE by_ids(text[]) AS
  SELECT batch_id, count(*) FROM nimble.batch_tasks WHERE batch_id = ANY ($1) GROUP BY 1 ORDER BY 1;
EXPLAIN (COSTS OFF) EXECUTE by_ids(ARRAY[:'b1', :'b4']);
EXECUTE by_ids(ARRAY[:'b1', :'b4']);
EXECUTE by_ids(ARRAY[]::text[]);
EXECUTE by_ids(NULL);
RESET plan_cache_mode;
DEALLOCATE ALL;

-- a key from a subquery (an initplan parameter; its plan is in explain_params)
SELECT count(*) FROM nimble.batch_tasks
 WHERE batch_id = (SELECT max(batch_id) FROM nimble.batches);

-- ids are path segments: they are percent-encoded, never a path; "", "."
-- and ".." are no id at all: no request, and EXPLAIN does not count them
-- (nor a repeat, nor NULL)
EXPLAIN (COSTS OFF) SELECT count(*) FROM nimble.batch_tasks
 WHERE batch_id IN ('../batches', 'a/b?c=d', '', '.', '..', 'a/b?c=d', NULL);
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(*) FROM nimble.batch_tasks WHERE batch_id IN ('../batches', 'a/b?c=d', '', '.', '..');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT jsonb_object_keys((:'n'::jsonb)->'by_path') AS paths_requested ORDER BY 1;

-- a uuid key column: many texts are one uuid, and the API knows one of
-- them, so the key is matched in the list by uuid's = (key_types has more)
CREATE FOREIGN TABLE uuid_progress (batch_id uuid, progress numeric)
  SERVER nimble OPTIONS (resource 'batch_progress');
EXPLAIN (COSTS OFF) SELECT * FROM uuid_progress WHERE batch_id = :'b1';
SELECT * FROM uuid_progress WHERE batch_id = :'b1';
DROP FOREIGN TABLE uuid_progress;
