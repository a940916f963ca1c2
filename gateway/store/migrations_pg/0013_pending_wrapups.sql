-- Version 13: what the desk must not lose to a reload or a restart of the gateway: the
-- wrap-ups an agent still owes (an answered call ended, notes and disposition not saved yet)
-- and a presence chosen during a call, which applies only when the call ends.
CREATE TABLE pending_wrapups (
    username  TEXT NOT NULL,
    call_id   TEXT NOT NULL,                 -- calls.id, which may be written a bit later
    call      TEXT NOT NULL,                 -- the call as the desk got it when it ended (JSON)
    card      TEXT,                          -- the caller card the desk showed (JSON), if any
    ended_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (username, call_id)
);  -- rowid: the order they were kept in, for calls that ended in the same second
CREATE INDEX pending_wrapups_age ON pending_wrapups (username, ended_at DESC);

-- 1: the agent chose ``status`` while busy; it reaches the queues when they are free.
ALTER TABLE agent_presence ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
