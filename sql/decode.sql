--
-- decode: every column type reads the API's JSON text exactly as PostgreSQL
-- reads that text.  The decoder has fast paths (timestamps, integers, flat
-- jsonb objects, strings read in place); they may change only the time a
-- scan takes, never a value.  Each check compares a decoded column with
-- PostgreSQL's own reading of the same text, taken from the row ('$row').
--
\getenv mock_url NIMBLE_MOCK_URL
\set b1 'b1000000-0000-4000-8000-000000000001'
\set shapes_url :mock_url '/fault=shapes/on=details/v1'
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';

-- fault=shapes: batch details whose tasks spell their values every way
CREATE SERVER shapes FOREIGN DATA WRAPPER nimble_fdw
  OPTIONS (url :'shapes_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER shapes OPTIONS (api_key 'test-key');
CREATE FOREIGN TABLE shape_tasks (
  batch_id text,
  task_id text,
  created_at timestamptz,
  created_ts timestamp OPTIONS (field 'created_at'),
  created_text text OPTIONS (field 'created_at'),
  status_code integer,
  code_big bigint OPTIONS (field 'status_code'),
  code_num numeric OPTIONS (field 'status_code'),
  code_text text OPTIONS (field 'status_code'),
  input jsonb,
  input_json json OPTIONS (field 'input'),
  query jsonb,
  r jsonb OPTIONS (field '$row')
) SERVER shapes OPTIONS (resource 'batch_tasks');

-- timestamps: RFC 3339 with Z or an offset, 0 to 7 fraction digits, a
-- space for the T, a leap day, a leap second, years 1 and 9999, infinity
SELECT task_id, created_text, created_at,
       created_at IS NOT DISTINCT FROM created_text::timestamptz AS same_timestamptz,
       created_ts IS NOT DISTINCT FROM created_text::timestamp AS same_timestamp
  FROM shape_tasks WHERE batch_id = :'b1' ORDER BY task_id;

-- numbers: a whole number in any spelling is an integer; numeric keeps
-- the value as written
SELECT task_id, code_text, status_code, code_big, code_num,
       code_num = code_text::numeric AS same_numeric,
       status_code = code_text::numeric AS same_integer
  FROM shape_tasks WHERE batch_id = :'b1' ORDER BY task_id;

-- jsonb: flat objects (sorted keys, numbers, empty, 16 keys), a repeated
-- key (the last wins), 17 keys, nesting, escapes, non-ASCII keys, arrays
-- and scalars; each equal, in value, text and key lookup, to jsonb_in's
SELECT task_id, input,
       input = canon AS same_value,
       input::text = canon::text AS same_text,
       input @> canon AND canon @> input AS same_containment,
       input = r -> 'input' AS same_as_row,
       CASE WHEN jsonb_typeof(canon) = 'object'
            THEN (SELECT coalesce(bool_and(input -> k = canon -> k), true)
                    FROM jsonb_object_keys(canon) k)
       END AS same_lookups
  FROM (SELECT task_id, input, input_json::text::jsonb AS canon, r
          FROM shape_tasks WHERE batch_id = :'b1') s
 ORDER BY task_id;
SELECT task_id, query FROM shape_tasks
 WHERE batch_id = :'b1' AND query IS NOT NULL;

-- the mock's whole data set (1,033 tasks): no column differs from
-- PostgreSQL's reading of the row's own text
CREATE FOREIGN TABLE all_tasks (
  batch_id text, task_id text, state text, status_code integer,
  api_type text, error text, error_type text,
  created_at timestamptz, modified_at timestamptz, account_name text,
  input jsonb, query jsonb, output_url text, status_url text,
  download_url text,
  r jsonb OPTIONS (field '$row')
) SERVER nimble OPTIONS (resource 'batch_tasks');
SELECT count(*) AS tasks,
       count(*) FILTER (WHERE
         task_id IS DISTINCT FROM r ->> 'id'
         OR state IS DISTINCT FROM r ->> 'state'
         OR status_code IS DISTINCT FROM (r ->> 'status_code')::integer
         OR api_type IS DISTINCT FROM r ->> 'api_type'
         OR error IS DISTINCT FROM r ->> 'error'
         OR error_type IS DISTINCT FROM r ->> 'error_type'
         OR created_at IS DISTINCT FROM (r ->> 'created_at')::timestamptz
         OR modified_at IS DISTINCT FROM (r ->> 'modified_at')::timestamptz
         OR account_name IS DISTINCT FROM r ->> 'account_name'
         OR input IS DISTINCT FROM nullif(r -> 'input', 'null')
         OR query IS DISTINCT FROM nullif(r -> '_query', 'null')
         OR input::text IS DISTINCT FROM nullif(r -> 'input', 'null')::text
         OR status_url IS DISTINCT FROM r ->> 'status_url') AS differing
  FROM all_tasks;

-- arrays: an array column takes each element's text (a string's content,
-- a number's or literal's lexeme, an object's or array's JSON text) or
-- NULL, as json_array_elements_text reads the same JSON text
CREATE FOREIGN TABLE shape_arrays (batch_id text, task_id text,
  labels text[], labels_json json OPTIONS (field 'labels'))
  SERVER shapes OPTIONS (resource 'batch_tasks');
SELECT task_id, labels, cardinality(labels) AS n,
       labels IS NOT DISTINCT FROM
         ARRAY(SELECT json_array_elements_text(labels_json)) AS same_elements
  FROM shape_arrays WHERE batch_id = :'b1' AND task_id <= 'shape-08'
 ORDER BY task_id;
SELECT count(*) AS arrays,
       count(*) FILTER (WHERE labels IS NOT DISTINCT FROM
                        ARRAY(SELECT json_array_elements_text(labels_json))) AS same
  FROM shape_arrays WHERE batch_id = :'b1';

-- a value PostgreSQL refuses is refused the same way, with the column,
-- the batch and the text in the context
CREATE FOREIGN TABLE shape_small (batch_id text, task_id text,
  status_code smallint) SERVER shapes OPTIONS (resource 'batch_tasks');
SELECT task_id, status_code FROM shape_small WHERE batch_id = :'b1';

DROP FOREIGN TABLE shape_tasks, shape_small, shape_arrays, all_tasks;
DROP SERVER shapes CASCADE;
