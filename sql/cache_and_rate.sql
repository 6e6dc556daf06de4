--
-- cache_and_rate: the cache_ttl and max_requests_per_second server options
--
\getenv mock_url NIMBLE_MOCK_URL
\set api_url :mock_url '/v1'
\set b1 'b1000000-0000-4000-8000-000000000001'
\set b2 'b1000000-0000-4000-8000-000000000002'
\set b3 'b1000000-0000-4000-8000-000000000003'

-- both options are checked, with the range in the hint
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (cache_ttl '-1');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (cache_ttl '604801');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (cache_ttl '1.5');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (max_requests_per_second '-1');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (max_requests_per_second 'fast');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (max_requests_per_second 'NaN');
CREATE SERVER ok FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (max_requests_per_second '0.5', cache_ttl '0');
DROP SERVER ok;

-- ----------------------------------------------------------------
-- cache_ttl
-- ----------------------------------------------------------------
CREATE SERVER cached FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'api_url', page_size '5', max_retries '0', cache_ttl '60');
CREATE USER MAPPING FOR CURRENT_USER SERVER cached OPTIONS (api_key 'test-key');
CREATE SCHEMA cached;
IMPORT FOREIGN SCHEMA nimble FROM SERVER cached INTO cached;
SELECT nimble_cache_clear() >= 0 AS cleared;

-- the first query asks the API: 3 requests
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT batch_id, count(*) FROM cached.batch_tasks
 WHERE batch_id IN (:'b1', :'b2', :'b3') GROUP BY 1 ORDER BY 1;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- the same query within the TTL: the same rows, no request
SELECT batch_id, count(*) FROM cached.batch_tasks
 WHERE batch_id IN (:'b1', :'b2', :'b3') GROUP BY 1 ORDER BY 1;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- EXPLAIN ANALYZE counts the hits; a subset of the keys is served too
SELECT explain_analyze(format('SELECT * FROM cached.batch_tasks WHERE batch_id IN (%L, %L)',
                              :'b1', :'b3'));
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- the list pages are cached as well: a full scan, then again
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(*) FROM cached.batches;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
SELECT count(*) FROM cached.batches;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- a change in the API is not seen within the TTL (that is the contract) ...
SELECT state FROM cached.batch_tasks
 WHERE batch_id = :'b1' AND task_id = '7a000000-0001-4000-8000-000000000001';
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/task_state?batch_id=b1000000-0000-4000-8000-000000000001&task_id=7a000000-0001-4000-8000-000000000001&state=error"`
SELECT state FROM cached.batch_tasks
 WHERE batch_id = :'b1' AND task_id = '7a000000-0001-4000-8000-000000000001';
-- ... and nimble_cache_clear() drops what the backend keeps: the change shows
SELECT nimble_cache_clear() > 0 AS cleared;
SELECT state FROM cached.batch_tasks
 WHERE batch_id = :'b1' AND task_id = '7a000000-0001-4000-8000-000000000001';
SELECT nimble_cache_clear() AS cleared_again;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`

-- an answer is never older than the TTL: with 1 s, after 1.2 s it is asked again
ALTER SERVER cached OPTIONS (SET cache_ttl '1');
SELECT count(*) FROM cached.batch_progress WHERE batch_id = :'b2';
SELECT count(*) FROM cached.batch_progress WHERE batch_id = :'b2';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
SELECT pg_sleep(1.2);
SELECT count(*) FROM cached.batch_progress WHERE batch_id = :'b2';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- cache_ttl 0 turns it off: every query asks
ALTER SERVER cached OPTIONS (SET cache_ttl '0');
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(*) FROM cached.batch_progress WHERE batch_id = :'b2';
SELECT count(*) FROM cached.batch_progress WHERE batch_id = :'b2';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
ALTER SERVER cached OPTIONS (SET cache_ttl '60');

-- a body that did not decode is not kept: the next query asks again and
-- gets the good answer (the fault hits the first request only)
SELECT nimble_cache_clear() >= 0 AS cleared;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
\set fault_url :mock_url '/fault=not_json/times=1/v1'
ALTER SERVER cached OPTIONS (SET url :'fault_url');
\set VERBOSITY terse
SELECT sqlstate_of(format('SELECT * FROM cached.batch_progress WHERE batch_id = %L', :'b3'));
\set VERBOSITY default
SELECT batch_id, completed FROM cached.batch_progress WHERE batch_id = :'b3';
SELECT batch_id, completed FROM cached.batch_progress WHERE batch_id = :'b3';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
ALTER SERVER cached OPTIONS (SET url :'api_url');

-- answers are kept per api key: another role, with a key the API refuses,
-- gets the API's 401, not the rows the first key cached
SELECT count(*) FROM cached.batch_progress WHERE batch_id = :'b1';
CREATE ROLE nimble_cache_other;
GRANT USAGE ON SCHEMA cached TO nimble_cache_other;
GRANT SELECT ON ALL TABLES IN SCHEMA cached TO nimble_cache_other;
CREATE USER MAPPING FOR nimble_cache_other SERVER cached OPTIONS (api_key 'not-the-key');
SET ROLE nimble_cache_other;
\set VERBOSITY terse
SELECT sqlstate_of(format('SELECT count(*) FROM cached.batch_progress WHERE batch_id = %L', :'b1'));
\set VERBOSITY default
RESET ROLE;
DROP USER MAPPING FOR nimble_cache_other SERVER cached;
REVOKE ALL ON ALL TABLES IN SCHEMA cached FROM nimble_cache_other;
REVOKE ALL ON SCHEMA cached FROM nimble_cache_other;
DROP ROLE nimble_cache_other;

-- the cache's memory is bounded by nimble_fdw.cache_size: at 0 nothing is kept
SHOW nimble_fdw.cache_size;
SET nimble_fdw.cache_size = 0;
SELECT nimble_cache_clear() >= 0 AS cleared;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(*) FROM cached.batch_progress WHERE batch_id = :'b1';
SELECT count(*) FROM cached.batch_progress WHERE batch_id = :'b1';
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
RESET nimble_fdw.cache_size;
SELECT nimble_cache_clear() >= 0 AS cleared;

-- ----------------------------------------------------------------
-- max_requests_per_second
-- ----------------------------------------------------------------
-- at 10 requests a second, the 13 requests of a full batch_progress scan
-- (one list page, 12 progress calls) cannot take less than 1.2 s: each start
-- is at least 100 ms after the one before (the limit is per server, so
-- this server's first request starts at once)
CREATE SERVER slow FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'api_url', page_size '100', max_retries '0',
           max_requests_per_second '10');
CREATE USER MAPPING FOR CURRENT_USER SERVER slow OPTIONS (api_key 'test-key');
CREATE SCHEMA slow;
IMPORT FOREIGN SCHEMA nimble FROM SERVER slow INTO slow;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM slow.batch_progress;
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '1.2 s' AS spaced_out;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- the wait is reported by EXPLAIN ANALYZE with its timings (here as a fact,
-- the milliseconds vary)
CREATE FUNCTION rate_wait_ms(query text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  plan json;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || query INTO plan;
  RETURN (plan->0->'Plan'->>'Nimble Rate Limit Wait')::bigint;
END $$;
SELECT rate_wait_ms('SELECT * FROM slow.batch_progress') >= 900 AS waited;
DROP FUNCTION rate_wait_ms(text);

DROP SCHEMA slow CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER slow;
DROP SERVER slow;
DROP SCHEMA cached CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER cached;
DROP SERVER cached;
