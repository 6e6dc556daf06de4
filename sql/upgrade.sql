--
-- upgrade: 1.0 installs alone, and ALTER EXTENSION UPDATE brings it to 1.1
--
SELECT current_database() AS suite_db \gset
CREATE DATABASE nimble_upgrade;
\c nimble_upgrade
CREATE EXTENSION nimble_fdw VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'nimble_fdw';
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'nimble_fdw')
   AND deptype = 'e' ORDER BY 1;
ALTER EXTENSION nimble_fdw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'nimble_fdw';
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'nimble_fdw')
   AND deptype = 'e' ORDER BY 1;
-- what 1.1 adds works after the update
SELECT count(*) FROM nimble_stats;
-- the update path is the one PostgreSQL sees
SELECT source, target, path FROM pg_extension_update_paths('nimble_fdw') ORDER BY 1, 2;
-- an updated 1.0 and a fresh 1.1 have the same objects
CREATE DATABASE nimble_fresh;
\c nimble_fresh
CREATE EXTENSION nimble_fdw;
SELECT extversion FROM pg_extension WHERE extname = 'nimble_fdw';
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'nimble_fdw')
   AND deptype = 'e' ORDER BY 1;
\c :suite_db
DROP DATABASE nimble_upgrade;
DROP DATABASE nimble_fresh;
