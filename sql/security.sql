--
-- security: where keys may go (hosts, ports, plain http), what an API's
-- words may not carry (the key), who may wait on a batch, and who may
-- change a server that a superuser made insecure on purpose
--
\getenv mock_url NIMBLE_MOCK_URL
\set b1 'b1000000-0000-4000-8000-000000000001'
\set mock_api :mock_url '/v1'
\set echo_401 :mock_url '/fault=echo_auth/status=401/v1'
\set echo_400 :mock_url '/fault=echo_auth/status=400/v1'
\set echo_location :mock_url '/fault=echo_auth_location/v1'
SELECT regexp_replace(:'mock_url', '^http://', '') AS mock_host \gset

CREATE ROLE nimble_owner;
GRANT USAGE ON FOREIGN DATA WRAPPER nimble_fdw TO nimble_owner;
CREATE SCHEMA sec AUTHORIZATION nimble_owner;

-- ---------------------------------------------------------------------
-- nimble_fdw.allowed_hosts names ports: a host alone allows the scheme's
-- default port only
-- ---------------------------------------------------------------------
CREATE SERVER sec_mock FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'mock_api', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_mock OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE sec.progress (batch_id text, completed boolean)
  SERVER sec_mock OPTIONS (resource 'batch_progress');
\set query 'SELECT count(*) FROM sec.progress WHERE batch_id = ''b1000000-0000-4000-8000-000000000001'''
-- the mock's host without its port: another service of the host, refused
SET nimble_fdw.allowed_hosts = '127.0.0.1';
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT * FROM error_of(:'query');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests_made;
-- the host with the mock's port, or with any port
SET nimble_fdw.allowed_hosts = :'mock_host';
SELECT * FROM error_of(:'query');
SET nimble_fdw.allowed_hosts = '127.0.0.1:*';
SELECT * FROM error_of(:'query');
SET nimble_fdw.allowed_hosts = 'example.org, 127.0.0.1:1, *';
SELECT * FROM error_of(:'query');
-- a host alone allows port 80 for http and 443 for https (nothing listens
-- on either here: the request is made, and cannot connect)
SET nimble_fdw.allowed_hosts = '127.0.0.1';
ALTER SERVER sec_mock OPTIONS (SET url 'http://127.0.0.1/v1');
SELECT * FROM error_of(:'query');
ALTER SERVER sec_mock OPTIONS (SET url 'https://127.0.0.1/v1');
SELECT * FROM error_of(:'query');
ALTER SERVER sec_mock OPTIONS (SET url 'https://127.0.0.1:8443/v1');
SELECT * FROM error_of(:'query');
-- IPv6 and http:// entries; entries that say nothing clear are refused
SET nimble_fdw.allowed_hosts = '[::1]:8443, http://127.0.0.1:8443, https://example.org/';
SELECT * FROM error_of(:'query');
SET nimble_fdw.allowed_hosts = '127.0.0.1:0';
SET nimble_fdw.allowed_hosts = '127.0.0.1:http';
SET nimble_fdw.allowed_hosts = '*:443';
SET nimble_fdw.allowed_hosts = ':443';
RESET nimble_fdw.allowed_hosts;

-- ---------------------------------------------------------------------
-- plain http: only to loopback, to an http:// entry, or on a superuser's
-- own server.  0.0.0.0 is not loopback to these rules, and nothing
-- listens on its port 1: an allowed request cannot connect.
-- ---------------------------------------------------------------------
ALTER SERVER sec_mock OWNER TO nimble_owner;
ALTER SERVER sec_mock OPTIONS (SET url 'http://0.0.0.0:1/v1');
CREATE USER MAPPING FOR nimble_owner SERVER sec_mock OPTIONS (api_key 'test-key');
GRANT SELECT ON sec.progress TO nimble_owner;
SET nimble_fdw.allowed_hosts = '0.0.0.0:1';
SET ROLE nimble_owner;
SELECT * FROM error_of(:'query');
RESET ROLE;
SET nimble_fdw.allowed_hosts = 'http://0.0.0.0:1';
SET ROLE nimble_owner;
SELECT * FROM error_of(:'query');
RESET ROLE;
-- a superuser's server may use it
ALTER SERVER sec_mock OWNER TO CURRENT_USER;
SET nimble_fdw.allowed_hosts = '0.0.0.0:1';
SELECT * FROM error_of(:'query');
-- plain http to loopback never leaves the machine: the owner's server on
-- the mock works once its port is allowed
ALTER SERVER sec_mock OWNER TO nimble_owner;
ALTER SERVER sec_mock OPTIONS (SET url :'mock_api');
SET nimble_fdw.allowed_hosts = :'mock_host';
SET ROLE nimble_owner;
SELECT * FROM error_of(:'query');
RESET ROLE;
RESET nimble_fdw.allowed_hosts;

-- ---------------------------------------------------------------------
-- the API's words never carry the key: an API (or a proxy) that echoes
-- the request's Authorization header, in its error body or in a redirect
-- ---------------------------------------------------------------------
ALTER SERVER sec_mock OWNER TO CURRENT_USER;
ALTER SERVER sec_mock OPTIONS (SET url :'echo_401');
SELECT * FROM error_of(:'query');
ALTER SERVER sec_mock OPTIONS (SET url :'echo_400');
SELECT * FROM error_of(:'query');
ALTER SERVER sec_mock OPTIONS (SET url :'echo_location');
SELECT * FROM error_of(:'query');
-- (the mock really did echo it)
\set echoed `curl -s -H 'Authorization: Bearer test-key' "$NIMBLE_MOCK_URL/fault=echo_auth/v1/batches"`
SELECT :'echoed'::jsonb->>'msg' AS what_the_mock_said;

-- ---------------------------------------------------------------------
-- nimble_wait_batch needs USAGE on the server, as using the server does
-- ---------------------------------------------------------------------
ALTER SERVER sec_mock OPTIONS (SET url :'mock_api');
CREATE USER MAPPING FOR PUBLIC SERVER sec_mock OPTIONS (api_key 'test-key');
CREATE ROLE nimble_stranger;
SET ROLE nimble_stranger;
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT * FROM error_of(format('SELECT * FROM nimble_wait_batch(%L, %L, %L)', :'b1', '2 s', 'sec_mock'));
-- a scan of the server's table is refused to it as well
SELECT * FROM error_of(:'query');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests_made;
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER sec_mock TO nimble_stranger;
SET ROLE nimble_stranger;
SELECT batch_id, completed FROM nimble_wait_batch(:'b1', '2 s', 'sec_mock');
RESET ROLE;
REVOKE USAGE ON FOREIGN SERVER sec_mock FROM nimble_stranger;

-- ---------------------------------------------------------------------
-- tls_verify 'false' and ca_bundle are a superuser's to set; the owner of
-- a server a superuser set them on may still change its other options
-- ---------------------------------------------------------------------
ALTER SERVER sec_mock OWNER TO nimble_owner;
ALTER SERVER sec_mock OPTIONS (ADD tls_verify 'false', ADD ca_bundle '/etc/ssl/certs/ca-certificates.crt');
SET ROLE nimble_owner;
ALTER SERVER sec_mock OPTIONS (ADD timeout_ms '5000');
ALTER SERVER sec_mock OPTIONS (SET timeout_ms '6000', SET url :'mock_api');
DO $$ BEGIN EXECUTE 'ALTER SERVER sec_mock OPTIONS (SET timeout_ms ''7000'')'; END $$;
-- setting either again is refused, even to the value it has
ALTER SERVER sec_mock OPTIONS (SET tls_verify 'false');
ALTER SERVER sec_mock OPTIONS (SET ca_bundle '/etc/ssl/certs/ca-certificates.crt');
CREATE SERVER sec_own FOREIGN DATA WRAPPER nimble_fdw OPTIONS (tls_verify 'false');
-- taking them away, or tls_verify 'true', is the owner's right
ALTER SERVER sec_mock OPTIONS (SET tls_verify 'true');
ALTER SERVER sec_mock OPTIONS (DROP ca_bundle);
RESET ROLE;
SELECT regexp_replace(srvoptions::text, '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT') AS options
  FROM pg_foreign_server WHERE srvname = 'sec_mock';
-- a fresh session, where nimble_fdw is not loaded yet when ALTER SERVER
-- runs: the library loads to validate the options, and still tells what
-- the statement changes
ALTER SERVER sec_mock OPTIONS (SET tls_verify 'false');
CREATE EXTENSION dblink;
SELECT current_database() AS db, current_setting('port') AS port,
       split_part(current_setting('unix_socket_directories'), ',', 1) AS sock \gset
SELECT dblink_connect('fresh', format('host=%s port=%s dbname=%s', :'sock', :'port', :'db'));
SELECT dblink_exec('fresh', 'SET ROLE nimble_owner; ALTER SERVER sec_mock OPTIONS (SET timeout_ms ''8000'')');
SELECT dblink_exec('fresh', 'ALTER SERVER sec_mock OPTIONS (SET tls_verify ''false'')', false);
SELECT dblink_error_message('fresh');
SELECT dblink_disconnect('fresh');
DROP EXTENSION dblink;
SELECT regexp_replace(srvoptions::text, '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT') AS options
  FROM pg_foreign_server WHERE srvname = 'sec_mock';

DROP SERVER sec_mock CASCADE;
DROP SCHEMA sec CASCADE;
REVOKE USAGE ON FOREIGN DATA WRAPPER nimble_fdw FROM nimble_owner;
DROP ROLE nimble_owner, nimble_stranger;
