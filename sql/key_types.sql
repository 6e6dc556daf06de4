--
-- key_types: a pushed key condition gives exactly the rows that a full
-- scan gives with the same condition, whatever type the key column is
-- declared with (text, varchar, varchar(n), char(n), name, citext, uuid, a
-- domain over text), on batches, batch_tasks and batch_progress, against
-- an API that spells its ids in lower case and one that spells them in
-- upper case; and a list that repeats an id gives it once on every route
--
\getenv mock_url NIMBLE_MOCK_URL
\set lower_url :mock_url '/v1'
\set upper_url :mock_url '/ids=upper/v1'
\set dup_url :mock_url '/fault=dup_item/v1'
CREATE EXTENSION citext;
CREATE DOMAIN batch_ref AS text CHECK (VALUE <> '');
CREATE SCHEMA kt;

-- cache_ttl: the many full scans below are answered from memory
CREATE SERVER kt_lower FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'lower_url', max_retries '0', max_requests_per_second '0', cache_ttl '600');
CREATE SERVER kt_upper FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'upper_url', max_retries '0', max_requests_per_second '0', cache_ttl '600');
CREATE USER MAPPING FOR CURRENT_USER SERVER kt_lower OPTIONS (api_key 'test-key');
CREATE USER MAPPING FOR CURRENT_USER SERVER kt_upper OPTIONS (api_key 'test-key');

-- kt.<server>_<type>_<resource>: the key column of each type
CREATE TABLE kt_types (tag text PRIMARY KEY, sqltype text, pos int);
INSERT INTO kt_types VALUES
  ('text', 'text', 1), ('varchar', 'varchar', 2), ('varchar40', 'varchar(40)', 3),
  ('char40', 'char(40)', 4), ('name', 'name', 5), ('citext', 'citext', 6),
  ('uuid', 'uuid', 7), ('domain', 'batch_ref', 8);
CREATE TABLE kt_resources (resource text PRIMARY KEY, columns text, pos int);
INSERT INTO kt_resources VALUES
  ('batches', 'account_name text, completed boolean, task_count integer, progress numeric', 1),
  ('batch_tasks', 'task_id text, state text, error text', 2),
  ('batch_progress', 'completed boolean, completed_count integer, progress numeric', 3);
DO $$
DECLARE
  s text;
  t record;
  r record;
BEGIN
  FOREACH s IN ARRAY ARRAY['lower', 'upper'] LOOP
    FOR t IN SELECT * FROM kt_types LOOP
      FOR r IN SELECT * FROM kt_resources LOOP
        EXECUTE format('CREATE FOREIGN TABLE kt.%I (batch_id %s, %s) SERVER %I OPTIONS (resource %L)',
                       s || '_' || t.tag || '_' || r.resource, t.sqltype, r.columns,
                       'kt_' || s, r.resource);
      END LOOP;
    END LOOP;
  END LOOP;
END $$;

-- rows_of(query): how many rows, and a digest of them all (or the error)
CREATE FUNCTION rows_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  result text;
BEGIN
  EXECUTE format('SELECT count(*) || '' rows '' || coalesce(md5(string_agg(t::text, ''|'' ORDER BY t::text)), '''') FROM (%s) t',
                 query) INTO result;
  RETURN result;
EXCEPTION WHEN OTHERS THEN
  RETURN 'error ' || SQLSTATE;
END $$;

-- pushed_vs_full(table, condition): the rows of the condition as pushed,
-- against the rows of a full scan (a materialized CTE: nothing pushed)
-- with the same condition on top; "same: N" or both, when they differ
CREATE FUNCTION pushed_vs_full(tbl regclass, cond text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  pushed text := rows_of(format('SELECT * FROM %s WHERE %s', tbl, cond));
  full_scan text := rows_of(format('WITH f AS MATERIALIZED (SELECT * FROM %s) SELECT * FROM f WHERE %s',
                                   tbl, cond));
BEGIN
  IF pushed = full_scan THEN
    RETURN 'same: ' || split_part(pushed, ' ', 1) || CASE WHEN pushed LIKE 'error%' THEN ' ' || split_part(pushed, ' ', 2) ELSE '' END;
  END IF;
  RETURN 'DIFFERENT: pushed ' || pushed || ', full scan ' || full_scan;
END $$;

-- the conditions: an id as the API lists it in lower case, in upper case,
-- with trailing spaces, a list mixing them with an unknown id, an array
-- that repeats one
CREATE TABLE kt_conditions (pos int PRIMARY KEY, cond text);
INSERT INTO kt_conditions VALUES
  (1, $$batch_id = 'b1000000-0000-4000-8000-000000000001'$$),
  (2, $$batch_id = 'B1000000-0000-4000-8000-000000000001'$$),
  (3, $$batch_id = 'b1000000-0000-4000-8000-000000000001   '$$),
  (4, $$batch_id IN ('b1000000-0000-4000-8000-000000000004', 'B1000000-0000-4000-8000-000000000009', 'b1000000-0000-4000-8000-0000000000ff')$$),
  (5, $$batch_id = ANY ('{b1000000-0000-4000-8000-000000000003,b1000000-0000-4000-8000-000000000003,NULL}')$$);

-- every table against every condition: "same" everywhere, with the rows
-- each type's equality finds (an upper-case id is another text, but the
-- same citext and uuid; padding is the same char(40)).  uuid ignores
-- case; the padded id is no uuid at all (22P02 on both routes, as the
-- literal is read).
SELECT s AS api_spells_ids, t.tag AS key_type, r.resource,
       string_agg(pushed_vs_full(format('kt.%I', s || '_' || t.tag || '_' || r.resource)::regclass,
                                 c.cond), ' | ' ORDER BY c.pos) AS "conditions 1 | 2 | 3 | 4 | 5"
  FROM unnest(ARRAY['lower', 'upper']) AS s, kt_types t, kt_resources r, kt_conditions c
 GROUP BY s, t.tag, t.pos, r.resource, r.pos
 ORDER BY s, t.pos, r.pos;

-- how each type's condition is pushed: text, varchar and the domain ask
-- the keyed endpoint; the others match the list's ids by their own =
-- (varchar(40) too: its input drops trailing spaces beyond 40, so two
-- texts can be one value)
CREATE FUNCTION route_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  line text;
  result text := '';
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
    IF line ~ 'Nimble (Route|Keys):' THEN
      result := result || CASE WHEN result = '' THEN '' ELSE E'\n' END || btrim(line);
    END IF;
  END LOOP;
  RETURN result;
END $$;
SELECT t.tag AS key_type,
       route_of(format($$SELECT * FROM kt.%I WHERE batch_id = 'B1000000-0000-4000-8000-000000000001'$$,
                       'upper_' || t.tag || '_batch_progress')) AS pushed
  FROM kt_types t ORDER BY t.pos;

-- the upper-case API, through a uuid column: the list walk finds the batch
-- and asks for it by the API's own spelling (1 list page, 1 request)
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT nimble_cache_clear() >= 0 AS cleared;
SELECT batch_id, completed, progress FROM kt.upper_uuid_batch_progress
 WHERE batch_id = 'b1000000-0000-4000-8000-000000000009';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;

-- a citext key on task_results, which cannot be listed: nothing can be
-- pushed, and the error says why and what to declare instead
CREATE FOREIGN TABLE kt.ci_results (task_id citext, result jsonb)
  SERVER kt_lower OPTIONS (resource 'task_results');
SELECT count(*) FROM kt.ci_results WHERE task_id = '7a000000-0001-4000-8000-000000000001';
-- declared text, it is
CREATE FOREIGN TABLE kt.text_results (task_id text, result jsonb)
  SERVER kt_lower OPTIONS (resource 'task_results');
SELECT count(*) FROM kt.text_results WHERE task_id = '7a000000-0001-4000-8000-000000000001';

-- ---------------------------------------------------------------------
-- a list that repeats an id (each page's first item comes again at its
-- end): every route gives it once
-- ---------------------------------------------------------------------
CREATE SERVER kt_dup FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'dup_url', page_size '5', max_retries '0', max_requests_per_second '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER kt_dup OPTIONS (api_key 'test-key');
CREATE SCHEMA kt_dup;
IMPORT FOREIGN SCHEMA nimble LIMIT TO (batches, batch_tasks, batch_progress, tasks)
  FROM SERVER kt_dup INTO kt_dup;
SELECT count(*) AS batches, count(DISTINCT batch_id) AS distinct_ids FROM kt_dup.batches;
SELECT count(*) AS progress_rows, count(DISTINCT batch_id) AS distinct_ids FROM kt_dup.batch_progress;
SELECT count(*) AS tasks, count(DISTINCT task_id) AS distinct_ids FROM kt_dup.tasks;
-- batch 12 heads the first page (and ends it again); 7 heads the second
SELECT tbl, pushed_vs_full(tbl, $$batch_id IN ('b1000000-0000-4000-8000-00000000000c', 'b1000000-0000-4000-8000-000000000007')$$)
  FROM unnest(ARRAY['kt_dup.batches', 'kt_dup.batch_tasks', 'kt_dup.batch_progress']::regclass[]) AS tbl;
SELECT pushed_vs_full('kt_dup.tasks', $$task_id = '7a000000-000c-4000-8000-000000000001'$$) AS tasks;

DROP SCHEMA kt, kt_dup CASCADE;
DROP SERVER kt_lower, kt_upper, kt_dup CASCADE;
DROP TABLE kt_types, kt_resources, kt_conditions;
DROP FUNCTION rows_of(text), pushed_vs_full(regclass, text), route_of(text);
DROP DOMAIN batch_ref;
DROP EXTENSION citext;
