-- Retries, FLAKY and per-attempt records (issue 16, parts 3 and 4).

-- How many more times a FAILED or TIMED_OUT test of the Testrun runs.
ALTER TABLE testruns ADD COLUMN retries INTEGER NOT NULL DEFAULT 0
    CHECK (retries BETWEEN 0 AND 5);
-- FLAKY tests, also counted in tests_passed (a FLAKY test passed).
ALTER TABLE testruns ADD COLUMN tests_flaky BIGINT NOT NULL DEFAULT 0
    CHECK (tests_flaky >= 0);
-- The Testrun this one reran (RerunTestrun). No foreign key: the original
-- may be deleted and its rerun stays.
ALTER TABLE testruns ADD COLUMN rerun_of BIGINT;

ALTER TABLE tests DROP CONSTRAINT tests_status_check;
ALTER TABLE tests ADD CONSTRAINT tests_status_check
    CHECK (status IN ('QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'ERROR', 'FLAKY'));
-- Attempts that ended FAILED or TIMED_OUT: a later pass is FLAKY.
ALTER TABLE tests ADD COLUMN failed_attempts INTEGER NOT NULL DEFAULT 0;
-- A retry stays off the runner its last attempt failed on until
-- avoid_until, while another runner is attached (see docs/design.md).
ALTER TABLE tests ADD COLUMN avoid_runner TEXT;
ALTER TABLE tests ADD COLUMN avoid_until BIGINT;

-- One row per ended run of a test: a result, or its runner lost. The run
-- in progress is the tests row itself. No foreign key, as for test_cases:
-- rows are written while the same transaction holds the test's row, and
-- delete_testrun removes a Testrun's attempts explicitly.
CREATE TABLE test_attempts (
    test_id     BIGINT  NOT NULL,
    testrun_id  BIGINT  NOT NULL,
    attempt     INTEGER NOT NULL,
    status      TEXT    NOT NULL
        CHECK (status IN ('PASSED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'ERROR')),
    runner_name TEXT    NOT NULL,
    exit_code   INTEGER,
    started_at  BIGINT,
    finished_at BIGINT  NOT NULL,
    duration_ms BIGINT,
    error       TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (test_id, attempt)
);
CREATE INDEX test_attempts_by_testrun ON test_attempts (testrun_id, test_id, attempt);
