-- Version 12: follow-up campaigns (gateway/campaigns/). A campaign is a segment (which leads)
-- and a sequence of steps (what to do with each), both stored as JSON of the structs in
-- gateway/campaigns/model.py, so the API, the panel and the scheduler read one definition.
CREATE TABLE campaigns (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'running', 'paused', 'ended')),
    definition      TEXT NOT NULL,               -- JSON: model.CampaignIn (segment, steps, caps)
    created_by      TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    started_at      REAL,                        -- first start
    paused_at       REAL,                        -- set while paused: due times shift by the pause
    ended_at        REAL
);

-- One lead's way through one campaign. `round` counts re-entries (campaign.reentry_days);
-- `step` is the index of the next step to run, due at `due_at` (epoch seconds, UTC).
CREATE TABLE campaign_members (
    id              INTEGER PRIMARY KEY,
    campaign_id     INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    person_id       INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    round           INTEGER NOT NULL DEFAULT 0,
    entered_at      REAL NOT NULL,
    step            INTEGER NOT NULL DEFAULT 0,
    due_at          REAL NOT NULL,
    state           TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'left')),
    left_at         REAL,
    left_reason     TEXT,                        -- model.LeaveReason
    timezone        TEXT NOT NULL DEFAULT '',    -- IANA zone the lead's hours are counted in
    last_agent      TEXT,                        -- who made the last call task's call
    revived         INTEGER NOT NULL DEFAULT 0,  -- a lost lead that moved on while a member
    lost_reason     TEXT NOT NULL DEFAULT '',    -- why the lead was lost when it entered ('' if not)
    UNIQUE (campaign_id, person_id, round)
);
CREATE INDEX campaign_members_due ON campaign_members (due_at) WHERE state = 'active';
CREATE INDEX campaign_members_person ON campaign_members (person_id, state);
CREATE INDEX campaign_members_campaign ON campaign_members (campaign_id, state);

-- What each step did for each member: the UNIQUE key is what makes a step run once per
-- member, whatever restarts happen (a row in 'sending' found at start-up was cut short by a
-- crash: it is marked 'unknown' and never sent again).
CREATE TABLE campaign_step_runs (
    id              INTEGER PRIMARY KEY,
    member_id       INTEGER NOT NULL REFERENCES campaign_members (id) ON DELETE CASCADE,
    campaign_id     INTEGER NOT NULL,
    step            INTEGER NOT NULL,
    kind            TEXT NOT NULL,               -- model step kind: email, call, wait, ...
    status          TEXT NOT NULL,               -- model.RunStatus
    at              REAL NOT NULL,
    day             TEXT NOT NULL DEFAULT '',    -- YYYY-MM-DD in the campaign's zone (caps)
    detail          TEXT NOT NULL DEFAULT '',    -- error text, branch taken, address used
    message_id      TEXT,                        -- e-mail: the Message-ID header sent
    follow_up_id    INTEGER REFERENCES follow_ups (id) ON DELETE SET NULL,
    opened_at       REAL,                        -- e-mail: first open seen
    replied_at      REAL,                        -- e-mail: reply reported
    call_outcome    TEXT,                        -- call task: answered, no-answer, busy, ...
    disposition     TEXT,                        -- call task: the agent's disposition
    agent           TEXT,                        -- call task: who was assigned / who called
    UNIQUE (member_id, step)
);
CREATE INDEX campaign_step_runs_campaign ON campaign_step_runs (campaign_id, step, status);
CREATE INDEX campaign_step_runs_day ON campaign_step_runs (campaign_id, day, kind);
CREATE INDEX campaign_step_runs_message ON campaign_step_runs (message_id)
    WHERE message_id IS NOT NULL;
CREATE INDEX campaign_step_runs_follow_up ON campaign_step_runs (follow_up_id)
    WHERE follow_up_id IS NOT NULL;
-- start-up turns runs cut short by a crash ('sending') into 'unknown' without a full scan
CREATE INDEX campaign_step_runs_sending ON campaign_step_runs (status) WHERE status = 'sending';

-- A call task made by a campaign points back at its step run (the worklist shows the
-- campaign; the call's disposition moves the member on).
ALTER TABLE follow_ups ADD COLUMN campaign_run_id INTEGER REFERENCES campaign_step_runs (id)
    ON DELETE SET NULL;
ALTER TABLE follow_ups ADD COLUMN pool TEXT NOT NULL DEFAULT '';  -- JSON list of agents, or ''

-- Segments: tags, the lead's language (e-mails and the unsubscribe page), when it was lost.
CREATE TABLE person_tags (
    person_id       INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    tag             TEXT NOT NULL,
    PRIMARY KEY (person_id, tag)
) WITHOUT ROWID;
CREATE INDEX person_tags_tag ON person_tags (tag);
-- segments' "last activity": a person's latest call without reading each of their calls
CREATE INDEX calls_person_started ON calls (person_id, started_at);
ALTER TABLE people ADD COLUMN language TEXT NOT NULL DEFAULT '';   -- '' = from the country
ALTER TABLE people ADD COLUMN lost_at REAL;                        -- set when status -> lost
CREATE INDEX people_lost ON people (lost_reason, lost_at) WHERE status = 'lost';
UPDATE people SET lost_at = updated_at WHERE status = 'lost';

-- The one suppression truth stays on the addresses and numbers (emails.opted_out,
-- phones.do_not_call, people.email_opt_out / do_not_call). A bounce marks the address.
ALTER TABLE emails ADD COLUMN bounced_at REAL;
ALTER TABLE emails ADD COLUMN bounce_detail TEXT NOT NULL DEFAULT '';

-- Every unsubscribe, however it came (the page's button, a mail client's one-click POST, an
-- agent, the API), for the record the law asks for.
CREATE TABLE unsubscribes (
    id              INTEGER PRIMARY KEY,
    at              REAL NOT NULL,
    person_id       INTEGER REFERENCES people (id) ON DELETE SET NULL,
    email           TEXT NOT NULL,
    campaign_id     INTEGER REFERENCES campaigns (id) ON DELETE SET NULL,
    method          TEXT NOT NULL,               -- page | one_click | agent | api
    language        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX unsubscribes_person ON unsubscribes (person_id);

-- Secrets the gateway makes for itself when config names none (the unsubscribe link's
-- signing key): made once, kept across restarts, never logged.
CREATE TABLE gateway_secrets (
    name            TEXT PRIMARY KEY,
    value           TEXT NOT NULL,
    created_at      REAL NOT NULL
) WITHOUT ROWID;
