-- Version 6: lead scoring (gateway/store/scoring.py). The values people set by hand for the
-- manual parameters (proximity, interest...), and the web-form submissions of a lead, which
-- scoring counts. The global score itself stays in people.score (indexed since version 2).
CREATE TABLE score_inputs (
    person_id   INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    parameter   TEXT NOT NULL,
    value       REAL NOT NULL CHECK (value >= 0 AND value <= 10),
    set_by      TEXT,
    set_at      REAL NOT NULL,
    PRIMARY KEY (person_id, parameter)
) WITHOUT ROWID;

CREATE TABLE form_fills (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    form        TEXT NOT NULL DEFAULT '',
    at          REAL NOT NULL
);
CREATE INDEX form_fills_person_at ON form_fills (person_id, at);

