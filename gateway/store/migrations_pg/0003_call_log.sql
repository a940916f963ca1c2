-- Every finished call, written once (id = "<pbx>:<linkedid>"), with the replay fields.
-- call_agents holds one row per extension that rang so the extension filter is an index lookup.
CREATE TABLE calls (
    id              TEXT PRIMARY KEY,
    linkedid        TEXT NOT NULL DEFAULT '',
    pbx             TEXT NOT NULL DEFAULT '',
    direction       TEXT NOT NULL DEFAULT '',
    click_to_call   BIGINT NOT NULL DEFAULT 0,
    call_id         TEXT,
    caller          TEXT NOT NULL DEFAULT '',
    caller_name     TEXT NOT NULL DEFAULT '',
    did             TEXT NOT NULL DEFAULT '',
    dialed          TEXT NOT NULL DEFAULT '',
    queue           TEXT NOT NULL DEFAULT '',
    agents_rang     TEXT NOT NULL DEFAULT '[]',
    answered_by     TEXT NOT NULL DEFAULT '',
    transfers       TEXT NOT NULL DEFAULT '[]',
    outcome         TEXT NOT NULL DEFAULT '',
    started_at      DOUBLE PRECISION NOT NULL,
    answered_at     DOUBLE PRECISION,
    ended_at        DOUBLE PRECISION,
    ring_seconds    DOUBLE PRECISION,
    talk_seconds    DOUBLE PRECISION,
    total_seconds   DOUBLE PRECISION,
    hangup_cause    TEXT NOT NULL DEFAULT '',
    recordings      TEXT NOT NULL DEFAULT '[]',
    reconstructed   BIGINT NOT NULL DEFAULT 0,
    notes           TEXT NOT NULL DEFAULT '',
    disposition     TEXT NOT NULL DEFAULT '',
    caller_e164     TEXT,
    other_e164      TEXT,
    person_id       BIGINT REFERENCES people (id) ON DELETE SET NULL,
    saved_at        DOUBLE PRECISION NOT NULL
);
CREATE INDEX calls_started ON calls (started_at DESC, id DESC);
CREATE INDEX calls_caller ON calls (caller_e164);
CREATE INDEX calls_other ON calls (other_e164);
CREATE INDEX calls_person ON calls (person_id);

CREATE TABLE call_agents (
    call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    ext         TEXT NOT NULL,
    PRIMARY KEY (ext, call_id)
);
