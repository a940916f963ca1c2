-- PostgreSQL: the tables and indexes only. The report derivation (the *_source views and
-- the triggers that keep call_facts and the rollups up to date as calls are written) is
-- SQLite-only so far: on PostgreSQL these tables stay empty and the reports show nothing.
-- Porting it (PL/pgSQL triggers, jsonb_array_elements_text for json_each) is future work.

-- Version 16: rollups of the report facts (gateway/reports/calls.py), so a report of a month
-- or a year sums a few thousand rows instead of reading every call.
--
-- * report_hours: per UTC hour and dimension (`kind` '' = every call, 'queue', 'did',
--   'campaign', 'disposition'; and its `value`), the sums the call summary, the heatmap and
--   the dispositions report add up (report_call_rows says what each call adds).
--   report_agent_hours: the same per hour, agent phone and queue, from call_agent_facts.
--   report_days and report_agent_days (per agent only): the same per UTC day, for reports
--   not grouped by time (the hours at either end of the range come from the hourly tables).
--   A UTC hour lies inside one local hour of any zone whose offsets are whole hours, so local
--   days, hours and weekdays are sums of hours; other zones (India, Nepal, Newfoundland...)
--   read the facts instead.
-- * A percentile is no sum: h0..h23 count the answered calls per bin of handle time (whole
--   seconds; bin 0 is [0, 15), the last 14400 and more: calls.HANDLE_BIN_EDGES), which says
--   which bin holds the 90th percentile's rank; report_handles (report_agent_handles), the
--   handle time of each answered call clustered by bin, then gives the rank among that bin's
--   calls only: the same second as sorting all of them.
-- * report_callbacks: each missed inbound call that was called back, and how many seconds
--   later (the first outbound call to its number within 7 days: calls.CALLBACK_WINDOW).
--
-- Service level, short abandon and after-call work are thresholds in the panel's config and
-- the sums depend on them (a handle time's bin too), so the rollups hold the figures for the
-- thresholds in report_rollup_settings, and a report reads them only while its config says
-- the same. After a change the gateway writes the new values there and rebuilds the rollups
-- a day at a time, newest first, in the background (calls.refresh_rollups); `rebuilt_from`
-- says from when on they are right, and a report reaching further back reads the facts.
-- (Counting each call's wait per second instead would answer any service level without a
-- rebuild, but only whole-second thresholds, and no bins could give the percentile of a
-- handle time whose after-call part is capped by the config.)
--
-- Triggers on the facts keep all of it up to date as calls are saved, corrected, wrapped up
-- (handle time and disposition change) or deleted: what a fact adds to its rows is taken out
-- before it changes and added back after (a busy hour summed again from its facts at every
-- change cost a wrap-up 40 ms on 5,000,000 calls; this, about a millisecond).
-- Calls before 2 January 1970 are never read from the rollups.

CREATE TABLE report_rollup_settings (
    id            BIGINT PRIMARY KEY CHECK (id = 1),
    service_level DOUBLE PRECISION NOT NULL,    -- panel.service_level_seconds
    short_abandon DOUBLE PRECISION NOT NULL,    -- panel.short_abandon_seconds
    after_call    DOUBLE PRECISION NOT NULL,    -- panel.after_call_seconds
    rebuilt_from  DOUBLE PRECISION              -- NULL: all built with these; else calls from then on only
);
-- the panel's defaults (gateway/panel/settings.py)
INSERT INTO report_rollup_settings VALUES (1, 20.0, 5.0, 30.0, NULL);

-- the dimensions of report_hours
CREATE TABLE report_kinds (kind TEXT PRIMARY KEY);
INSERT INTO report_kinds VALUES (''), ('queue'), ('did'), ('campaign'), ('disposition');

-- The handle time (talk + after-call work, capped) of each answered inbound call, in whole
-- seconds as the 90th percentile counts it, with what a report filters or groups it by.
CREATE TABLE report_handles (
    bin         BIGINT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    id          TEXT NOT NULL,
    hs          BIGINT NOT NULL,
    queue       TEXT NOT NULL,
    did         TEXT NOT NULL,
    campaign_id BIGINT,
    disposition TEXT NOT NULL,
    PRIMARY KEY (bin, started_at, id)
);
CREATE INDEX report_handles_call ON report_handles (started_at, id);

CREATE TABLE report_agent_handles (
    bin         BIGINT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    id          TEXT NOT NULL,
    agent       TEXT NOT NULL,
    hs          BIGINT NOT NULL,
    queue       TEXT NOT NULL,
    PRIMARY KEY (bin, started_at, id, agent)
);
CREATE INDEX report_agent_handles_call ON report_agent_handles (started_at, id, agent);
-- one agent's calls (the agent filter)
CREATE INDEX report_agent_handles_agent ON report_agent_handles (agent, bin, started_at, hs);

CREATE TABLE report_hours (
    kind              TEXT NOT NULL,
    hour              BIGINT NOT NULL,   -- CAST(started_at AS BIGINT) / 3600: UTC
    value             TEXT NOT NULL,          -- as stored; campaign: its id, '' for none
    calls             BIGINT NOT NULL,
    answered_any      BIGINT NOT NULL,
    offered           BIGINT NOT NULL,
    answered          BIGINT NOT NULL,
    missed            BIGINT NOT NULL,
    abandoned         BIGINT NOT NULL,
    short_abandoned   BIGINT NOT NULL,
    in_sl             BIGINT NOT NULL,
    wait_sum          DOUBLE PRECISION NOT NULL,
    wait_n            BIGINT NOT NULL,
    handle_sum        DOUBLE PRECISION NOT NULL,
    rna               BIGINT NOT NULL,
    transfers         BIGINT NOT NULL,
    ctc               BIGINT NOT NULL,
    ctc_connected     BIGINT NOT NULL,
    outbound          BIGINT NOT NULL,
    outbound_answered BIGINT NOT NULL,
    h0                BIGINT NOT NULL,
    h1                BIGINT NOT NULL,
    h2                BIGINT NOT NULL,
    h3                BIGINT NOT NULL,
    h4                BIGINT NOT NULL,
    h5                BIGINT NOT NULL,
    h6                BIGINT NOT NULL,
    h7                BIGINT NOT NULL,
    h8                BIGINT NOT NULL,
    h9                BIGINT NOT NULL,
    h10               BIGINT NOT NULL,
    h11               BIGINT NOT NULL,
    h12               BIGINT NOT NULL,
    h13               BIGINT NOT NULL,
    h14               BIGINT NOT NULL,
    h15               BIGINT NOT NULL,
    h16               BIGINT NOT NULL,
    h17               BIGINT NOT NULL,
    h18               BIGINT NOT NULL,
    h19               BIGINT NOT NULL,
    h20               BIGINT NOT NULL,
    h21               BIGINT NOT NULL,
    h22               BIGINT NOT NULL,
    h23               BIGINT NOT NULL,
    PRIMARY KEY (kind, hour, value)
);
CREATE INDEX report_hours_value ON report_hours (kind, value, hour);

CREATE TABLE report_days (
    kind              TEXT NOT NULL,
    day               BIGINT NOT NULL,   -- hour / 24: UTC
    value             TEXT NOT NULL,
    calls             BIGINT NOT NULL,
    answered_any      BIGINT NOT NULL,
    offered           BIGINT NOT NULL,
    answered          BIGINT NOT NULL,
    missed            BIGINT NOT NULL,
    abandoned         BIGINT NOT NULL,
    short_abandoned   BIGINT NOT NULL,
    in_sl             BIGINT NOT NULL,
    wait_sum          DOUBLE PRECISION NOT NULL,
    wait_n            BIGINT NOT NULL,
    handle_sum        DOUBLE PRECISION NOT NULL,
    rna               BIGINT NOT NULL,
    transfers         BIGINT NOT NULL,
    ctc               BIGINT NOT NULL,
    ctc_connected     BIGINT NOT NULL,
    outbound          BIGINT NOT NULL,
    outbound_answered BIGINT NOT NULL,
    h0                BIGINT NOT NULL,
    h1                BIGINT NOT NULL,
    h2                BIGINT NOT NULL,
    h3                BIGINT NOT NULL,
    h4                BIGINT NOT NULL,
    h5                BIGINT NOT NULL,
    h6                BIGINT NOT NULL,
    h7                BIGINT NOT NULL,
    h8                BIGINT NOT NULL,
    h9                BIGINT NOT NULL,
    h10               BIGINT NOT NULL,
    h11               BIGINT NOT NULL,
    h12               BIGINT NOT NULL,
    h13               BIGINT NOT NULL,
    h14               BIGINT NOT NULL,
    h15               BIGINT NOT NULL,
    h16               BIGINT NOT NULL,
    h17               BIGINT NOT NULL,
    h18               BIGINT NOT NULL,
    h19               BIGINT NOT NULL,
    h20               BIGINT NOT NULL,
    h21               BIGINT NOT NULL,
    h22               BIGINT NOT NULL,
    h23               BIGINT NOT NULL,
    PRIMARY KEY (kind, day, value)
);

CREATE TABLE report_agent_hours (
    hour              BIGINT NOT NULL,
    agent             TEXT NOT NULL,
    queue             TEXT NOT NULL,
    calls             BIGINT NOT NULL,
    answered_any      BIGINT NOT NULL,
    offered           BIGINT NOT NULL,
    answered          BIGINT NOT NULL,
    missed            BIGINT NOT NULL,
    abandoned         BIGINT NOT NULL,
    short_abandoned   BIGINT NOT NULL,
    in_sl             BIGINT NOT NULL,
    wait_sum          DOUBLE PRECISION NOT NULL,
    wait_n            BIGINT NOT NULL,
    handle_sum        DOUBLE PRECISION NOT NULL,
    rna               BIGINT NOT NULL,
    transfers         BIGINT NOT NULL,
    ctc               BIGINT NOT NULL,
    ctc_connected     BIGINT NOT NULL,
    outbound          BIGINT NOT NULL,
    outbound_answered BIGINT NOT NULL,
    h0                BIGINT NOT NULL,
    h1                BIGINT NOT NULL,
    h2                BIGINT NOT NULL,
    h3                BIGINT NOT NULL,
    h4                BIGINT NOT NULL,
    h5                BIGINT NOT NULL,
    h6                BIGINT NOT NULL,
    h7                BIGINT NOT NULL,
    h8                BIGINT NOT NULL,
    h9                BIGINT NOT NULL,
    h10               BIGINT NOT NULL,
    h11               BIGINT NOT NULL,
    h12               BIGINT NOT NULL,
    h13               BIGINT NOT NULL,
    h14               BIGINT NOT NULL,
    h15               BIGINT NOT NULL,
    h16               BIGINT NOT NULL,
    h17               BIGINT NOT NULL,
    h18               BIGINT NOT NULL,
    h19               BIGINT NOT NULL,
    h20               BIGINT NOT NULL,
    h21               BIGINT NOT NULL,
    h22               BIGINT NOT NULL,
    h23               BIGINT NOT NULL,
    PRIMARY KEY (hour, agent, queue)
);
CREATE INDEX report_agent_hours_agent ON report_agent_hours (agent, hour);
CREATE INDEX report_agent_hours_queue ON report_agent_hours (queue, hour);

-- (per agent only: transfers put an agent in many queues, and the queues multiply the rows)
CREATE TABLE report_agent_days (
    day               BIGINT NOT NULL,
    agent             TEXT NOT NULL,
    calls             BIGINT NOT NULL,
    answered_any      BIGINT NOT NULL,
    offered           BIGINT NOT NULL,
    answered          BIGINT NOT NULL,
    missed            BIGINT NOT NULL,
    abandoned         BIGINT NOT NULL,
    short_abandoned   BIGINT NOT NULL,
    in_sl             BIGINT NOT NULL,
    wait_sum          DOUBLE PRECISION NOT NULL,
    wait_n            BIGINT NOT NULL,
    handle_sum        DOUBLE PRECISION NOT NULL,
    rna               BIGINT NOT NULL,
    transfers         BIGINT NOT NULL,
    ctc               BIGINT NOT NULL,
    ctc_connected     BIGINT NOT NULL,
    outbound          BIGINT NOT NULL,
    outbound_answered BIGINT NOT NULL,
    h0                BIGINT NOT NULL,
    h1                BIGINT NOT NULL,
    h2                BIGINT NOT NULL,
    h3                BIGINT NOT NULL,
    h4                BIGINT NOT NULL,
    h5                BIGINT NOT NULL,
    h6                BIGINT NOT NULL,
    h7                BIGINT NOT NULL,
    h8                BIGINT NOT NULL,
    h9                BIGINT NOT NULL,
    h10               BIGINT NOT NULL,
    h11               BIGINT NOT NULL,
    h12               BIGINT NOT NULL,
    h13               BIGINT NOT NULL,
    h14               BIGINT NOT NULL,
    h15               BIGINT NOT NULL,
    h16               BIGINT NOT NULL,
    h17               BIGINT NOT NULL,
    h18               BIGINT NOT NULL,
    h19               BIGINT NOT NULL,
    h20               BIGINT NOT NULL,
    h21               BIGINT NOT NULL,
    h22               BIGINT NOT NULL,
    h23               BIGINT NOT NULL,
    PRIMARY KEY (day, agent)
);

-- A fact to add to its rollup rows (sign 1) or to take from them (-1): the trigger reads what
-- it adds from report_call_rows (it must be in call_facts then), and removes the row here.
CREATE TABLE report_changes (sign BIGINT NOT NULL, started_at DOUBLE PRECISION NOT NULL, id TEXT NOT NULL);

CREATE TABLE report_agent_changes (
    sign        BIGINT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    id          TEXT NOT NULL,
    agent       TEXT NOT NULL
);

-- Call-backs: each missed inbound call with a number, and the seconds to the first outbound
-- call to that number after it (within calls.CALLBACK_WINDOW); none when nobody called back.
-- The call's dimensions are kept with it, as in report_handles.
CREATE TABLE report_callbacks (
    started_at  DOUBLE PRECISION NOT NULL,
    id          TEXT NOT NULL,
    d           DOUBLE PRECISION NOT NULL,
    queue       TEXT NOT NULL,
    did         TEXT NOT NULL,
    campaign_id BIGINT,
    disposition TEXT NOT NULL,
    PRIMARY KEY (started_at, id)
);
