-- Each registration of a runner bumps its epoch. A claim must present the
-- epoch of the stream it is for, so a stream the runner has replaced (a
-- reconnect, possibly to another coordinator) can never be handed work that
-- the runner would not know about.
ALTER TABLE runners ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
