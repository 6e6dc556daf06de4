--
-- api_scrape: a scraping API's batch progress through the same tables
-- (server option api 'scrape'; mock test/mock_scrape.py)
--
\getenv scrape_url NIMBLE_SCRAPE_MOCK_URL
\set api_url :scrape_url '/api/v1'
\set VERBOSITY terse

CREATE SERVER scr FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (api 'scrape', url :'api_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER scr OPTIONS (api_key 'test-key');
CREATE SCHEMA scr;
-- the remote schema is the api's name
IMPORT FOREIGN SCHEMA nimble FROM SERVER scr INTO scr;
IMPORT FOREIGN SCHEMA scrape FROM SERVER scr INTO scr;
\det+ scr.*
\d scr.batch_progress
\d scr.batch_tasks

-- one batch: one request, authenticated with X-API-Key (and no Bearer)
\set x `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/reset"`
SELECT * FROM scr.batch_progress WHERE batch_id = 'batch_xyz789';
\set n `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
\set h `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/last_headers"`
SELECT (:'h'::jsonb)->>'x-api-key' AS x_api_key, (:'h'::jsonb) ? 'authorization' AS has_bearer,
       (:'h'::jsonb)->'authorized' AS authorized;

-- IN: one request per distinct id; unknown ids are no rows; odd ids are
-- percent-encoded into the path
\set x `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/reset"`
SELECT batch_id, total_urls, completed, failed, pending, total_items_extracted,
       estimated_completion, job_count
  FROM scr.batch_progress
 WHERE batch_id IN ('batch_done001', 'batch_empty000', 'batch odd/id ü?&%#',
                    'no-such-batch', 'batch_done001')
 ORDER BY batch_id;
\set n `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- the jobs are batch_tasks: job_id as task_id, status as state
SELECT task_id, url, state, items_extracted
  FROM scr.batch_tasks WHERE batch_id = 'batch_xyz789' ORDER BY task_id;
SELECT state, count(*), sum(items_extracted)
  FROM scr.batch_tasks WHERE batch_id = 'batch_large300' GROUP BY state ORDER BY state;
-- non-ASCII and \u-escaped URLs
SELECT task_id, url FROM scr.batch_tasks WHERE batch_id = 'batch_unicode01' ORDER BY task_id;

-- the counts agree with the jobs
SELECT p.batch_id, p.total_urls = count(t.*) AS total_ok,
       p.completed = count(*) FILTER (WHERE t.state = 'completed') AS completed_ok,
       p.pending = count(*) FILTER (WHERE t.state IN ('pending', 'processing')) AS pending_ok,
       p.total_items_extracted = sum(t.items_extracted) AS items_ok
  FROM scr.batch_progress p JOIN scr.batch_tasks t USING (batch_id)
 WHERE p.batch_id IN ('batch_xyz789', 'batch_large300', 'batch_failed01')
 GROUP BY p.batch_id, p.total_urls, p.completed, p.pending, p.total_items_extracted
 ORDER BY 1;

-- batches is the same rows as batch_progress
SELECT count(*) FROM (
  SELECT * FROM scr.batches WHERE batch_id IN ('batch_xyz789', 'batch_empty000')
  EXCEPT ALL
  SELECT * FROM scr.batch_progress WHERE batch_id IN ('batch_xyz789', 'batch_empty000')
) different;

-- the API lists no batches: a query without batch ids says what to add
SELECT * FROM scr.batch_progress;
\set VERBOSITY default
SELECT count(*) FROM scr.batch_tasks WHERE state = 'failed';
\set VERBOSITY terse
SELECT * FROM scr.batches;

-- joins give ids: the key join asks for them max_concurrency at a time
CREATE TEMP TABLE watched (batch_id text);
INSERT INTO watched VALUES ('batch_xyz789'), ('batch_done001'), ('gone');
ANALYZE watched;
EXPLAIN (COSTS OFF)
SELECT w.batch_id, p.pending FROM watched w LEFT JOIN scr.batch_progress p USING (batch_id);
SELECT w.batch_id, p.pending FROM watched w LEFT JOIN scr.batch_progress p USING (batch_id)
 ORDER BY 1;
\set x `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/reset"`
SELECT count(*) FROM scr.batch_tasks
 WHERE batch_id = ANY (ARRAY(SELECT batch_id FROM watched));
\set n `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- the cache works the same
ALTER SERVER scr OPTIONS (ADD cache_ttl '60');
SELECT nimble_cache_clear();
\set x `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/reset"`
SELECT pending FROM scr.batch_progress WHERE batch_id = 'batch_xyz789';
SELECT pending FROM scr.batch_progress WHERE batch_id = 'batch_xyz789';
\set n `curl -s "$NIMBLE_SCRAPE_MOCK_URL/_mock/count"`
SELECT :n AS requests;
ALTER SERVER scr OPTIONS (DROP cache_ttl);

-- nimble_wait_batch needs Nimble's progress shape
SELECT nimble_wait_batch('batch_xyz789', '1 second', 'scr');

-- errors: the API's own message (error.message), the same SQLSTATEs
CREATE SERVER scr_fault FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (api 'scrape', url :'api_url', max_retries '0', timeout_ms '1000');
CREATE USER MAPPING FOR CURRENT_USER SERVER scr_fault OPTIONS (api_key 'sekrit-key-123');
CREATE FOREIGN TABLE scr.fault_progress (batch_id text, pending integer, completed integer)
  SERVER scr_fault OPTIONS (resource 'batch_progress');
CREATE FOREIGN TABLE scr.fault_jobs (batch_id text, task_id text)
  SERVER scr_fault OPTIONS (resource 'batch_tasks');
CREATE FUNCTION set_scrape_fault(prefix text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER SERVER scr_fault OPTIONS (SET url %L)',
                 current_setting('nimble.scrape_url') || '/' || prefix || '/api/v1');
END $$;
SELECT set_config('nimble.scrape_url', :'scrape_url', false) IS NOT NULL AS set;
\set VERBOSITY default
-- a wrong key
SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789';
ALTER USER MAPPING FOR CURRENT_USER SERVER scr_fault OPTIONS (SET api_key 'test-key');
SELECT set_scrape_fault('fault=status/status=429');
SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789';
SELECT set_scrape_fault('fault=status/status=500');
SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789';
SELECT set_scrape_fault('fault=not_json');
SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789';
SELECT set_scrape_fault('fault=wrong_type');
SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789';
SELECT set_scrape_fault('fault=data_not_array');
SELECT count(*) FROM scr.fault_jobs WHERE batch_id = 'batch_xyz789';
\set VERBOSITY terse
SELECT set_scrape_fault('fault=stall_headers/stall=30');
SELECT sqlstate_of($$SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789'$$);
-- a cancel (here statement_timeout) lands while the request hangs
ALTER SERVER scr_fault OPTIONS (SET timeout_ms '60000');
SET statement_timeout = '300ms';
SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789';
RESET statement_timeout;
ALTER SERVER scr_fault OPTIONS (SET timeout_ms '1000');
SELECT set_scrape_fault('fault=truncate');
SELECT sqlstate_of($$SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789'$$);
SELECT set_scrape_fault('fault=html/status=502');
SELECT sqlstate_of($$SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789'$$);
-- retries recover from a transient 503
ALTER SERVER scr_fault OPTIONS (SET max_retries '2');
SELECT set_scrape_fault('fault=status/status=503/times=1');
SELECT * FROM scr.fault_progress WHERE batch_id = 'batch_xyz789';

DROP SCHEMA scr CASCADE;
DROP FUNCTION set_scrape_fault(text);
DROP SERVER scr CASCADE;
DROP SERVER scr_fault CASCADE;
