--
-- setup: the extension, a server on the mock API, the three tables.
-- Every later suite uses what this one creates.
--
\getenv mock_url NIMBLE_MOCK_URL
\getenv scrape_mock_url NIMBLE_SCRAPE_MOCK_URL
\getenv factcheck_mock_url NIMBLE_FACTCHECK_MOCK_URL
\getenv big_mock_url NIMBLE_BIG_MOCK_URL
\set api_url :mock_url '/v1'

CREATE EXTENSION nimble_fdw;

-- only Nimble's own host is allowed by default (on https's port); the
-- suites talk to the four mocks on loopback, and to port 1, where nothing
-- listens.  The ports change from run to run, so they are not shown.
SHOW nimble_fdw.allowed_hosts;
SELECT string_agg(regexp_replace(u, '^https?://([^/]+).*$', '\1'), ', ') AS suite_hosts
  FROM unnest(ARRAY[:'mock_url', :'scrape_mock_url', :'factcheck_mock_url',
                    :'big_mock_url', 'http://127.0.0.1:1']) AS u \gset
SELECT format('ALTER DATABASE %I SET nimble_fdw.allowed_hosts = %L',
              current_database(), :'suite_hosts') AS allow_suite_hosts \gset
:allow_suite_hosts;
SET nimble_fdw.allowed_hosts = :'suite_hosts';

-- page_size 5 makes the mock's 12 batches three list pages
CREATE SERVER nimble FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'api_url', page_size '5', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER nimble OPTIONS (api_key 'test-key');
CREATE SCHEMA nimble;
IMPORT FOREIGN SCHEMA nimble FROM SERVER nimble INTO nimble;
\det+ nimble.*
\d nimble.batches
\d nimble.batch_tasks
\d nimble.batch_progress

-- LIMIT TO and EXCEPT
CREATE SCHEMA only_progress;
IMPORT FOREIGN SCHEMA nimble LIMIT TO (batch_progress) FROM SERVER nimble INTO only_progress;
CREATE SCHEMA no_tasks;
IMPORT FOREIGN SCHEMA nimble EXCEPT (batch_tasks) FROM SERVER nimble INTO no_tasks;
SELECT foreign_table_schema, foreign_table_name
  FROM information_schema.foreign_tables
 WHERE foreign_table_schema IN ('only_progress', 'no_tasks')
 ORDER BY 1, 2;
DROP SCHEMA only_progress, no_tasks CASCADE;

-- there is one remote schema
IMPORT FOREIGN SCHEMA public FROM SERVER nimble INTO public;

-- a helper for the other suites: an error's SQLSTATE with its message
-- (the error is caught in a subtransaction, which also proves that an
-- aborted scan cleans up after itself)
CREATE FUNCTION sqlstate_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE query;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- An error's SQLSTATE and message, then its detail and hint, one line
-- each, with the mocks' ports (which change from run to run) as PORT and
-- libcurl's own words (which change between its releases) as "..."
CREATE FUNCTION error_of(query text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  state text;
  msg text;
  detail text;
  hint text;
BEGIN
  EXECUTE query;
  RETURN NEXT 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  FOREACH msg IN ARRAY ARRAY[state || ': ' || msg, 'DETAIL: ' || nullif(detail, ''),
                             'HINT: ' || nullif(hint, '')] LOOP
    CONTINUE WHEN msg IS NULL;
    msg := regexp_replace(msg, '(127\.0\.0\.[0-9]+):[0-9]{2,}', '\1:PORT', 'g');
    msg := regexp_replace(msg, 'port [0-9]{2,}', 'port PORT', 'g');
    RETURN NEXT regexp_replace(msg, 'libcurl: [^)]*', 'libcurl: ...');
  END LOOP;
END $$;

-- EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) of a
-- query, its actual row counts as whole numbers: PostgreSQL 18 prints them
-- with two decimals ("rows=0.67"), earlier releases rounded ("rows=1"), and
-- this rounds 18's the same way (rint, as printf's %.0f)
CREATE FUNCTION explain_analyze(query text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  line text;
  m text[];
BEGIN
  FOR line IN EXECUTE
    'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) ' || query
  LOOP
    m := regexp_match(line, 'actual rows=([0-9]+\.[0-9]+)');
    IF m IS NOT NULL THEN
      line := regexp_replace(line, 'actual rows=[0-9]+\.[0-9]+',
                             'actual rows=' || round(m[1]::float8)::bigint);
    END IF;
    RETURN NEXT line;
  END LOOP;
END $$;

-- the planner's row estimate for a query
CREATE FUNCTION plan_rows(query text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  plan json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || query INTO plan;
  RETURN (plan->0->'Plan'->>'Plan Rows')::bigint;
END $$;
