-- Accounts (companies), people (contacts and leads in one table: both are someone who calls),
-- their phone numbers (raw as typed + E.164 under an index) and e-mail addresses.
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    domain      TEXT NOT NULL DEFAULT '',
    country     TEXT NOT NULL DEFAULT '',
    owner       TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX accounts_name ON accounts (name COLLATE NOCASE);

CREATE TABLE people (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('contact', 'lead')),
    first_name  TEXT NOT NULL DEFAULT '',
    last_name   TEXT NOT NULL DEFAULT '',
    company     TEXT NOT NULL DEFAULT '',
    title       TEXT NOT NULL DEFAULT '',
    account_id  INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    owner       TEXT,
    status      TEXT CHECK (status IN ('new', 'contacted', 'qualified', 'nurturing', 'won', 'lost')),
    lost_reason TEXT NOT NULL DEFAULT '',
    source      TEXT CHECK (source IN ('web_form', 'inbound_call', 'import', 'api')),
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX people_kind_status ON people (kind, status);
CREATE INDEX people_owner ON people (owner);
CREATE INDEX people_account ON people (account_id);

CREATE TABLE phones (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER REFERENCES people (id) ON DELETE CASCADE,
    account_id  INTEGER REFERENCES accounts (id) ON DELETE CASCADE,
    raw         TEXT NOT NULL,
    e164        TEXT NOT NULL,
    type        TEXT NOT NULL DEFAULT 'work' CHECK (type IN ('mobile', 'work', 'home')),
    CHECK ((person_id IS NULL) <> (account_id IS NULL))
);
CREATE INDEX phones_e164 ON phones (e164);
CREATE INDEX phones_person ON phones (person_id);
CREATE INDEX phones_account ON phones (account_id);

CREATE TABLE emails (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    email_lower TEXT NOT NULL,
    type        TEXT NOT NULL DEFAULT 'work' CHECK (type IN ('mobile', 'work', 'home'))
);
CREATE INDEX emails_lower ON emails (email_lower);
CREATE INDEX emails_person ON emails (person_id);
