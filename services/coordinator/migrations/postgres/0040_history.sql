-- Test history (issue 16): each Testrun belongs to a suite; every test that
-- ends records an outcome under (suite, test name); a summary row per
-- (suite, name) keeps the median duration the dispatcher orders by.

-- Testruns created before this migration belong to their user's suite
-- (the default for new ones too).
ALTER TABLE testruns ADD COLUMN suite TEXT NOT NULL DEFAULT '';
UPDATE testruns SET suite = username;
-- A suite's recent Testruns, newest first.
CREATE INDEX testruns_suite_id ON testruns (suite, id DESC);

-- The duration the dispatcher expects, set at creation from the history
-- (NULL without any): the queue hands a Testrun's tests out longest first.
ALTER TABLE tests ADD COLUMN expected_ms BIGINT;
DROP INDEX tests_queue;
-- The queue: only QUEUED rows, in dispatch order (Testrun by Testrun;
-- within one, longest expected first, then submission order). The claim
-- reads it as an index seek; NULLs sort alike on both stores' DESC.
CREATE INDEX tests_queue ON tests (testrun_id, expected_ms DESC, id) WHERE status = 'QUEUED';

-- One final outcome of a test in a Testrun. No foreign key: deleting a
-- Testrun keeps its history (that is the point of it). At most 50 rows per
-- (suite, name): the write that adds one deletes the oldest beyond that.
CREATE TABLE test_outcomes (
    id          BIGSERIAL PRIMARY KEY,
    suite       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    testrun_id  BIGINT  NOT NULL,
    test_id     BIGINT  NOT NULL,
    status      TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    -- Of its last attempt.
    duration_ms BIGINT,
    runner_name TEXT,
    -- The Testrun's workspace digest ('<hash>/<size>'), if it had one.
    workspace   TEXT,
    finished_at BIGINT  NOT NULL,
    -- Ended FLAKY, or passed where an earlier outcome on the same
    -- workspace failed (or the other way round); decided when written.
    flipped     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX test_outcomes_by_test ON test_outcomes (suite, name, id DESC);

-- Per (suite, name), derived from its kept outcomes in the same
-- transaction that adds one: the median of the PASSED/FAILED/FLAKY
-- durations and how many there are, the flips, the last outcome's time.
CREATE TABLE test_stats (
    suite     TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    median_ms BIGINT,
    samples   INTEGER NOT NULL DEFAULT 0,
    flips     INTEGER NOT NULL DEFAULT 0,
    outcomes  INTEGER NOT NULL DEFAULT 0,
    last_at   BIGINT  NOT NULL,
    PRIMARY KEY (suite, name)
);
-- A suite's slowest tests.
CREATE INDEX test_stats_slowest ON test_stats (suite, median_ms DESC);
