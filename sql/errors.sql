--
-- errors: every failure has its own SQLSTATE, message, detail and hint,
-- and the backend survives it
--
\getenv mock_url NIMBLE_MOCK_URL
\set b1 'b1000000-0000-4000-8000-000000000001'

CREATE SERVER faulty FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url 'http://127.0.0.1:1/v1', max_retries '0', timeout_ms '2000');
CREATE USER MAPPING FOR CURRENT_USER SERVER faulty OPTIONS (api_key 'test-key');
CREATE SCHEMA faulty;
IMPORT FOREIGN SCHEMA nimble FROM SERVER faulty INTO faulty;

-- set_fault('fault=status/status=429'): point the server at a fault of the mock
CREATE FUNCTION set_fault(prefix text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  url text := current_setting('nimble.mock_url')
               || CASE WHEN prefix = '' THEN '' ELSE '/' || prefix END || '/v1';
BEGIN
  EXECUTE format('ALTER SERVER faulty OPTIONS (SET url %L)', url);
END $$;
SELECT set_config('nimble.mock_url', :'mock_url', false) IS NOT NULL AS set;

-- connection refused (nothing listens on port 1)
\set VERBOSITY terse
SELECT sqlstate_of('SELECT * FROM faulty.batches');
\set VERBOSITY default
-- the message has our words; libcurl's own (which name the port and the
-- time taken, and change between releases) are the detail
DO $$
DECLARE
  detail text;
  hint text;
BEGIN
  PERFORM * FROM faulty.batches;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  RAISE NOTICE 'detail is libcurl''s: %; hint: %', detail LIKE 'libcurl: %', hint;
END $$;

-- HTTP errors: the API's own message is the detail, the hint says what to do
SELECT set_fault('fault=status/status=400');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=status/status=401');
SELECT * FROM faulty.batch_progress WHERE batch_id = :'b1';
SELECT set_fault('fault=status/status=402');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=status/status=403');
SELECT * FROM faulty.batch_tasks WHERE batch_id = :'b1';
SELECT set_fault('fault=status/status=429');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=status/status=500');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=status/status=555');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=status/status=418');
SELECT * FROM faulty.batches;
-- a 404 of the list is a wrong url, not an empty result
SELECT set_fault('fault=status/status=404/on=list');
SELECT * FROM faulty.batches;
-- an HTML error page
SELECT set_fault('fault=html/status=502');
SELECT * FROM faulty.batches;

-- retries: 429 and 5xx are tried again, honouring Retry-After
ALTER SERVER faulty OPTIONS (SET max_retries '2');
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=status/status=429/times=2/retry_after=0');
SELECT explain_analyze(format('SELECT * FROM faulty.batch_progress WHERE batch_id = %L', :'b1'));
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=status/status=503/times=1/retry_after_ms=10');
SELECT completed FROM faulty.batch_progress WHERE batch_id = :'b1';
-- the last try fails: the message says how many tries were made
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=status/status=429/retry_after=0');
SELECT * FROM faulty.batch_progress WHERE batch_id = :'b1';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
-- a reset connection, and a Retry-After given as an HTTP date
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=reset/times=1');
SELECT completed FROM faulty.batch_progress WHERE batch_id = :'b1';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=status/status=503/times=1/retry_after=date+1');
SELECT completed FROM faulty.batch_progress WHERE batch_id = :'b1';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
-- 400 is never retried
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=status/status=400');
SELECT sqlstate_of('SELECT * FROM faulty.batches');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
-- nor are 501 and 505, which fail the same way every time: their hints do
-- not suggest trying again, while 503's does (after its retries)
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=status/status=501');
SELECT * FROM error_of('SELECT * FROM faulty.batches');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=status/status=505');
SELECT * FROM error_of('SELECT * FROM faulty.batches');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=status/status=503/retry_after=0');
SELECT * FROM error_of('SELECT * FROM faulty.batches');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
-- response headers too large, one header or many: a clear error, not
-- retried, whatever libcurl calls it
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT set_fault('fault=big_header/size=300000');
SELECT * FROM error_of('SELECT * FROM faulty.batches');
SELECT set_fault('fault=many_headers/count=5000');
SELECT * FROM error_of('SELECT * FROM faulty.batches');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
-- headers a little under the limit are fine
SELECT set_fault('fault=many_headers/count=500');
SELECT count(*) FROM faulty.batches;
ALTER SERVER faulty OPTIONS (SET max_retries '0');

-- bodies that are not what they should be
\set VERBOSITY default
SELECT set_fault('fault=not_json');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=empty');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=truncate');
SELECT sqlstate_of('SELECT * FROM faulty.batches');
SELECT set_fault('fault=invalid_utf8');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=nul_escape');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=deep_nesting');
SELECT * FROM faulty.batch_tasks WHERE batch_id = :'b1';
SELECT set_fault('fault=data_not_array');
SELECT * FROM faulty.batches;
SELECT * FROM faulty.batch_tasks WHERE batch_id = :'b1';
SELECT set_fault('fault=missing_pagination');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=null_cursor');
SELECT * FROM faulty.batches;
SELECT set_fault('fault=repeat_cursor');
SELECT * FROM faulty.batches;
-- a value of the wrong type names the column, the value and the batch
SELECT set_fault('fault=wrong_type');
SELECT * FROM faulty.batches;
SELECT * FROM faulty.batch_tasks WHERE batch_id = :'b1';
SELECT * FROM faulty.batch_progress WHERE batch_id = :'b1';
-- a body over max_response_bytes
ALTER SERVER faulty OPTIONS (ADD max_response_bytes '100000');
SELECT set_fault('fault=huge/size=1000000');
SELECT * FROM faulty.batches;
ALTER SERVER faulty OPTIONS (DROP max_response_bytes);

-- the network: resets, stalls, redirects
\set VERBOSITY terse
SELECT set_fault('fault=reset');
SELECT sqlstate_of('SELECT * FROM faulty.batches');
ALTER SERVER faulty OPTIONS (SET timeout_ms '300');
SELECT set_fault('fault=stall_headers/stall=5');
SELECT sqlstate_of('SELECT * FROM faulty.batches');
SELECT set_fault('fault=stall_body/stall=5');
SELECT sqlstate_of('SELECT * FROM faulty.batches');
ALTER SERVER faulty OPTIONS (SET timeout_ms '2000');
-- TLS is verified: a plain-HTTP port spoken to over https fails the handshake
SELECT set_config('nimble.tls_url', replace(:'mock_url', 'http:', 'https:') || '/v1', false) IS NOT NULL AS set;
DO $$ BEGIN EXECUTE format('ALTER SERVER faulty OPTIONS (SET url %L)', current_setting('nimble.tls_url')); END $$;
SELECT sqlstate_of('SELECT * FROM faulty.batches');
-- a redirect is never followed: it could carry the key elsewhere
-- (terse: the Location in the detail has the mock's port in it)
SELECT set_fault('fault=redirect');
SELECT sqlstate_of('SELECT * FROM faulty.batches');

-- a cancel lands while a request hangs: statement_timeout, SQLSTATE 57014
ALTER SERVER faulty OPTIONS (SET timeout_ms '60000');
SELECT set_fault('fault=stall_headers/stall=30');
SET statement_timeout = '200ms';
SELECT sqlstate_of('SELECT * FROM faulty.batches');
\set VERBOSITY sqlstate
SELECT * FROM faulty.batch_tasks;
-- nor does a retry outlive it: the wait for a 2 s Retry-After is cut short
-- (a 429 holds back every request of the key as long, the next queries'
-- too: hence not 30 s)
ALTER SERVER faulty OPTIONS (SET max_retries '2');
SELECT set_fault('fault=status/status=429/retry_after=2');
SELECT * FROM faulty.batch_progress WHERE batch_id = :'b1';
ALTER SERVER faulty OPTIONS (SET max_retries '0');
\set VERBOSITY terse
RESET statement_timeout;

-- a fault in the middle of a scan: the third list page breaks
SELECT set_fault('fault=not_json/on=list/after=2');
ALTER SERVER faulty OPTIONS (ADD page_size '5');
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT sqlstate_of('SELECT * FROM faulty.batches');
-- errors caught in a loop leave nothing behind: the backend still works
DO $$
BEGIN
  FOR i IN 1..50 LOOP
    PERFORM sqlstate_of('SELECT * FROM faulty.batches');
  END LOOP;
END $$;
SELECT set_fault('');
SELECT count(*) FROM faulty.batches;

-- the key appears nowhere: not in errors, not in EXPLAIN
ALTER USER MAPPING FOR CURRENT_USER SERVER faulty OPTIONS (SET api_key 'sekrit-key-123');
SELECT sqlstate_of('SELECT * FROM faulty.batches') LIKE '%sekrit%' AS key_in_error;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM faulty.batches WHERE batch_id = 'x';
SELECT * FROM faulty.batch_progress WHERE batch_id = 'x';

DROP SCHEMA faulty CASCADE;
DROP SERVER faulty CASCADE;
