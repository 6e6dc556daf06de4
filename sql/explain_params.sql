--
-- explain_params: EXPLAIN of scans whose keys come from parameters.
-- PostgreSQL 17 changed how core prints these plans: an initplan is
-- "InitPlan 1" and its value "(InitPlan 1).col1" (15 and 16: "InitPlan 1
-- (returns $0)" and "$0"), and a parameterized join clause is written the
-- other way round.  explain_params_1.out holds the text of 17 and later.
-- The rows these queries return are checked in pushdown and tasks.
--
\set b7 'b1000000-0000-4000-8000-000000000007'

-- a key from a subquery (an initplan parameter)
EXPLAIN (COSTS OFF) SELECT count(*) FROM nimble.batch_tasks
 WHERE batch_id = (SELECT max(batch_id) FROM nimble.batches);

-- task ids from a join: one task_results request per outer row, in a
-- nested loop (the key join, which asks for them all at once, is the
-- default and has its own suite: it is switched off here to show the
-- nested loop's parameter)
SET nimble_fdw.enable_key_join = off;
PREPARE batch_results(text) AS
  SELECT t.task_id, r.result->'data'->'parsing'->>'title' AS title
    FROM nimble.batch_tasks t JOIN nimble.task_results r USING (task_id)
   WHERE t.batch_id = $1 AND t.state = 'success'
   ORDER BY t.task_id;
EXPLAIN (COSTS OFF) EXECUTE batch_results(:'b7');
DEALLOCATE batch_results;
RESET nimble_fdw.enable_key_join;
