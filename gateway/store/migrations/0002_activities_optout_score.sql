-- Version 2: what happened with each person (activities), what must happen next (follow-ups),
-- do-not-call / opt-out per person and per number, the person's country (default region for
-- the numbers typed without a country code), and the lead score.
ALTER TABLE people ADD COLUMN country TEXT NOT NULL DEFAULT '';
ALTER TABLE people ADD COLUMN score REAL;
ALTER TABLE people ADD COLUMN do_not_call INTEGER NOT NULL DEFAULT 0;
ALTER TABLE people ADD COLUMN email_opt_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE phones ADD COLUMN do_not_call INTEGER NOT NULL DEFAULT 0;
ALTER TABLE emails ADD COLUMN opted_out INTEGER NOT NULL DEFAULT 0;
CREATE INDEX people_score ON people (score);

CREATE TABLE activities (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('call', 'note', 'email')),
    at          REAL NOT NULL,
    summary     TEXT NOT NULL DEFAULT '',
    body        TEXT NOT NULL DEFAULT '',
    call_id     TEXT,
    author      TEXT
);
CREATE INDEX activities_person_at ON activities (person_id, at DESC);
CREATE UNIQUE INDEX activities_call ON activities (person_id, call_id) WHERE call_id IS NOT NULL;

CREATE TABLE follow_ups (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    due_at      REAL NOT NULL,
    title       TEXT NOT NULL,
    owner       TEXT,
    done        INTEGER NOT NULL DEFAULT 0,
    done_at     REAL,
    created_at  REAL NOT NULL
);
CREATE INDEX follow_ups_person ON follow_ups (person_id, done, due_at);
CREATE INDEX follow_ups_open_due ON follow_ups (due_at) WHERE done = 0;
