--
-- batches: the list walk, the progress columns, routes and their equality
--
\set VERBOSITY terse
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`

-- every batch, newest first, over three list pages; absent username is NULL
SELECT batch_id, account_name, username, completed, created_at, task_count,
       task_ids[1:1] AS first_task
  FROM nimble.batches;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=list"`
SELECT :n AS list_requests;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=progress"`
SELECT :n AS progress_requests_without_progress_columns;

-- LIMIT 5: one page, one request
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT batch_id FROM nimble.batches LIMIT 5;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests_for_limit_5;
SELECT explain_analyze('SELECT batch_id, username FROM nimble.batches LIMIT 5');

-- the progress columns come from /progress, one request per batch
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT batch_id, completed, completed_count, progress, completed_at
  FROM nimble.batches ORDER BY batch_id;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=progress"`
SELECT :n AS progress_requests;
EXPLAIN (COSTS OFF) SELECT progress FROM nimble.batches;

-- under a LIMIT the window asks for no more batches than rows needed:
-- SELECT * LIMIT 3 is one list page and three /progress, LIMIT 2 OFFSET 1
-- the same; a sort needs every row, so ORDER BY ... LIMIT has no bound
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(progress) FROM (SELECT * FROM nimble.batches LIMIT 3) s;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=list"`
\set p `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=progress"`
SELECT :n AS list_requests, :p AS progress_requests;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(progress) FROM (SELECT * FROM nimble.batches LIMIT 2 OFFSET 1) s;
\set p `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=progress"`
SELECT :p AS progress_requests;
-- across list pages (5 batches a page): LIMIT 7 needs the second page but
-- not the third
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(progress) FROM (SELECT * FROM nimble.batches LIMIT 7) s;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=list"`
\set p `curl -s "$NIMBLE_MOCK_URL/_mock/count?endpoint=progress"`
SELECT :n AS list_requests, :p AS progress_requests;
EXPLAIN (COSTS OFF) SELECT * FROM nimble.batches LIMIT 3;
EXPLAIN (COSTS OFF) SELECT * FROM nimble.batches ORDER BY batch_id LIMIT 3;
EXPLAIN (COSTS OFF) SELECT * FROM nimble.batches WHERE completed LIMIT 3;

-- a key and only the columns /progress has: straight to /progress
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT batch_id, completed, completed_count, progress, completed_at
  FROM nimble.batches WHERE batch_id = 'b1000000-0000-4000-8000-000000000003';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
EXPLAIN (COSTS OFF) SELECT progress FROM nimble.batches
 WHERE batch_id = 'b1000000-0000-4000-8000-000000000003';

-- a key and a column only the list has: the list is walked until the key
-- is found (the first page here), never further
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT batch_id, username FROM nimble.batches
 WHERE batch_id = 'b1000000-0000-4000-8000-00000000000b';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
SELECT explain_analyze($$SELECT batch_id, username, progress FROM nimble.batches
 WHERE batch_id IN ('b1000000-0000-4000-8000-00000000000b', 'b1000000-0000-4000-8000-00000000000a')$$);

-- an unknown id has no rows, on both routes
SELECT * FROM nimble.batches WHERE batch_id = 'no-such-batch';
SELECT progress FROM nimble.batches WHERE batch_id = 'no-such-batch';

-- a row never depends on the route: for every batch, the keyed scan gives
-- exactly the full scan's row, every column equal
CREATE TEMP TABLE full_batches AS SELECT * FROM nimble.batches;
SELECT count(*) AS batches FROM full_batches;
SELECT f.batch_id
  FROM full_batches f
 WHERE NOT EXISTS (
   SELECT 1 FROM nimble.batches k
    WHERE k.batch_id = f.batch_id AND row(k.*) IS NOT DISTINCT FROM row(f.*));
SELECT f.batch_id
  FROM full_batches f
 WHERE (SELECT row(k.completed, k.completed_count, k.progress, k.completed_at)
          FROM nimble.batches k WHERE k.batch_id = f.batch_id)
       IS DISTINCT FROM row(f.completed, f.completed_count, f.progress, f.completed_at);

-- a hand-written table: any subset of columns, in any order, other types
CREATE FOREIGN TABLE my_batches (
  tasks int OPTIONS (field '#tasks'),
  id uuid OPTIONS (field 'id'),
  created timestamp OPTIONS (field 'created_at'),
  who varchar(20) OPTIONS (field 'username'),
  ids uuid[] OPTIONS (field 'tasks'),
  raw_tasks json OPTIONS (field 'tasks'),
  done text OPTIONS (field 'completed'),
  progress float8
) SERVER nimble OPTIONS (resource 'batches');
SELECT tasks, id, created, who, ids[1:2], left(raw_tasks::text, 40) AS raw, done, progress
  FROM my_batches WHERE id IN ('b1000000-0000-4000-8000-000000000001',
                               'b1000000-0000-4000-8000-000000000005');
DROP FOREIGN TABLE my_batches;
-- a value that does not fit: the error names the column, the value, the batch
CREATE FOREIGN TABLE short_names (username varchar(5)) SERVER nimble
  OPTIONS (resource 'batches');
\set VERBOSITY default
SELECT * FROM short_names;
DROP FOREIGN TABLE short_names;
