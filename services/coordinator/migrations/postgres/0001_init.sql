-- TestRunner schema (Postgres). Times are Unix milliseconds (BIGINT), as in
-- the SQLite schema, so both stores share their row types.

CREATE TABLE testruns (
    id              BIGSERIAL PRIMARY KEY,
    username        TEXT    NOT NULL,
    -- The state machine lives in the code; the check keeps a bug from
    -- storing a status nobody can read back.
    status          TEXT    NOT NULL
        CHECK (status IN ('CREATED', 'RUNNING', 'FAILED', 'SUCCESS', 'CANCELLED')),
    command         TEXT,
    timeout_ms      BIGINT  NOT NULL CHECK (timeout_ms > 0),
    created_at      BIGINT  NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    -- Counters kept by the same transactions that move tests, so the list
    -- page never aggregates tests; queued = total - the others.
    tests_total     BIGINT  NOT NULL CHECK (tests_total > 0),
    tests_running   BIGINT  NOT NULL DEFAULT 0 CHECK (tests_running >= 0),
    tests_passed    BIGINT  NOT NULL DEFAULT 0 CHECK (tests_passed >= 0),
    tests_failed    BIGINT  NOT NULL DEFAULT 0 CHECK (tests_failed >= 0),
    tests_cancelled BIGINT  NOT NULL DEFAULT 0 CHECK (tests_cancelled >= 0),
    -- Lines in the Testrun's log stream; allocating run_seq numbers under
    -- this row's lock makes commit order equal run_seq order, which is what
    -- lets a watcher resume from a cursor with no gap.
    log_seq         BIGINT  NOT NULL DEFAULT 0
);

-- The list page filters by status or username, newest first.
CREATE INDEX testruns_status_id ON testruns (status, id DESC);
CREATE INDEX testruns_username_id ON testruns (username, id DESC);

CREATE TABLE tests (
    id            BIGSERIAL PRIMARY KEY,
    testrun_id    BIGINT  NOT NULL REFERENCES testruns (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    content       TEXT    NOT NULL,
    size_bytes    BIGINT  NOT NULL,
    status        TEXT    NOT NULL
        CHECK (status IN ('QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'ERROR')),
    -- Runs started so far; a claim increments it, a hand-back undoes that.
    attempt       INTEGER NOT NULL DEFAULT 0,
    -- Set while a runner holds the test; every write about the running test
    -- names it, so a stale runner's writes match nothing.
    assignment_id TEXT UNIQUE,
    runner_id     TEXT,
    runner_name   TEXT,
    exit_code     INTEGER,
    error         TEXT    NOT NULL DEFAULT '',
    queued_at     BIGINT  NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    duration_ms   BIGINT,
    -- Lines stored for this test (all attempts): the next line_no.
    log_lines     BIGINT  NOT NULL DEFAULT 0,
    -- Last seq stored for the current assignment: resends below it are dropped.
    log_seq       BIGINT  NOT NULL DEFAULT 0,
    -- File names are unique within a Testrun (they name logs in URLs).
    UNIQUE (testrun_id, name)
);

-- The queue: only QUEUED rows, in dispatch order.
CREATE INDEX tests_queue ON tests (testrun_id, id) WHERE status = 'QUEUED';
-- Lease expiry looks up running tests by runner.
CREATE INDEX tests_running_by_runner ON tests (runner_id) WHERE status = 'RUNNING';
CREATE INDEX tests_by_testrun ON tests (testrun_id, position);

CREATE TABLE log_lines (
    testrun_id BIGINT  NOT NULL REFERENCES testruns (id) ON DELETE CASCADE,
    -- Position in the Testrun's log stream: the watch cursor.
    run_seq    BIGINT  NOT NULL,
    test_id    BIGINT  NOT NULL,
    -- Position in the test's log: what paging by offset seeks on.
    line_no    BIGINT  NOT NULL,
    attempt    INTEGER NOT NULL,
    line       TEXT    NOT NULL,
    PRIMARY KEY (testrun_id, run_seq)
);

-- Paging one test's log is an index seek, whatever the offset.
CREATE UNIQUE INDEX log_lines_by_test ON log_lines (test_id, line_no);

CREATE TABLE runners (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    slots         INTEGER NOT NULL,
    version       TEXT    NOT NULL,
    registered_at BIGINT  NOT NULL,
    -- Kept in the database so a restarted coordinator honours it.
    lease_until   BIGINT  NOT NULL
);
