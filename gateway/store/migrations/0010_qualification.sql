-- Version 10: qualifying a lead on the call (gateway/panel/qualification.py) and the deals a
-- converted lead opens (gateway/store/deals.py). An answer is JSON (a choice's id, a number or
-- a text), one per person and question of the panel.qualification script.
CREATE TABLE qualification_answers (
    person_id   INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    question    TEXT NOT NULL,
    value       TEXT NOT NULL,                   -- JSON
    set_by      TEXT,
    set_at      REAL NOT NULL,
    PRIMARY KEY (person_id, question)
) WITHOUT ROWID;
-- campaign segments: every lead who gave one answer
CREATE INDEX qualification_answers_question ON qualification_answers (question, value);

-- A deal in the pipeline, of a person (B2C) or of an account and its contact (B2B).
CREATE TABLE deals (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER REFERENCES people (id) ON DELETE SET NULL,
    account_id  INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    title       TEXT NOT NULL,
    stage       TEXT NOT NULL DEFAULT 'qualification',
    amount      REAL CHECK (amount IS NULL OR amount >= 0),
    currency    TEXT NOT NULL DEFAULT 'EUR',
    owner       TEXT,
    created_by  TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    CHECK (person_id IS NOT NULL OR account_id IS NOT NULL)
);
CREATE INDEX deals_person ON deals (person_id);
CREATE INDEX deals_account ON deals (account_id);
CREATE INDEX deals_stage ON deals (stage);
