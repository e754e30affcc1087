-- Runner pools by label (issue 16, part 5).
--
-- A Testrun's selector twice: as its canonical text ('gpu=a100,zone=b',
-- '' for none) on the row, which the API returns and metrics group by, and
-- one row per label in testrun_labels, which a claim matches against the
-- claiming runner's labels with an index probe per queued test.
ALTER TABLE testruns ADD COLUMN selector TEXT NOT NULL DEFAULT '';
-- Why its queued tests are not running ('waiting for a runner with
-- gpu=a100'), '' otherwise. Kept here, not computed per request, so every
-- coordinator answers alike and a change is one row update that watchers
-- on any coordinator hear about.
ALTER TABLE testruns ADD COLUMN waiting TEXT NOT NULL DEFAULT '';
-- The waiting refresh reads the Testruns that say they wait.
CREATE INDEX testruns_waiting ON testruns (id) WHERE waiting <> '';

CREATE TABLE testrun_labels (
    testrun_id BIGINT NOT NULL REFERENCES testruns (id) ON DELETE CASCADE,
    -- 'key=value'
    label      TEXT   NOT NULL,
    PRIMARY KEY (testrun_id, label)
);

-- A runner's labels (`runners.labels`, a JSON object) come with the runner
-- admin migration, 0020: a coordinator reads them to tell whether any
-- attached runner (on any coordinator) covers a selector.
