-- Test cases from the JUnit XML reports tests write (issue 15).
--
-- A test's case counts and its Testrun's sums are columns kept by the same
-- transaction that stores the cases, so neither the tests table nor the
-- list page ever aggregates cases. Counts are of one attempt: the first
-- batch of a newer attempt (after a lost runner) replaces the older one's
-- cases and counts (`cases_attempt`); the log keeps every attempt.
ALTER TABLE tests ADD COLUMN cases_attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tests ADD COLUMN cases_total   BIGINT  NOT NULL DEFAULT 0 CHECK (cases_total >= 0);
ALTER TABLE tests ADD COLUMN cases_passed  BIGINT  NOT NULL DEFAULT 0 CHECK (cases_passed >= 0);
ALTER TABLE tests ADD COLUMN cases_failed  BIGINT  NOT NULL DEFAULT 0 CHECK (cases_failed >= 0);
ALTER TABLE tests ADD COLUMN cases_errored BIGINT  NOT NULL DEFAULT 0 CHECK (cases_errored >= 0);
ALTER TABLE tests ADD COLUMN cases_skipped BIGINT  NOT NULL DEFAULT 0 CHECK (cases_skipped >= 0);
-- What went wrong with the report ("JUnit report unreadable: ..."), or how
-- it disagrees with the exit code; never a verdict.
ALTER TABLE tests ADD COLUMN case_note     TEXT    NOT NULL DEFAULT '';

ALTER TABLE testruns ADD COLUMN cases_total   BIGINT NOT NULL DEFAULT 0 CHECK (cases_total >= 0);
ALTER TABLE testruns ADD COLUMN cases_passed  BIGINT NOT NULL DEFAULT 0 CHECK (cases_passed >= 0);
ALTER TABLE testruns ADD COLUMN cases_failed  BIGINT NOT NULL DEFAULT 0 CHECK (cases_failed >= 0);
ALTER TABLE testruns ADD COLUMN cases_errored BIGINT NOT NULL DEFAULT 0 CHECK (cases_errored >= 0);
ALTER TABLE testruns ADD COLUMN cases_skipped BIGINT NOT NULL DEFAULT 0 CHECK (cases_skipped >= 0);

-- No foreign keys, as for log_lines (migration 0003 on Postgres): a case
-- is only written while the same transaction holds its test's row, and
-- delete_testrun removes a Testrun's cases explicitly.
CREATE TABLE test_cases (
    test_id     BIGINT  NOT NULL,
    testrun_id  BIGINT  NOT NULL,
    attempt     INTEGER NOT NULL,
    -- Position in the report (from 0): a resent batch overlaps on it, so
    -- the key makes storing each case exactly once a property of the table.
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    status      TEXT    NOT NULL CHECK (status IN ('PASSED', 'FAILED', 'ERROR', 'SKIPPED')),
    -- 0 for FAILED and ERROR, 1 otherwise: the listing's first sort key,
    -- stored so the index serves "failed first, then by name".
    rank        SMALLINT NOT NULL CHECK (rank IN (0, 1)),
    suite       TEXT    NOT NULL,
    classname   TEXT    NOT NULL,
    -- Byte order, as SQLite sorts: both stores list cases alike.
    name        TEXT    COLLATE "C" NOT NULL,
    file        TEXT    NOT NULL,
    line        INTEGER,
    duration_ms BIGINT,
    message     TEXT    NOT NULL,
    details     TEXT    NOT NULL,
    system_out  TEXT    NOT NULL,
    system_err  TEXT    NOT NULL,
    PRIMARY KEY (test_id, attempt, idx)
);

-- ListTestCases over a whole Testrun, in its order.
CREATE INDEX test_cases_listing ON test_cases (testrun_id, rank, name, test_id, idx);
