--
-- api_factcheck: a fact-checking API's batches through the same tables
-- (server option api 'factcheck'; mock test/mock_factcheck.py)
--
\getenv fc_url NIMBLE_FACTCHECK_MOCK_URL
\set api_url :fc_url '/v1'
\set VERBOSITY terse

-- the API's host is not known: the url is required
CREATE SERVER fc FOREIGN DATA WRAPPER nimble_fdw OPTIONS (api 'factcheck');
CREATE SERVER fc FOREIGN DATA WRAPPER nimble_fdw OPTIONS (api 'nope');
-- page_size 3: the mock's 8 batches are three pages (limit/offset)
CREATE SERVER fc FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (api 'factcheck', url :'api_url', page_size '3', max_retries '0');
ALTER SERVER fc OPTIONS (DROP url);
CREATE USER MAPPING FOR CURRENT_USER SERVER fc OPTIONS (api_key 'test-key');
CREATE SCHEMA fc;
IMPORT FOREIGN SCHEMA factcheck FROM SERVER fc INTO fc;
\det+ fc.*
\d fc.batches
-- no per-item endpoint: no batch_tasks
CREATE FOREIGN TABLE fc.batch_tasks (batch_id text) SERVER fc;
SELECT * FROM fc.batch_tasks;

-- the list walk: limit 3, offsets 3 and 6; every column typed
\set x `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/reset"`
SELECT batch_id, name, status, total_items, processed_items, success_count,
       failure_count, total_cost_cents, created_at, started_at, completed_at
  FROM fc.batches;
\set r `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/requests"`
SELECT regexp_replace(e->>'path', '^/v1', '') AS request
  FROM jsonb_array_elements(:'r'::jsonb) e;
\set h `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/last_headers"`
SELECT (:'h'::jsonb)->'authorized' AS bearer_accepted;

-- jsonb and bigint columns, nulls, non-ASCII
SELECT batch_id, methods_config, context, validation_errors, error_message,
       original_file_name, input_format
  FROM fc.batches
 WHERE batch_id IN ('batch_abc123def456', 'batch_failed123', 'batch_unicode01',
                    'batch_empty01')
 ORDER BY batch_id;
SELECT total_cost_cents, total_input_tokens, total_output_tokens
  FROM fc.batches WHERE batch_id = 'batch_bigcost01';
SELECT e->>'row' AS row, e->>'error' AS error
  FROM fc.batches, jsonb_array_elements(validation_errors) e
 WHERE batch_id = 'batch_failed123';

-- batch_id = ... goes to GET /batch/{id}; the row equals the list's
\set x `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/reset"`
EXPLAIN (COSTS OFF) SELECT * FROM fc.batch_progress WHERE batch_id = 'batch_xyz789';
SELECT * FROM fc.batch_progress WHERE batch_id IN ('batch_xyz789', 'batch_cancel01', 'nope')
 ORDER BY batch_id;
\set n `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;
CREATE TEMP TABLE fc_all AS SELECT * FROM fc.batches;
SELECT count(*) FROM (
  SELECT * FROM fc_all
  EXCEPT ALL
  SELECT k.* FROM fc_all f,
         LATERAL (SELECT * FROM fc.batches k WHERE k.batch_id = f.batch_id) k
) missing_or_different;
SELECT count(*) FROM (
  SELECT batch_id, status, total_items, processed_items, success_count, failure_count,
         started_at, completed_at FROM fc_all
  EXCEPT ALL
  SELECT * FROM fc.batch_progress
) different;

-- laziness: LIMIT 2 reads one page
\set x `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/reset"`
SELECT batch_id FROM fc.batches LIMIT 2;
\set n `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- a change on the API side shows on the next scan
\set x `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/batch_state?id=batch_xyz789&status=completed&processedItems=100&successCount=99"`
SELECT batch_id, status, processed_items, success_count, completed_at
  FROM fc.batch_progress WHERE batch_id = 'batch_xyz789';
\set x `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/reset"`

-- the default page size is the API's own (20): one request
ALTER SERVER fc OPTIONS (DROP page_size);
SELECT count(*) FROM fc.batches;
\set n `curl -s "$NIMBLE_FACTCHECK_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- errors: the API's own message (error.message), the same SQLSTATEs
CREATE SERVER fc_fault FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (api 'factcheck', url :'api_url', max_retries '0', page_size '3');
CREATE USER MAPPING FOR CURRENT_USER SERVER fc_fault OPTIONS (api_key 'sekrit-key-123');
CREATE FOREIGN TABLE fc.fault_batches (batch_id text, status text, processed_items integer)
  SERVER fc_fault OPTIONS (resource 'batches');
CREATE FUNCTION set_fc_fault(prefix text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER SERVER fc_fault OPTIONS (SET url %L)',
                 current_setting('nimble.fc_url') || '/' || prefix || '/v1');
END $$;
SELECT set_config('nimble.fc_url', :'fc_url', false) IS NOT NULL AS set;
\set VERBOSITY default
SELECT * FROM fc.fault_batches;
ALTER USER MAPPING FOR CURRENT_USER SERVER fc_fault OPTIONS (SET api_key 'test-key');
SELECT set_fc_fault('fault=status/status=429');
SELECT * FROM fc.fault_batches;
SELECT set_fc_fault('fault=status/status=400');
SELECT * FROM fc.fault_batches WHERE batch_id = 'batch_xyz789';
-- pagination that would never end, or is missing
SELECT set_fc_fault('fault=always_more/on=list');
SELECT count(*) FROM fc.fault_batches;
SELECT set_fc_fault('fault=missing_pagination/on=list');
SELECT count(*) FROM fc.fault_batches;
SELECT set_fc_fault('fault=data_not_array/on=list');
SELECT count(*) FROM fc.fault_batches;
SELECT set_fc_fault('fault=wrong_type/on=details');
SELECT * FROM fc.fault_batches WHERE batch_id = 'batch_xyz789';
\set VERBOSITY terse
SELECT set_fc_fault('fault=reset/on=list');
SELECT sqlstate_of('SELECT * FROM fc.fault_batches');
SELECT set_fc_fault('fault=invalid_utf8/on=list');
SELECT sqlstate_of('SELECT * FROM fc.fault_batches');
-- a transient failure on the second page is retried
ALTER SERVER fc_fault OPTIONS (SET max_retries '2');
SELECT set_fc_fault('fault=status/status=503/on=list/after=1/times=1');
SELECT count(*) FROM fc.fault_batches;

DROP SCHEMA fc CASCADE;
DROP FUNCTION set_fc_fault(text);
DROP SERVER fc CASCADE;
DROP SERVER fc_fault CASCADE;
