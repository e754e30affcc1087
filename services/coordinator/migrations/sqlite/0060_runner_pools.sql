-- Runner pools by label (issue 16, part 5). See the Postgres migration of
-- the same number for why each column exists.
ALTER TABLE testruns ADD COLUMN selector TEXT NOT NULL DEFAULT '';
ALTER TABLE testruns ADD COLUMN waiting TEXT NOT NULL DEFAULT '';
CREATE INDEX testruns_waiting ON testruns (id) WHERE waiting <> '';

CREATE TABLE testrun_labels (
    testrun_id INTEGER NOT NULL REFERENCES testruns (id) ON DELETE CASCADE,
    -- 'key=value'
    label      TEXT    NOT NULL,
    PRIMARY KEY (testrun_id, label)
);

-- A runner's labels (`runners.labels`, a JSON object) come with the runner
-- admin migration, 0020.
