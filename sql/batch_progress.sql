--
-- batch_progress: GET /batches/{id}/progress per batch
--
\set VERBOSITY terse
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`

SELECT * FROM nimble.batch_progress ORDER BY batch_id;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;

\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT * FROM nimble.batch_progress
 WHERE batch_id IN ('b1000000-0000-4000-8000-000000000009', 'no-such-batch');
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- a row never depends on the route
CREATE TEMP TABLE full_progress AS SELECT * FROM nimble.batch_progress;
SELECT count(*) FROM (
  SELECT * FROM full_progress
  EXCEPT ALL
  SELECT k.* FROM full_progress f,
         LATERAL (SELECT * FROM nimble.batch_progress k WHERE k.batch_id = f.batch_id) k
) missing_or_different;
-- and batches agrees with batch_progress
SELECT count(*) FROM (
  SELECT batch_id, completed, completed_count, progress, completed_at FROM nimble.batches
  EXCEPT ALL
  SELECT * FROM full_progress
) different;
