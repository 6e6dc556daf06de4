--
-- options: the validator and the lookups behind it
--
\getenv mock_url NIMBLE_MOCK_URL
\set api_url :mock_url '/v1'

-- unknown options list the valid ones for their context
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (uri 'https://x');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (api_key 'k');
CREATE USER MAPPING FOR PUBLIC SERVER nimble OPTIONS (key 'k');
CREATE FOREIGN TABLE bad (a text) SERVER nimble OPTIONS (table 'batches');
CREATE FOREIGN TABLE bad (a text OPTIONS (path 'x')) SERVER nimble;

-- url: http(s) with a host, no credentials, query or fragment
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url 'ftp://example.com/v1');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url 'file:///etc/passwd');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url 'not a url');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url 'https://user:secret@example.com/v1');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url 'https://example.com/v1?x=1');
CREATE SERVER ok1 FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url 'https://sdk.nimbleway.com/v2/');
CREATE SERVER ok2 FOREIGN DATA WRAPPER nimble_fdw;

-- integers: the range is in the hint
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (timeout_ms '0');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (timeout_ms 'soon');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (connect_timeout_ms '600001');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (page_size '1001');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (max_retries '-1');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (max_concurrency '65');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (max_response_bytes '10');
CREATE SERVER bad FOREIGN DATA WRAPPER nimble_fdw OPTIONS (api 'other');
ALTER SERVER ok2 OPTIONS (ADD timeout_ms '5000', ADD connect_timeout_ms '1000',
  ADD page_size '100', ADD max_retries '10', ADD max_concurrency '64',
  ADD max_response_bytes '1048576', ADD api 'nimble');

-- the api key: not empty, nothing that would break an HTTP header
CREATE USER MAPPING FOR CURRENT_USER SERVER ok1 OPTIONS (api_key '');
CREATE USER MAPPING FOR CURRENT_USER SERVER ok1 OPTIONS (api_key 'abc
def');
CREATE USER MAPPING FOR CURRENT_USER SERVER ok1 OPTIONS (api_key 'two words');

-- table and column options
CREATE FOREIGN TABLE bad (a text) SERVER nimble OPTIONS (resource 'jobs');
CREATE FOREIGN TABLE bad (a text OPTIONS (field '')) SERVER nimble OPTIONS (resource 'batches');
CREATE FOREIGN TABLE bad (a text OPTIONS (field 'input..url')) SERVER nimble OPTIONS (resource 'batches');
CREATE FOREIGN TABLE bad (a text OPTIONS (field 'input.')) SERVER nimble OPTIONS (resource 'batches');

-- a table whose name is no resource needs the option
CREATE FOREIGN TABLE my_table (batch_id text) SERVER nimble;
SELECT * FROM my_table;
DROP FOREIGN TABLE my_table;

-- a query needs a user mapping with an api_key; EXPLAIN alone does not
CREATE SERVER nomap FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url :'api_url');
CREATE FOREIGN TABLE nomap_batches (batch_id text) SERVER nomap OPTIONS (resource 'batches');
EXPLAIN (COSTS OFF) SELECT * FROM nomap_batches;
SELECT * FROM nomap_batches;
CREATE USER MAPPING FOR CURRENT_USER SERVER nomap;
SELECT * FROM nomap_batches;
-- a wrong key is the API's 401
ALTER USER MAPPING FOR CURRENT_USER SERVER nomap OPTIONS (ADD api_key 'wrong-key');
SELECT * FROM nomap_batches;
-- a PUBLIC mapping serves every user
DROP USER MAPPING FOR CURRENT_USER SERVER nomap;
CREATE USER MAPPING FOR PUBLIC SERVER nomap OPTIONS (api_key 'test-key');
SELECT count(*) FROM nomap_batches;

-- the key is hidden from users who do not own the server
CREATE ROLE nimble_reader;
GRANT USAGE ON FOREIGN SERVER nomap TO nimble_reader;
SET ROLE nimble_reader;
SELECT srvname, umoptions FROM pg_user_mappings WHERE srvname = 'nomap';
RESET ROLE;

-- a user who is not superuser needs a mapping with a key of their own (or
-- PUBLIC's); here PUBLIC's serves
CREATE SERVER readers FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url :'api_url');
CREATE FOREIGN TABLE readers_progress (batch_id text, progress numeric)
  SERVER readers OPTIONS (resource 'batch_progress');
GRANT USAGE ON FOREIGN SERVER readers TO nimble_reader;
GRANT SELECT ON readers_progress TO nimble_reader;
SET ROLE nimble_reader;
SELECT * FROM readers_progress WHERE batch_id = 'b1000000-0000-4000-8000-000000000001';
CREATE USER MAPPING FOR nimble_reader SERVER readers OPTIONS (api_key 'test-key');
SELECT * FROM readers_progress WHERE batch_id = 'b1000000-0000-4000-8000-000000000001';
-- settings that loosen security are for superusers only
RESET ROLE;
GRANT USAGE ON FOREIGN DATA WRAPPER nimble_fdw TO nimble_reader;
SET ROLE nimble_reader;
SET nimble_fdw.allowed_hosts = '*';
CREATE SERVER mine FOREIGN DATA WRAPPER nimble_fdw OPTIONS (tls_verify 'false');
CREATE SERVER mine FOREIGN DATA WRAPPER nimble_fdw OPTIONS (ca_bundle '/etc/ssl/certs/ca-certificates.crt');
CREATE SERVER mine FOREIGN DATA WRAPPER nimble_fdw OPTIONS (tls_verify 'true');
DROP SERVER mine;
RESET ROLE;
REVOKE USAGE ON FOREIGN DATA WRAPPER nimble_fdw FROM nimble_reader;
DROP SERVER readers CASCADE;

-- TLS options
CREATE SERVER tls FOREIGN DATA WRAPPER nimble_fdw OPTIONS (tls_verify 'maybe');
CREATE SERVER tls FOREIGN DATA WRAPPER nimble_fdw OPTIONS (ca_bundle 'relative/ca.pem');
CREATE SERVER tls FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (ca_bundle '/etc/ssl/certs/ca-certificates.crt', tls_verify 'false');
DROP SERVER tls;

-- nimble_fdw.allowed_hosts: checked before any request is made
CREATE SERVER elsewhere FOREIGN DATA WRAPPER nimble_fdw OPTIONS (url 'https://example.com/v1');
CREATE USER MAPPING FOR CURRENT_USER SERVER elsewhere OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE elsewhere_batches (batch_id text) SERVER elsewhere OPTIONS (resource 'batches');
SET nimble_fdw.allowed_hosts = 'example.org';
SELECT * FROM elsewhere_batches;
SET nimble_fdw.allowed_hosts = 'example.org, [::1], EXAMPLE.COM';
EXPLAIN (COSTS OFF) SELECT * FROM elsewhere_batches;
SET nimble_fdw.allowed_hosts = 'bad list,';
-- the default allows Nimble's host only: loopback is refused
SET nimble_fdw.allowed_hosts = 'sdk.nimbleway.com';
SELECT * FROM error_of('SELECT count(*) FROM nomap_batches');
RESET nimble_fdw.allowed_hosts;
SELECT count(*) FROM nomap_batches;
DROP SERVER elsewhere CASCADE;

DROP SERVER ok1, ok2, nomap CASCADE;
DROP ROLE nimble_reader;
