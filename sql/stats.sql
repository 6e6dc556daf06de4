--
-- stats: nimble_stats adds up what this backend asked of each server
--
\getenv mock_url NIMBLE_MOCK_URL
\set b1 'b1000000-0000-4000-8000-000000000001'
\set b4 'b1000000-0000-4000-8000-000000000004'
\set rate_limited :mock_url '/fault=status/status=429/times=1/retry_after_ms=10/v1'

\d nimble_stats
SELECT nimble_stats_reset();
SELECT count(*) FROM nimble_stats;

-- a list walk of three pages with twelve progress calls, then two keyed
-- requests, one of them for a batch that does not exist (404, no rows)
SELECT count(*) FROM nimble.batch_progress;
SELECT count(*) FROM nimble.batch_tasks WHERE batch_id IN (:'b1', 'no-such-batch');
SELECT server, requests, pages, retries, cache_hits, errors, errors_by_status,
       scans, bytes > 0 AS got_bytes, network_wait_ms > 0 AS waited,
       rate_limit_wait_ms >= 0 AS rate_wait_known,
       since <= now() AS since_before_now
  FROM nimble_stats;

-- a 429 that a retry got past, on a second server, and cache hits
CREATE SERVER stats_srv FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'rate_limited', max_retries '1', cache_ttl '60',
           max_requests_per_second '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER stats_srv OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE stats_progress (batch_id text, completed boolean)
  SERVER stats_srv OPTIONS (resource 'batch_progress');
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT * FROM stats_progress WHERE batch_id = :'b4';
SELECT * FROM stats_progress WHERE batch_id = :'b4';
SELECT server, requests, pages, retries, cache_hits, errors, errors_by_status, scans
  FROM nimble_stats ORDER BY server;

-- a failed transfer counts as "transport"
ALTER SERVER stats_srv OPTIONS (SET url 'http://127.0.0.1:1/v1', SET max_retries '0');
\set VERBOSITY terse
SELECT sqlstate_of(format('SELECT * FROM stats_progress WHERE batch_id = %L', :'b1'));
\set VERBOSITY default
SELECT server, requests, errors, errors_by_status
  FROM nimble_stats WHERE server = 'stats_srv';

-- a reset starts from zero; a dropped server leaves the view
SELECT nimble_stats_reset();
SELECT server, requests, errors, errors_by_status, scans FROM nimble_stats ORDER BY server;
DROP FOREIGN TABLE stats_progress;
DROP USER MAPPING FOR CURRENT_USER SERVER stats_srv;
DROP SERVER stats_srv;
SELECT server FROM nimble_stats;
SELECT nimble_cache_clear() >= 0 AS cleared;

-- what scans taught the planner is the server's too: a change to the
-- server forgets it (its url may now lead to another account), while its
-- counters stay
\set api_url :mock_url '/v1'
CREATE SERVER learn_srv FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'api_url', max_requests_per_second '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER learn_srv OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE learn_batches (batch_id text) SERVER learn_srv OPTIONS (resource 'batches');
SELECT plan_rows('SELECT * FROM learn_batches') AS guessed;
SELECT count(*) FROM learn_batches;
SELECT plan_rows('SELECT * FROM learn_batches') AS learned;
ALTER SERVER learn_srv OPTIONS (ADD timeout_ms '5000');
SELECT plan_rows('SELECT * FROM learn_batches') AS after_alter;
SELECT requests FROM nimble_stats WHERE server = 'learn_srv';
DROP SERVER learn_srv CASCADE;

-- while a request hangs, pg_stat_activity shows the backend waiting for the
-- API, not running a query on the CPU: wait event NimbleHttp (PostgreSQL 17
-- and later register custom names; on 15 and 16 type and name are both
-- "Extension")
CREATE EXTENSION dblink;
\set stalled :mock_url '/fault=stall_headers/stall=30/v1'
CREATE SERVER stalled FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'stalled', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER stalled OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE stalled_progress (batch_id text, completed boolean)
  SERVER stalled OPTIONS (resource 'batch_progress');
SELECT dblink_connect('waiter', format('host=%s port=%s dbname=%s',
         split_part(current_setting('unix_socket_directories'), ',', 1),
         current_setting('port'), current_database()));
SELECT dblink_send_query('waiter',
  format('SELECT * FROM stalled_progress WHERE batch_id = %L', :'b1'));
CREATE FUNCTION waiting_on_api(expected text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  w text;
BEGIN
  FOR i IN 1..200 LOOP
    -- pg_stat_activity is read once per transaction unless told otherwise:
    -- without this, a first look before the waiter starts is all there is
    PERFORM pg_stat_clear_snapshot();
    SELECT wait_event_type || '/' || wait_event INTO w
      FROM pg_stat_activity
     WHERE query LIKE '%FROM stalled_progress%' AND pid <> pg_backend_pid()
       AND state = 'active';
    IF w = expected THEN
      RETURN 'as expected';
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN coalesce(w, 'not found');
END $$;
SELECT waiting_on_api(CASE WHEN current_setting('server_version_num')::int >= 170000
                           THEN 'Extension/NimbleHttp' ELSE 'Extension/Extension' END);
SELECT pg_cancel_backend(pid) FROM pg_stat_activity
 WHERE query LIKE '%FROM stalled_progress%' AND pid <> pg_backend_pid();
SELECT * FROM dblink_get_result('waiter') AS t(batch_id text, completed boolean);
SELECT dblink_disconnect('waiter');
DROP FUNCTION waiting_on_api(text);
DROP FOREIGN TABLE stalled_progress;
DROP USER MAPPING FOR CURRENT_USER SERVER stalled;
DROP SERVER stalled;
DROP EXTENSION dblink;

-- ----------------------------------------------------------------
-- nimble_scans: the scans in flight.  Here, this backend's own (the test
-- cluster does not preload nimble_fdw; every backend's: test/shared/).
-- Read from inside a query, while its scan runs: the subquery in the
-- select list is run at the first row, once the scan has read its first
-- unit (the condition, run locally, keeps the LIMIT from bounding the scan,
-- which would make its requests unknown).
-- ----------------------------------------------------------------
SELECT count(*) AS scans FROM nimble_scans;
CREATE FUNCTION scans_now(query text) RETURNS SETOF json
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'SELECT json_array_elements((SELECT json_agg(s) FROM %s s)) FROM (%s) q WHERE random() >= 0 LIMIT 1',
    'nimble_scans', query);
END $$;
SELECT (j->>'pid')::int = pg_backend_pid() AS this_backend,
       j->>'role' = current_user AS mine, j->>'database' = current_database() AS this_db,
       j->>'server' AS server, j->>'resource' AS resource, j->>'route' AS route,
       (j->>'started_at')::timestamptz <= clock_timestamp() AS started,
       (j->>'requests_done')::int >= 2 AS under_way,
       j->'requests_expected' AS expected, j->'waiting_for' AS waiting_for,
       (j->>'progress')::float8 > 0 AS some_done
  FROM scans_now('SELECT * FROM nimble.batch_progress') j;
-- a keyed scan expects a request per key
SELECT j->>'route' AS route, j->'requests_expected' AS expected
  FROM scans_now($$SELECT * FROM nimble.batch_progress WHERE batch_id = ANY (ARRAY[
    'b1000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000002',
    'b1000000-0000-4000-8000-000000000003'])$$) j;
-- a scan that fails gives its slot back, as one that ends does
\set broken :mock_url '/fault=status/status=500/on=progress/v1'
CREATE SERVER broken FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'broken', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER broken OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE broken_progress (batch_id text) SERVER broken
  OPTIONS (resource 'batch_progress');
SELECT sqlstate_of('SELECT * FROM broken_progress');
SELECT count(*) AS scans_left FROM nimble_scans;
SET client_min_messages = warning;
DROP SERVER broken CASCADE;
RESET client_min_messages;
-- a role that is not the scan's sees its pid, role and database only, as
-- in pg_stat_activity (a SECURITY DEFINER function looks as its owner)
CREATE ROLE nimble_onlooker;
CREATE FUNCTION onlooker_scans() RETURNS SETOF json
  LANGUAGE sql SECURITY DEFINER AS 'SELECT row_to_json(s) FROM nimble_scans s';
ALTER FUNCTION onlooker_scans() OWNER TO nimble_onlooker;
SELECT j->>'role' = current_user AS mine, j->'server' AS server,
       j->'resource' AS resource, j->'requests_done' AS requests_done
  FROM (SELECT json_array_elements((SELECT json_agg(o) FROM onlooker_scans() o)) j
          FROM (SELECT * FROM nimble.batch_progress LIMIT 1) q) x;
GRANT pg_read_all_stats TO nimble_onlooker;
SELECT j->>'server' AS server, j->>'resource' AS resource
  FROM (SELECT json_array_elements((SELECT json_agg(o) FROM onlooker_scans() o)) j
          FROM (SELECT * FROM nimble.batch_progress LIMIT 1) q) x;
DROP FUNCTION onlooker_scans();
DROP ROLE nimble_onlooker;
DROP FUNCTION scans_now(text);
