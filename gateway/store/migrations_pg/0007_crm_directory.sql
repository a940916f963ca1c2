-- The caller directory (gateway/directory/): a copy of each CRM's phone book, so that a caller
-- known to a CRM is found by E.164 as fast as a local contact, however the number was typed.
-- One row per CRM record; its numbers (raw as typed in the CRM, and E.164) in a second table.
CREATE TABLE crm_directory (
    connector    TEXT    NOT NULL,
    module       TEXT    NOT NULL,            -- Contacts, Leads, Accounts, res.partner...
    record_id    TEXT    NOT NULL,
    kind         TEXT    NOT NULL,            -- contact | lead | account
    display_name TEXT    NOT NULL DEFAULT '',
    company      TEXT    NOT NULL DEFAULT '',
    account_id   TEXT,
    owner        TEXT,
    lead_status  TEXT,
    external_url TEXT,
    extra        TEXT    NOT NULL DEFAULT '{}', -- JSON object of strings
    seen_pass    BIGINT NOT NULL DEFAULT 0,  -- the full pass that last saw it (deletion sweep)
    synced_at    DOUBLE PRECISION    NOT NULL,
    PRIMARY KEY (connector, module, record_id)
);

CREATE TABLE crm_directory_phones (
    connector TEXT NOT NULL,
    module    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    e164      TEXT NOT NULL,
    raw       TEXT NOT NULL,
    PRIMARY KEY (connector, module, record_id, e164)
);
CREATE INDEX crm_directory_phones_e164 ON crm_directory_phones (e164);

-- Where each (connector, module) pull resumes, and what /health shows about it.
CREATE TABLE crm_directory_state (
    connector      TEXT    NOT NULL,
    module         TEXT    NOT NULL,
    cursor         TEXT    NOT NULL DEFAULT '', -- incremental pulls resume here
    pass_no        BIGINT NOT NULL DEFAULT 0,  -- the full pass under way or last finished
    pass_cursor    TEXT,                        -- NULL: no full pass under way
    pass_started   DOUBLE PRECISION,
    last_full_at   DOUBLE PRECISION,                        -- when the last full pass finished
    last_sync_at   DOUBLE PRECISION,                        -- when a pull last caught up with the CRM
    last_error     TEXT,
    last_error_at  DOUBLE PRECISION,
    PRIMARY KEY (connector, module)
);
