--
-- wait_batch: nimble_wait_batch() polls a batch's progress until it completes
--
\set b1 'b1000000-0000-4000-8000-000000000001'
\set b2 'b1000000-0000-4000-8000-000000000002'
\set b9 'b1000000-0000-4000-8000-000000000009'

-- a complete batch: its progress row at once, after one request
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT * FROM nimble_wait_batch(:'b1', '10 s', 'nimble');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- a batch that never completes (it has no tasks): an error once the timeout
-- has passed, with the last progress seen; polls at 0 s, 1 s and at the
-- deadline (1.5 s): 3 requests
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT clock_timestamp() AS t0 \gset
SELECT * FROM nimble_wait_batch(:'b2', '1.5 s', 'nimble');
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '1.5 s' AS waited_the_timeout;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- bad input
SELECT * FROM nimble_wait_batch('no-such-batch', '1 s', 'nimble');
SELECT * FROM nimble_wait_batch(:'b1', '-1 s', 'nimble');
SELECT * FROM nimble_wait_batch(:'b1', '1 s', 'no_such_server');
SELECT nimble_wait_batch(NULL, '1 s', 'nimble') IS NULL AS null_in_null_out;
CREATE EXTENSION dblink;
CREATE SERVER not_nimble FOREIGN DATA WRAPPER dblink_fdw;
SELECT * FROM nimble_wait_batch(:'b1', '1 s', 'not_nimble');
DROP SERVER not_nimble;
-- without a server name, the one nimble_fdw server is used; with several,
-- the function asks for the name
CREATE SERVER second_nimble FOREIGN DATA WRAPPER nimble_fdw;
\set VERBOSITY terse
SELECT sqlstate_of(format('SELECT nimble_wait_batch(%L, %L)', :'b1', '1 s'))
       ~ '^22023: nimble_wait_batch needs a server name: there are \d+ nimble_fdw servers$' AS asks_for_a_name;
\set VERBOSITY default
DROP SERVER second_nimble;

-- a batch that completes during the wait: another session waits on batch 9
-- (one task in progress), this one finishes that task in the mock
SELECT current_database() AS db, current_setting('port') AS port,
       split_part(current_setting('unix_socket_directories'), ',', 1) AS sock \gset
SELECT dblink_connect('waiter', format('host=%s port=%s dbname=%s', :'sock', :'port', :'db'));
SELECT dblink_send_query('waiter',
  format('SELECT batch_id, completed, completed_count, progress FROM nimble_wait_batch(%L, %L, %L)',
         :'b9', '20 s', 'nimble'));
SELECT pg_sleep(0.3);
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/task_state?batch_id=b1000000-0000-4000-8000-000000000009&task_id=7a000000-0009-4000-8000-000000000003&state=success"`
SELECT * FROM dblink_get_result('waiter')
  AS t(batch_id text, completed boolean, completed_count integer, progress numeric);
SELECT * FROM dblink_get_result('waiter') AS t(batch_id text);	-- the end of its results
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`

-- a cancel ends the wait at once, between polls as during one
SELECT dblink_send_query('waiter',
  format('SELECT * FROM nimble_wait_batch(%L, %L, %L)', :'b2', '60 s', 'nimble'));
CREATE FUNCTION cancel_waiter() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..200 LOOP
    IF EXISTS (SELECT FROM pg_stat_activity
                WHERE query LIKE '%nimble_wait_batch(''b1%60 s%'
                  AND pid <> pg_backend_pid() AND state = 'active'
                  AND wait_event = 'Extension') THEN
      RETURN (SELECT bool_and(pg_cancel_backend(pid)) FROM pg_stat_activity
               WHERE query LIKE '%nimble_wait_batch(''b1%60 s%'
                 AND pid <> pg_backend_pid());
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;
SELECT clock_timestamp() AS t0 \gset
SELECT cancel_waiter();
SELECT * FROM dblink_get_result('waiter') AS t(batch_id text);
SELECT * FROM dblink_get_result('waiter') AS t(batch_id text);
SELECT clock_timestamp() - :'t0'::timestamptz < interval '10 s' AS ended_long_before_the_timeout;
SELECT dblink_disconnect('waiter');
DROP FUNCTION cancel_waiter();
DROP EXTENSION dblink;
