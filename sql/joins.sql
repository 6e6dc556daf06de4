--
-- joins: the parameterized nested loop, which makes one call per outer
-- row.  The key join (key_join), which asks for a block of outer rows'
-- keys at once, is the planner's choice for most of these joins: it is
-- switched off here, as a user would to compare the two.
--
SET nimble_fdw.enable_key_join = off;
\set VERBOSITY terse
CREATE TEMP TABLE watched (batch_id text PRIMARY KEY, note text);
INSERT INTO watched VALUES
  ('b1000000-0000-4000-8000-000000000001', 'first'),
  ('b1000000-0000-4000-8000-000000000004', 'has nulls'),
  ('no-such-batch', 'gone');
ANALYZE watched;

-- a small local table: a nested loop asks for its keys only
EXPLAIN (COSTS OFF)
SELECT w.note, t.task_id FROM watched w JOIN nimble.batch_tasks t USING (batch_id);
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT w.note, t.task_id, t.state
  FROM watched w JOIN nimble.batch_tasks t USING (batch_id) ORDER BY 1, 2;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/stats"`
SELECT (:'n'::jsonb) - 'by_path' - 'unauthorized' AS requests;
SELECT explain_analyze('SELECT w.note, t.progress FROM watched w JOIN nimble.batch_progress t USING (batch_id)');

-- a correlated subquery: a rescan per outer row, with its own key
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT w.note,
       (SELECT count(*) FROM nimble.batch_tasks t WHERE t.batch_id = w.batch_id) AS tasks
  FROM watched w ORDER BY 1;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests;

-- LATERAL
SELECT w.note, p.progress
  FROM watched w, LATERAL (SELECT * FROM nimble.batch_progress p WHERE p.batch_id = w.batch_id) p
 ORDER BY 1;

-- two foreign tables joined on batch_id
SELECT b.batch_id, b.completed, p.progress
  FROM nimble.batch_progress p JOIN nimble.batches b USING (batch_id)
 WHERE b.username = 'alice';

-- every rescan of an inner scan re-issues its requests
\set x `curl -s "$NIMBLE_MOCK_URL/_mock/reset"`
SELECT count(*) FROM (VALUES (1), (2), (3)) v(i)
  CROSS JOIN LATERAL (SELECT * FROM nimble.batch_progress p
                       WHERE p.batch_id = 'b1000000-0000-4000-8000-000000000001'
                         AND v.i > 0) p;
\set n `curl -s "$NIMBLE_MOCK_URL/_mock/count"`
SELECT :n AS requests_for_three_scans;

-- join results equal those of a full scan
SELECT count(*) FROM (
  SELECT t.* FROM watched w JOIN nimble.batch_tasks t USING (batch_id)
  EXCEPT ALL
  SELECT t.* FROM nimble.batch_tasks t WHERE t.batch_id IN (SELECT batch_id FROM watched)
) different;

-- a large outer side: one walk of the list beats a request per outer row
CREATE TEMP TABLE many AS
  SELECT format('b1000000-0000-4000-8000-%s', lpad(to_hex(i), 12, '0')) AS batch_id
    FROM generate_series(1, 5000) i;
ANALYZE many;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM many m JOIN nimble.batch_progress p USING (batch_id);
SELECT count(*) FROM many m JOIN nimble.batch_progress p USING (batch_id);
