--
-- rate_limit: the request budget of an API key on a host.  The API's
-- documented window, what its ratelimit-* headers and 429s say, and the
-- statement_timeout rule.  (max_requests_per_second: cache_and_rate.)
--
-- Every server here uses the same key on the same mock, so they share one
-- budget: what one query teaches it, the next one obeys.  This backend has
-- its own budgets (the test cluster does not preload nimble_fdw); shared
-- budgets are tested by test/shared/.
--
\getenv mock_url NIMBLE_MOCK_URL
\set api_url :mock_url '/v1'
\set b1 'b1000000-0000-4000-8000-000000000001'

CREATE FUNCTION budget() RETURNS TABLE (host_is_the_mock boolean, shared boolean,
    limit_requests integer, window_seconds double precision, in_window integer,
    in_flight integer, held boolean, from_api boolean, answered boolean)
LANGUAGE sql AS $$
  SELECT host ~ '^http://127\.0\.0\.1:[0-9]+$', shared, limit_requests,
         window_seconds, in_window, in_flight, held_until IS NOT NULL, from_api,
         answered
    FROM nimble_rate_limits
$$;

-- who may look: pg_read_all_stats (the budgets can be the cluster's)
SELECT has_function_privilege('public', 'nimble_rate_limits()', 'EXECUTE') AS public_may,
       has_function_privilege('pg_read_all_stats', 'nimble_rate_limits()', 'EXECUTE') AS stats_may;

-- a new backend has no budget yet
SELECT * FROM budget();

-- ----------------------------------------------------------------
-- the documented limit: Nimble's 5,000 requests a minute, so a scan of a
-- few hundred requests is not held back at all
-- ----------------------------------------------------------------
CREATE SERVER plain FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url :'api_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER plain OPTIONS (api_key 'test-key');
CREATE SCHEMA plain;
IMPORT FOREIGN SCHEMA nimble FROM SERVER plain INTO plain;
SELECT nimble_stats_reset();
SELECT count(*) FROM plain.batch_progress;
SELECT requests, rate_limit_wait_ms FROM nimble_stats WHERE server = 'plain';
SELECT * FROM budget();

-- ----------------------------------------------------------------
-- the API's ratelimit-policy: a window of 5 requests in any 1 s.  The
-- first answer (the list page) says so; the 12 progress requests then go
-- 5 at a time, and the API refuses none.  The 13 requests of the first
-- scan count too (same key, same host): the window starts full.
-- ----------------------------------------------------------------
\set said_url :mock_url '/ratelimit=5/1/v1'
CREATE SERVER said FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'said_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER said OPTIONS (api_key 'test-key');
CREATE SCHEMA said;
IMPORT FOREIGN SCHEMA nimble FROM SERVER said INTO said;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM said.batch_progress;
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '2 s' AS held_to_the_window;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb)->'total' AS requests, (:'n'::jsonb)->'refused' AS refused,
       ((:'n'::jsonb)->>'max_in_window')::int <= 5 AS never_over;
SELECT limit_requests, window_seconds, in_flight, from_api FROM budget();

-- ----------------------------------------------------------------
-- an API that enforces a lower limit and does not say so: its 429s, with
-- Retry-After, hold back every request of the key (not only the refused
-- ones), and the retries get the answers
-- ----------------------------------------------------------------
\set silent_url :mock_url '/ratelimit=2/1/rlheaders=0/v1'
CREATE SERVER silent FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'silent_url', max_retries '5');
CREATE USER MAPPING FOR CURRENT_USER SERVER silent OPTIONS (api_key 'test-key');
CREATE SCHEMA silent;
IMPORT FOREIGN SCHEMA nimble FROM SERVER silent INTO silent;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT nimble_stats_reset();
SELECT count(*) FROM silent.batch_progress WHERE batch_id IN
  (SELECT batch_id FROM plain.batches ORDER BY batch_id LIMIT 6);
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT ((:'n'::jsonb)->>'refused')::int > 0 AS some_refused,
       ((:'n'::jsonb)->>'max_in_window')::int <= 2 AS never_over;
SELECT retries > 0 AS retried, errors_by_status ? '429' AS saw_429
  FROM nimble_stats WHERE server = 'silent';

-- ----------------------------------------------------------------
-- ratelimit-remaining 0 with a ratelimit-reset: nothing more starts until
-- the reset, on any server of the key
-- ----------------------------------------------------------------
\set spent_url :mock_url '/rl_remaining=0/rl_reset=3/v1'
CREATE SERVER spent FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'spent_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER spent OPTIONS (api_key 'test-key');
CREATE SCHEMA spent;
IMPORT FOREIGN SCHEMA nimble FROM SERVER spent INTO spent;
SELECT pg_sleep(1.2);			-- the 1 s window of the policy empties
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM spent.batch_progress WHERE batch_id = :'b1';
SELECT held FROM budget();
SELECT count(*) FROM plain.batch_progress WHERE batch_id = :'b1';
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '3 s' AS held_to_the_reset;

-- a wait that would outlast statement_timeout fails at once, saying why
SELECT count(*) FROM spent.batch_progress WHERE batch_id = :'b1';
SET statement_timeout = '1s';
SELECT regexp_replace(e, '[0-9]+\.[0-9] s', 'N s') AS error
  FROM error_of($$SELECT count(*) FROM plain.batch_progress WHERE batch_id = 'b1000000-0000-4000-8000-000000000002'$$) e;
RESET statement_timeout;
SELECT pg_sleep(3);

-- ----------------------------------------------------------------
-- a ratelimit-limit below the window's, without a policy: the lower
-- limit, over the window already known
-- ----------------------------------------------------------------
\set lower_url :mock_url '/rl_limit=3/v1'
CREATE SERVER lower FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'lower_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER lower OPTIONS (api_key 'test-key');
CREATE SCHEMA lower;
IMPORT FOREIGN SCHEMA nimble FROM SERVER lower INTO lower;
SELECT count(*) FROM lower.batch_progress WHERE batch_id = :'b1';
SELECT limit_requests, window_seconds, from_api FROM budget();

-- a key of its own is a budget of its own (the mock answers it 401, which
-- is all it needs to exist)
CREATE SERVER other FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url :'api_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER other OPTIONS (api_key 'another-key');
CREATE FOREIGN TABLE other_progress (batch_id text) SERVER other
  OPTIONS (resource 'batch_progress');
SELECT sqlstate_of($$SELECT * FROM other_progress WHERE batch_id = 'b1000000-0000-4000-8000-000000000001'$$);
SELECT limit_requests, window_seconds, from_api, answered
  FROM budget() ORDER BY limit_requests;

SET client_min_messages = warning;
DROP FOREIGN TABLE other_progress;
DROP USER MAPPING FOR CURRENT_USER SERVER other;
DROP SERVER other;
DROP SCHEMA plain, said, silent, spent, lower CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER plain;
DROP USER MAPPING FOR CURRENT_USER SERVER said;
DROP USER MAPPING FOR CURRENT_USER SERVER silent;
DROP USER MAPPING FOR CURRENT_USER SERVER spent;
DROP USER MAPPING FOR CURRENT_USER SERVER lower;
DROP SERVER plain, said, silent, spent, lower;
DROP FUNCTION budget();
RESET client_min_messages;
