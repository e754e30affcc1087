-- Workspaces (issue 14): content-addressed blobs, the trees Testruns pin,
-- each Testrun's workspace/set-up/env, and each runner's set-up step.
--
-- A blob is named by its digest written as one text, '<sha256 hex>/<size>',
-- so lists of digests bind as lists of texts on both stores.

CREATE TABLE blobs (
    digest     TEXT    PRIMARY KEY,
    size_bytes BIGINT  NOT NULL CHECK (size_bytes >= 0),
    -- FALSE while an upload is in progress: such a blob is invisible
    -- (missing to FindMissingBlobs, unreadable, unusable by a Testrun).
    complete   BOOLEAN NOT NULL DEFAULT FALSE,
    -- Bytes stored so far, contiguous from 0 (the resume point).
    committed  BIGINT  NOT NULL DEFAULT 0,
    -- Last upload, lookup or use: the collector's grace runs from here.
    touched_at BIGINT  NOT NULL
);

-- A blob's bytes in chunks of at most 1 MiB, so no blob is ever whole in
-- memory. Chunks of one blob never overlap and leave no gap.
CREATE TABLE blob_chunks (
    digest TEXT   NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
    start  BIGINT NOT NULL,
    data   BYTEA  NOT NULL,
    PRIMARY KEY (digest, start)
);

-- A tree some Testrun used, and every blob in it (directories and files):
-- recorded once per distinct tree when a CreateTestrun validates it.
CREATE TABLE workspaces (
    digest     TEXT   PRIMARY KEY,
    files      BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    touched_at BIGINT NOT NULL
);

CREATE TABLE workspace_blobs (
    workspace TEXT NOT NULL REFERENCES workspaces (digest) ON DELETE CASCADE,
    blob      TEXT NOT NULL,
    PRIMARY KEY (workspace, blob)
);
-- The collector asks "does any workspace hold this blob?".
CREATE INDEX workspace_blobs_by_blob ON workspace_blobs (blob);

-- What a Testrun was created with beyond its tests. A row exists only when
-- the Testrun has a workspace or env; deleting the Testrun unpins its tree.
CREATE TABLE testrun_workspaces (
    testrun_id       BIGINT PRIMARY KEY REFERENCES testruns (id) ON DELETE CASCADE,
    workspace        TEXT,
    setup            TEXT,
    -- JSON object of the variables.
    env              TEXT   NOT NULL,
    setup_timeout_ms BIGINT NOT NULL
);
CREATE INDEX testrun_workspaces_by_workspace ON testrun_workspaces (workspace);

-- The set-up step of a Testrun on one runner.
CREATE TABLE setups (
    testrun_id  BIGINT  NOT NULL REFERENCES testruns (id) ON DELETE CASCADE,
    runner_id   TEXT    NOT NULL,
    runner_name TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('RUNNING', 'PASSED', 'FAILED')),
    exit_code   INTEGER,
    duration_ms BIGINT,
    error       TEXT    NOT NULL DEFAULT '',
    output      TEXT    NOT NULL DEFAULT '',
    reused      BOOLEAN NOT NULL DEFAULT FALSE,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (testrun_id, runner_id)
);
