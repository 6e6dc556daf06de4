--
-- upgrade: 1.0 installs alone, and ALTER EXTENSION UPDATE brings it to 1.1
--
SELECT current_database() AS suite_db \gset
-- :members lists the extension's member objects.  The array types and the
-- row type of a view, which PostgreSQL makes along with their objects, are
-- left out: 17 and later record them as members too, 15 and 16 do not.
\set members 'SELECT pg_describe_object(d.classid, d.objid, 0) AS object FROM pg_depend d LEFT JOIN pg_type t ON d.classid = ''pg_type''::regclass AND t.oid = d.objid LEFT JOIN pg_class c ON c.oid = t.typrelid WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = ''nimble_fdw'') AND d.deptype = ''e'' AND (t.oid IS NULL OR (t.typcategory <> ''A'' AND (c.oid IS NULL OR c.relkind = ''c''))) ORDER BY 1;'
CREATE DATABASE nimble_upgrade;
\c nimble_upgrade
CREATE EXTENSION nimble_fdw VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'nimble_fdw';
:members
ALTER EXTENSION nimble_fdw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'nimble_fdw';
:members
-- what 1.1 adds works after the update
SELECT count(*) FROM nimble_stats;
-- the update path is the one PostgreSQL sees
SELECT source, target, path FROM pg_extension_update_paths('nimble_fdw') ORDER BY 1, 2;
-- an updated 1.0 and a fresh 1.1 have the same objects
CREATE DATABASE nimble_fresh;
\c nimble_fresh
CREATE EXTENSION nimble_fdw;
SELECT extversion FROM pg_extension WHERE extname = 'nimble_fdw';
:members
\c :suite_db
DROP DATABASE nimble_upgrade;
DROP DATABASE nimble_fresh;
