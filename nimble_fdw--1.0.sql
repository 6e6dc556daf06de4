/* nimble_fdw--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION nimble_fdw" to load this file. \quit

CREATE FUNCTION nimble_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION nimble_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER nimble_fdw
  HANDLER nimble_fdw_handler
  VALIDATOR nimble_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER nimble_fdw
  IS 'Nimble web-data API batch jobs: batches, batch_tasks, batch_progress';

CREATE FUNCTION nimble_cache_clear()
RETURNS bigint
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION nimble_cache_clear()
  IS 'drop the API responses this backend keeps for cache_ttl; returns how many';
