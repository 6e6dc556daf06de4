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
CREATE FOREIGN TABLE bad (a text) SERVER nimble OPTIONS (resource 'tasks');
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

DROP SERVER ok1, ok2, nomap CASCADE;
DROP ROLE nimble_reader;
