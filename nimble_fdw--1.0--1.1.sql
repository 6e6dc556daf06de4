/* nimble_fdw--1.0--1.1.sql: statistics, rate limits, scans in flight and waiting for a batch */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION nimble_fdw UPDATE TO '1.1'" to load this file. \quit

CREATE FUNCTION nimble_stats(
    OUT server text,
    OUT requests bigint,
    OUT pages bigint,
    OUT bytes bigint,
    OUT retries bigint,
    OUT cache_hits bigint,
    OUT errors bigint,
    OUT errors_by_status jsonb,
    OUT network_wait_ms double precision,
    OUT rate_limit_wait_ms double precision,
    OUT connections bigint,
    OUT since timestamptz,
    OUT scans bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION nimble_stats()
  IS 'what this backend (with nimble_fdw preloaded: the cluster) asked of each nimble_fdw server: requests, pages, bytes, retries, cache hits, errors, waiting';

CREATE VIEW nimble_stats AS SELECT * FROM nimble_stats();

COMMENT ON VIEW nimble_stats
  IS 'what this backend (preloaded: the cluster) asked of each nimble_fdw server (see nimble_stats())';

-- as nimble_stats() itself is (no key, no url: counts per server)
GRANT SELECT ON nimble_stats TO PUBLIC;

CREATE FUNCTION nimble_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION nimble_stats_reset()
  IS 'zero the statistics of this backend, and with nimble_fdw preloaded this database''s for the cluster';

-- with the preload it zeroes everyone's figures: as pg_stat_reset, for
-- superusers and whom they grant it to
REVOKE ALL ON FUNCTION nimble_stats_reset() FROM PUBLIC;

-- with the preload the cache is the cluster's, and so is clearing it
REVOKE ALL ON FUNCTION nimble_cache_clear() FROM PUBLIC;

CREATE FUNCTION nimble_rate_limits(
    OUT host text,
    OUT shared boolean,
    OUT limit_requests integer,
    OUT window_seconds double precision,
    OUT in_window integer,
    OUT in_flight integer,
    OUT held_until timestamptz,
    OUT from_api boolean,
    OUT answered boolean,
    OUT last_used timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION nimble_rate_limits()
  IS 'the request budget of each API key and host: the window of the API''s limit, what it holds, requests in flight, holds after a 429 or ratelimit-remaining 0';

CREATE VIEW nimble_rate_limits AS SELECT * FROM nimble_rate_limits();

COMMENT ON VIEW nimble_rate_limits
  IS 'the request budget of each API key and host (see nimble_rate_limits())';

-- in shared memory the budgets are the whole cluster's: like other
-- backends' activity, they are for pg_read_all_stats
REVOKE ALL ON FUNCTION nimble_rate_limits() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION nimble_rate_limits() TO pg_read_all_stats;
REVOKE ALL ON nimble_rate_limits FROM PUBLIC;
GRANT SELECT ON nimble_rate_limits TO pg_read_all_stats;

CREATE FUNCTION nimble_scans(
    OUT pid integer,
    OUT role text,
    OUT database text,
    OUT server text,
    OUT resource text,
    OUT route text,
    OUT started_at timestamptz,
    OUT requests_done bigint,
    OUT requests_expected bigint,
    OUT rows bigint,
    OUT bytes bigint,
    OUT retries bigint,
    OUT waiting_for text,
    OUT progress double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION nimble_scans()
  IS 'the nimble_fdw scans in flight: every backend''s with shared_preload_libraries, else this one''s; other roles'' details as in pg_stat_activity';

CREATE VIEW nimble_scans AS SELECT * FROM nimble_scans();

COMMENT ON VIEW nimble_scans
  IS 'the nimble_fdw scans in flight, with their progress (see nimble_scans())';

-- anyone may look: other roles' scans show as in pg_stat_activity
GRANT SELECT ON nimble_scans TO PUBLIC;

CREATE TYPE nimble_batch_progress AS (
    batch_id text,
    completed boolean,
    completed_count integer,
    progress numeric,
    completed_at timestamptz);

CREATE FUNCTION nimble_wait_batch(batch_id text, timeout interval,
                                  server name DEFAULT NULL)
RETURNS nimble_batch_progress
AS 'MODULE_PATHNAME'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION nimble_wait_batch(text, interval, name)
  IS 'poll a batch''s progress with backoff until it completes (returns its progress) or the timeout passes (an error)';
