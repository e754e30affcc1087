-- The foreign key from log_lines to testruns cost a trigger call per
-- inserted line: 57% of Postgres' CPU during log ingestion (bench scenario
-- 2). Lines are only ever written for a test whose row the same transaction
-- holds locked, and delete_testrun removes a Testrun's lines explicitly, so
-- the key protected nothing the code does not already guarantee.
ALTER TABLE log_lines DROP CONSTRAINT log_lines_testrun_id_fkey;
