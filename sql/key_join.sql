--
-- key_join: a join on the key column reads the outer side in blocks and
-- asks for each block's distinct keys at once, max_concurrency at a time.
-- Its rows are a nested loop's: every query here is run with the key join
-- and without it (nimble_fdw.enable_key_join off), and the two compared.
--
\getenv mock_url NIMBLE_MOCK_URL
\getenv big_mock_url NIMBLE_BIG_MOCK_URL
\set b1 'b1000000-0000-4000-8000-000000000001'
\set b4 'b1000000-0000-4000-8000-000000000004'
\set b7 'b1000000-0000-4000-8000-000000000007'

-- the outer side: a repeated key, a NULL key, an id the API does not know
CREATE TEMP TABLE kw (batch_id text, note text);
INSERT INTO kw VALUES
  (:'b1', 'one'), (:'b1', 'one again'), (:'b4', 'has nulls'), (NULL, 'no key'),
  ('no-such-batch', 'unknown'), ('b1000000-0000-4000-8000-00000000000c', 'twelve'),
  ('b1000000-0000-4000-8000-000000000006', 'six');
ANALYZE kw;

-- check(query): whether the planner used the key join, the rows, and
-- whether they are the rows of the same query without it (as multisets)
CREATE FUNCTION check_key_join(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  plan text := '';
  line text;
  n bigint;
  diff bigint;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
    plan := plan || line || E'\n';
  END LOOP;
  EXECUTE 'CREATE TEMP TABLE kj_on AS ' || query;
  SET LOCAL nimble_fdw.enable_key_join = off;
  EXECUTE 'CREATE TEMP TABLE kj_off AS ' || query;
  SET LOCAL nimble_fdw.enable_key_join = on;
  SELECT count(*) INTO n FROM kj_on;
  SELECT count(*) INTO diff FROM ((TABLE kj_on EXCEPT ALL TABLE kj_off)
                                  UNION ALL (TABLE kj_off EXCEPT ALL TABLE kj_on)) d;
  DROP TABLE kj_on, kj_off;
  RETURN format('%s, %s rows, %s',
                CASE WHEN plan LIKE '%NimbleKeyJoin%' THEN 'key join' ELSE 'no key join' END,
                n, CASE WHEN diff = 0 THEN 'same rows' ELSE diff || ' rows differ' END);
END $$;

-- plan_shape(query): the plan's nodes and routes (the conditions of a
-- parameterized scan, which 17 prints the other way round, are left out;
-- explain_params shows them)
CREATE FUNCTION plan_shape(query text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
    IF line !~ '^\s*(Filter|Cache|Hash Cond|Nimble Keys)' THEN
      RETURN NEXT line;
    END IF;
  END LOOP;
END $$;

CREATE TABLE kj_queries (pos int PRIMARY KEY, what text, query text);
INSERT INTO kj_queries VALUES
  (1, 'inner',
   'SELECT kw.note, t.task_id, t.state FROM kw JOIN nimble.batch_tasks t USING (batch_id)'),
  (2, 'left',
   'SELECT kw.note, t.task_id FROM kw LEFT JOIN nimble.batch_tasks t USING (batch_id)'),
  (3, 'semi (EXISTS)',
   $q$SELECT kw.note FROM kw WHERE EXISTS
        (SELECT FROM nimble.batch_tasks t WHERE t.batch_id = kw.batch_id AND t.state = 'error')$q$),
  (4, 'semi (IN)',
   'SELECT kw.note FROM kw WHERE batch_id IN (SELECT batch_id FROM nimble.batch_progress WHERE completed)'),
  (5, 'anti (NOT EXISTS)',
   'SELECT kw.note FROM kw WHERE NOT EXISTS (SELECT FROM nimble.batch_progress p WHERE p.batch_id = kw.batch_id)'),
  (6, 'left, a further join condition',
   $q$SELECT kw.note, t.task_id FROM kw LEFT JOIN nimble.batch_tasks t
        ON t.batch_id = kw.batch_id AND t.state <> kw.note AND t.task_id > '7a000000-0004-4000-8000-000000000001'$q$),
  (7, 'left, a condition above the join',
   $q$SELECT kw.note, t.state FROM kw LEFT JOIN nimble.batch_tasks t USING (batch_id)
       WHERE coalesce(t.state, 'none') <> 'success'$q$),
  (8, 'inner, the inner table''s own condition',
   $q$SELECT kw.note, t.task_id FROM kw JOIN nimble.batch_tasks t USING (batch_id) WHERE t.state = 'error'$q$),
  (9, 'anti, a further join condition',
   $q$SELECT kw.note FROM kw WHERE NOT EXISTS
        (SELECT FROM nimble.batch_tasks t WHERE t.batch_id = kw.batch_id AND t.state = kw.note)$q$),
  (10, 'the key from an expression',
   'SELECT kw.note, p.progress FROM kw JOIN nimble.batch_progress p ON p.batch_id = lower(kw.batch_id)'),
  (11, 'a CTE outside',
   $q$WITH ids AS MATERIALIZED (SELECT DISTINCT batch_id FROM kw)
      SELECT ids.batch_id AS id, p.completed FROM ids JOIN nimble.batch_progress p USING (batch_id)$q$),
  (12, 'an aggregate outside',
   $q$SELECT s.n, p.progress FROM (SELECT batch_id, count(*) AS n FROM kw GROUP BY batch_id) s
        LEFT JOIN nimble.batch_progress p USING (batch_id)$q$),
  (13, 'the whole inner row',
   'SELECT kw.note, count(t.*) AS n, count(*) AS all_rows FROM kw LEFT JOIN nimble.batch_tasks t USING (batch_id) GROUP BY kw.note'),
  (14, 'batches, the columns /progress has',
   'SELECT kw.note, b.completed, b.progress FROM kw JOIN nimble.batches b USING (batch_id)'),
  (15, 'no outer rows',
   'SELECT kw.note, t.task_id FROM kw JOIN nimble.batch_tasks t USING (batch_id) WHERE kw.note = $$nothing$$'),
  (16, 'another nimble_fdw scan outside',
   $q$SELECT t.task_id, r.result->>'status' AS status FROM nimble.batch_tasks t
        JOIN nimble.task_results r USING (task_id) WHERE t.batch_id = 'b1000000-0000-4000-8000-000000000007'$q$),
  (17, 'left, results of tasks that have none',
   $q$SELECT t.task_id, t.state, r.task_id IS NOT NULL AS has_result FROM nimble.batch_tasks t
        LEFT JOIN nimble.task_results r USING (task_id) WHERE t.batch_id = 'b1000000-0000-4000-8000-000000000007'$q$),
  (18, 'a rescan with a new value for the table''s own condition',
   $q$SELECT v.s, (SELECT count(*) FROM kw JOIN nimble.batch_tasks t USING (batch_id) WHERE t.state = v.s) AS n
        FROM (VALUES ('success'), ('error'), ('success')) v(s)$q$);
SELECT pos, what, check_key_join(query) FROM kj_queries ORDER BY pos;

-- blocks of 3 outer rows: the same rows again, in three blocks
SET nimble_fdw.key_join_block_rows = 3;
SELECT pos, what, check_key_join(query) FROM kj_queries WHERE pos IN (1, 2, 5, 13) ORDER BY pos;

-- EXPLAIN: the resource, the endpoint, the block, the join type, the keys,
-- and the conditions it checks
EXPLAIN (COSTS OFF, VERBOSE)
SELECT kw.note, t.task_id FROM kw LEFT JOIN nimble.batch_tasks t
  ON t.batch_id = kw.batch_id AND t.state <> kw.note AND t.state = 'error'
 WHERE coalesce(t.state, 'none') <> kw.note;
-- EXPLAIN ANALYZE: three blocks of three outer rows; five distinct keys
-- asked for, each once (the repeated one, b1, twice in the first block)
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT explain_analyze('SELECT kw.note, t.task_id FROM kw JOIN nimble.batch_tasks t USING (batch_id)');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;
RESET nimble_fdw.key_join_block_rows;

-- work_mem bounds the rows kept: with 64kB, the rows of batch 3 (1,000
-- tasks) alone pass it, so a fetch stops once the outer row it was made
-- for has its key's rows, and the rows kept are dropped before the next
-- fetch; later rows ask again.  The rows are the same.
INSERT INTO kw VALUES ('b1000000-0000-4000-8000-000000000003', 'big'),
  (:'b1', 'one, after big'), ('b1000000-0000-4000-8000-000000000003', 'big again');
SET work_mem = '64kB';
SELECT pos, what, check_key_join(query) FROM kj_queries WHERE pos IN (1, 2, 6, 9, 13) ORDER BY pos;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
-- (the bytes depend on which answers come first, all being in flight at
-- once: shown as a fact)
SELECT CASE WHEN line ~ 'Nimble Bytes: '
            THEN '   Nimble Bytes over 1 MB: ' ||
                 ((regexp_match(line, 'Bytes: ([0-9]+)'))[1]::bigint > 1000000)
            ELSE line END AS explain_analyze
  FROM explain_analyze('SELECT kw.note, t.task_id FROM kw JOIN nimble.batch_tasks t USING (batch_id)') line;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
RESET work_mem;
DELETE FROM kw WHERE note IN ('big', 'one, after big', 'big again');

-- the rows come in the outer side's order, each outer row's matches together
SELECT kw.note, t.task_id FROM kw JOIN nimble.batch_tasks t USING (batch_id)
 WHERE t.state = 'error';

-- a rescan (the key join under a subplan run once per outer row) reads the
-- outer side again; what its keys gave is not asked for again in the query
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT v.i, (SELECT count(*) FROM kw JOIN nimble.batch_progress p USING (batch_id)
              WHERE kw.note <> v.skip) AS joined
  FROM (VALUES (1, 'one'), (2, 'six'), (3, '')) v(i, skip) ORDER BY 1;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
EXPLAIN (COSTS OFF)
SELECT v.i, (SELECT count(*) FROM kw JOIN nimble.batch_progress p USING (batch_id)
              WHERE kw.note <> v.skip) AS joined
  FROM (VALUES (1, 'one'), (2, 'six'), (3, '')) v(i, skip);

-- off: the nested loop again
SET nimble_fdw.enable_key_join = off;
SELECT plan_shape('SELECT kw.note, t.task_id FROM kw JOIN nimble.batch_tasks t USING (batch_id)');
RESET nimble_fdw.enable_key_join;

-- typed keys (key_types): where the = is not the API's exact match, the
-- key join is not offered
CREATE FOREIGN TABLE kj_upper (batch_id varchar(40), progress numeric)
  SERVER nimble OPTIONS (resource 'batch_progress');
EXPLAIN (COSTS OFF) SELECT kw.note, u.progress FROM kw JOIN kj_upper u ON u.batch_id = kw.batch_id::varchar(40);
DROP FOREIGN TABLE kj_upper;

--
-- The planner's choice, in an account of 2,000 batches of 3 tasks: a
-- nested loop for one outer row, the key join for tens, a hash join over a
-- walk of the list when the outer side names most of the account.  ANALYZE
-- tells the planner the account's size (analyze has the details).
--
\set big_url :big_mock_url '/v1'
CREATE SERVER big FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url :'big_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER big OPTIONS (api_key 'test-key');
CREATE SCHEMA big;
IMPORT FOREIGN SCHEMA nimble LIMIT TO (tasks, batch_progress) FROM SERVER big INTO big;
ANALYZE big.tasks, big.batch_progress;
SELECT relname, reltuples FROM pg_class WHERE relnamespace = 'big'::regnamespace ORDER BY 1;
CREATE TEMP TABLE w1 AS SELECT format('7a000000-%s-4000-8000-000000000002', lpad(to_hex(7), 4, '0')) AS task_id;
CREATE TEMP TABLE w50 AS
  SELECT format('7a000000-%s-4000-8000-000000000001', lpad(to_hex(i * 37), 4, '0')) AS task_id
    FROM generate_series(1, 50) i;
CREATE TEMP TABLE w1900 AS
  SELECT format('7a000000-%s-4000-8000-00000000000%s', lpad(to_hex(i / 3 + 1), 4, '0'), i % 3 + 1) AS task_id
    FROM generate_series(0, 1899) i;
ANALYZE w1, w50, w1900;
SELECT plan_shape('SELECT w.task_id, t.state FROM w1 w JOIN big.tasks t USING (task_id)');
SELECT plan_shape('SELECT w.task_id, t.state FROM w50 w JOIN big.tasks t USING (task_id)');
SELECT plan_shape('SELECT w.task_id, t.state FROM w1900 w JOIN big.tasks t USING (task_id)');
-- the rows, and the requests: 1, 50, and the 60 pages of the list
\set x `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/reset"`
SELECT count(*), count(DISTINCT t.state) FROM w1 w JOIN big.tasks t USING (task_id);
\set n1 `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/count"`
\set x `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/reset"`
SELECT count(*), count(DISTINCT t.state) FROM w50 w JOIN big.tasks t USING (task_id);
\set n50 `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/count"`
\set x `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/reset"`
SELECT count(*), count(DISTINCT t.state) FROM w1900 w JOIN big.tasks t USING (task_id);
\set n1900 `curl -s "$NIMBLE_BIG_MOCK_URL/_mock/count"`
SELECT :n1 AS one_id, :n50 AS fifty_ids, :n1900 AS ids_1900;
-- batch_progress has no list of its own rows: a walk is a page per 100
-- batches and a request per batch, so 1,900 keys are cheaper asked for
SELECT format('b1000000-0000-4000-8000-%s', lpad(to_hex(i), 12, '0')) AS batch_id
  INTO TEMP b1900 FROM generate_series(1, 1900) i;
ANALYZE b1900;
SELECT plan_shape('SELECT b.batch_id, p.progress FROM b1900 b JOIN big.batch_progress p USING (batch_id)');

--
-- Failures: a cancel while a block's requests hang, and an error in the
-- third block, leave no scan, transfer or memory behind
--
CREATE SERVER kj_fault FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url 'http://127.0.0.1:1/v1', max_retries '0', timeout_ms '60000');
CREATE USER MAPPING FOR CURRENT_USER SERVER kj_fault OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE kj_fault_progress (batch_id text, progress numeric)
  SERVER kj_fault OPTIONS (resource 'batch_progress');
CREATE FUNCTION set_kj_fault(prefix text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER SERVER kj_fault OPTIONS (SET url %L)',
                 current_setting('nimble.mock_url')
                 || CASE WHEN prefix = '' THEN '' ELSE '/' || prefix END || '/v1');
END $$;
SELECT set_config('nimble.mock_url', :'mock_url', false) IS NOT NULL AS set;
CREATE TEMP TABLE kw6 AS
  SELECT format('b1000000-0000-4000-8000-%s', lpad(to_hex(i), 12, '0')) AS batch_id
    FROM generate_series(1, 6) i;
ANALYZE kw6;
-- healthy first, so that what a server keeps for good is there before
SELECT set_kj_fault('');
SELECT count(*), count(p.progress) FROM kw6 JOIN kj_fault_progress p USING (batch_id);
SELECT count(*) AS contexts_before FROM pg_backend_memory_contexts
 WHERE name LIKE 'nimble_fdw%' \gset

-- the cancel (statement_timeout) lands while the first block waits
SELECT set_kj_fault('fault=stall_headers/on=progress/stall=30');
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SET statement_timeout = '500ms';
\set VERBOSITY terse
SELECT kw6.batch_id, p.progress FROM kw6 JOIN kj_fault_progress p USING (batch_id);
RESET statement_timeout;

-- blocks of two keys; the fifth request (the third block's first) fails
SET nimble_fdw.key_join_block_rows = 2;
SELECT set_kj_fault('fault=status/status=500/on=progress/after=4');
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
EXPLAIN (COSTS OFF) SELECT kw6.batch_id, p.progress FROM kw6 JOIN kj_fault_progress p USING (batch_id);
SELECT kw6.batch_id, p.progress FROM kw6 JOIN kj_fault_progress p USING (batch_id);
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests_until_the_error;
\set VERBOSITY default
SELECT count(*) - :contexts_before AS contexts_left FROM pg_backend_memory_contexts
 WHERE name LIKE 'nimble_fdw%';
-- the same server, healthy again: the next query has all six
SELECT set_kj_fault('');
SELECT count(*), count(p.progress) FROM kw6 JOIN kj_fault_progress p USING (batch_id);
RESET nimble_fdw.key_join_block_rows;

DROP SERVER kj_fault CASCADE;
DROP SERVER big CASCADE;
DROP SCHEMA big;
DROP TABLE kj_queries;
DROP FUNCTION check_key_join(text), plan_shape(text), set_kj_fault(text);
