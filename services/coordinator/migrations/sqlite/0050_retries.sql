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

-- SQLite cannot change a CHECK constraint, and `tests.status` must accept
-- FLAKY: the table is rebuilt (https://www.sqlite.org/lang_altertable.html,
-- "other kinds of table schema changes"). No other table has a foreign key
-- to `tests` (log_lines and test_cases name tests by id without one), so
-- dropping the old table cascades nowhere. Every column of 0001, 0010 and
-- 0040 (`expected_ms`) is copied, and every index re-created; a migration
-- adding columns or indexes to `tests` before this one must add them here
-- too.
CREATE TABLE tests_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    testrun_id    BIGINT  NOT NULL REFERENCES testruns (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    content       TEXT    NOT NULL,
    size_bytes    BIGINT  NOT NULL,
    status        TEXT    NOT NULL
        CHECK (status IN ('QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'ERROR', 'FLAKY')),
    attempt       INTEGER NOT NULL DEFAULT 0,
    assignment_id TEXT UNIQUE,
    runner_id     TEXT,
    runner_name   TEXT,
    exit_code     INTEGER,
    error         TEXT    NOT NULL DEFAULT '',
    queued_at     BIGINT  NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    duration_ms   BIGINT,
    log_lines     BIGINT  NOT NULL DEFAULT 0,
    log_seq       BIGINT  NOT NULL DEFAULT 0,
    cases_attempt INTEGER NOT NULL DEFAULT 0,
    cases_total   BIGINT  NOT NULL DEFAULT 0 CHECK (cases_total >= 0),
    cases_passed  BIGINT  NOT NULL DEFAULT 0 CHECK (cases_passed >= 0),
    cases_failed  BIGINT  NOT NULL DEFAULT 0 CHECK (cases_failed >= 0),
    cases_errored BIGINT  NOT NULL DEFAULT 0 CHECK (cases_errored >= 0),
    cases_skipped BIGINT  NOT NULL DEFAULT 0 CHECK (cases_skipped >= 0),
    case_note     TEXT    NOT NULL DEFAULT '',
    -- The duration the queue orders it by (0040).
    expected_ms   BIGINT,
    -- Attempts that ended FAILED or TIMED_OUT: a later pass is FLAKY.
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    -- A retry stays off the runner its last attempt failed on until
    -- avoid_until, while another runner is attached (see docs/design.md).
    avoid_runner  TEXT,
    avoid_until   BIGINT,
    UNIQUE (testrun_id, name)
);

INSERT INTO tests_new (id, testrun_id, position, name, content, size_bytes, status, attempt,
        assignment_id, runner_id, runner_name, exit_code, error, queued_at, started_at,
        finished_at, duration_ms, log_lines, log_seq, cases_attempt, cases_total, cases_passed,
        cases_failed, cases_errored, cases_skipped, case_note, expected_ms)
    SELECT id, testrun_id, position, name, content, size_bytes, status, attempt,
        assignment_id, runner_id, runner_name, exit_code, error, queued_at, started_at,
        finished_at, duration_ms, log_lines, log_seq, cases_attempt, cases_total, cases_passed,
        cases_failed, cases_errored, cases_skipped, case_note, expected_ms
    FROM tests;

-- Keep the id sequence: ids of deleted tests are never handed out again.
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'tests')
    WHERE name = 'tests_new' AND seq < (SELECT seq FROM sqlite_sequence WHERE name = 'tests');
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'tests_new', seq FROM sqlite_sequence WHERE name = 'tests'
        AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tests_new');

DROP TABLE tests;
ALTER TABLE tests_new RENAME TO tests;

CREATE INDEX tests_queue ON tests (testrun_id, expected_ms DESC, id) WHERE status = 'QUEUED';
CREATE INDEX tests_running_by_runner ON tests (runner_id) WHERE status = 'RUNNING';
CREATE INDEX tests_by_testrun ON tests (testrun_id, position);

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
