-- Operating the runner fleet (issue 17): tokens per runner, drain by an
-- operator, what a runner registered with, and per-Testrun limits.

-- Tokens runners may attach with besides the shared one. Only a SHA-256
-- hash of the secret is stored (the secret has 256 random bits, so a
-- plain hash is enough: there is nothing to brute-force). A name is never
-- reused, revoked or not, so a log naming a token names one secret.
CREATE TABLE runner_tokens (
    name         TEXT   PRIMARY KEY,
    secret_hash  TEXT   NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

-- What the runner registered with (shown by ListRunners), the token it
-- attached with ('' for the shared token), and when an operator drained
-- it. Drain lives here, not in a coordinator's memory, so the coordinator
-- the runner is attached to learns of it whichever one was asked. The
-- pools branch adds `labels` too (same definition).
ALTER TABLE runners ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runners ADD COLUMN token_name TEXT NOT NULL DEFAULT '';
ALTER TABLE runners ADD COLUMN drained_at BIGINT;

-- Limits per test of a Testrun; NULL: the runner's own.
ALTER TABLE testruns ADD COLUMN test_memory_bytes BIGINT;
ALTER TABLE testruns ADD COLUMN test_pids BIGINT;
