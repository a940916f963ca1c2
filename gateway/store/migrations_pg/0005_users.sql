-- Version 5: who signs in to the panel (users), their open sign-ins (sessions), their presence,
-- and which user took part in which call (the history an agent may see).
CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    password_hash TEXT NOT NULL,                 -- argon2id, with its parameters and salt
    extensions    TEXT NOT NULL DEFAULT '[]',    -- default extensions (JSON list of text)
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL
);

-- The cookie holds a random token; only its SHA-256 is stored, so a copy of the database
-- does not let anyone sign in as somebody else.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    username    TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    extensions  TEXT NOT NULL DEFAULT '[]',      -- chosen at sign-in (hot desk)
    created_at  DOUBLE PRECISION NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL,
    last_seen   DOUBLE PRECISION NOT NULL
);
CREATE INDEX sessions_user ON sessions (username);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Available or paused as the agent set it; "on a call" is derived from live calls.
CREATE TABLE agent_presence (
    username    TEXT PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
    status      TEXT NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'paused')),
    reason      TEXT NOT NULL DEFAULT '',
    updated_at  DOUBLE PRECISION NOT NULL
);

-- The users who rang, answered or originated a call, attributed when it happened (an
-- extension changes hands with hot desking; the user who took the call does not).
CREATE TABLE call_users (
    call_id     TEXT NOT NULL,                   -- calls.id, which may be written a bit later
    username    TEXT NOT NULL,
    PRIMARY KEY (username, call_id)
);
CREATE INDEX call_users_call ON call_users (call_id);
