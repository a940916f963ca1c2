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
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    service_level REAL NOT NULL,    -- panel.service_level_seconds
    short_abandon REAL NOT NULL,    -- panel.short_abandon_seconds
    after_call    REAL NOT NULL,    -- panel.after_call_seconds
    rebuilt_from  REAL              -- NULL: all built with these; else calls from then on only
);
-- the panel's defaults (gateway/panel/settings.py)
INSERT INTO report_rollup_settings VALUES (1, 20.0, 5.0, 30.0, NULL);

-- the dimensions of report_hours
CREATE TABLE report_kinds (kind TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO report_kinds VALUES (''), ('queue'), ('did'), ('campaign'), ('disposition');

-- The handle time (talk + after-call work, capped) of each answered inbound call, in whole
-- seconds as the 90th percentile counts it, with what a report filters or groups it by.
CREATE TABLE report_handles (
    bin         INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    id          TEXT NOT NULL,
    hs          INTEGER NOT NULL,
    queue       TEXT NOT NULL,
    did         TEXT NOT NULL,
    campaign_id INTEGER,
    disposition TEXT NOT NULL,
    PRIMARY KEY (bin, started_at, id)
) WITHOUT ROWID;
CREATE INDEX report_handles_call ON report_handles (started_at, id);

CREATE TABLE report_agent_handles (
    bin         INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    id          TEXT NOT NULL,
    agent       TEXT NOT NULL,
    hs          INTEGER NOT NULL,
    queue       TEXT NOT NULL,
    PRIMARY KEY (bin, started_at, id, agent)
) WITHOUT ROWID;
CREATE INDEX report_agent_handles_call ON report_agent_handles (started_at, id, agent);
-- one agent's calls (the agent filter)
CREATE INDEX report_agent_handles_agent ON report_agent_handles (agent, bin, started_at, hs);

CREATE VIEW report_handle_source AS
SELECT
    CASE WHEN hs < 15 THEN 0 WHEN hs < 30 THEN 1 WHEN hs < 45 THEN 2 WHEN hs < 60 THEN 3
         WHEN hs < 90 THEN 4 WHEN hs < 120 THEN 5 WHEN hs < 150 THEN 6 WHEN hs < 180 THEN 7
         WHEN hs < 210 THEN 8 WHEN hs < 240 THEN 9 WHEN hs < 300 THEN 10 WHEN hs < 360 THEN 11
         WHEN hs < 420 THEN 12 WHEN hs < 480 THEN 13 WHEN hs < 600 THEN 14 WHEN hs < 720 THEN 15
         WHEN hs < 900 THEN 16 WHEN hs < 1200 THEN 17 WHEN hs < 1800 THEN 18 WHEN hs < 2700 THEN 19
         WHEN hs < 3600 THEN 20 WHEN hs < 7200 THEN 21 WHEN hs < 14400 THEN 22
         ELSE 23 END AS bin,
    started_at, id, hs, queue, did, campaign_id, disposition
FROM (SELECT f.started_at, f.id, f.queue, f.did, f.campaign_id, f.disposition,
             CAST((f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL THEN s.after_call
                  ELSE min(max(f.wrapped_at - f.ended_at, 0.0), s.after_call) END)
                  + 0.5 AS INTEGER) AS hs
      FROM call_facts f CROSS JOIN report_rollup_settings s
      WHERE f.dir = 0 AND f.took);

CREATE VIEW report_agent_handle_source AS
SELECT
    CASE WHEN hs < 15 THEN 0 WHEN hs < 30 THEN 1 WHEN hs < 45 THEN 2 WHEN hs < 60 THEN 3
         WHEN hs < 90 THEN 4 WHEN hs < 120 THEN 5 WHEN hs < 150 THEN 6 WHEN hs < 180 THEN 7
         WHEN hs < 210 THEN 8 WHEN hs < 240 THEN 9 WHEN hs < 300 THEN 10 WHEN hs < 360 THEN 11
         WHEN hs < 420 THEN 12 WHEN hs < 480 THEN 13 WHEN hs < 600 THEN 14 WHEN hs < 720 THEN 15
         WHEN hs < 900 THEN 16 WHEN hs < 1200 THEN 17 WHEN hs < 1800 THEN 18 WHEN hs < 2700 THEN 19
         WHEN hs < 3600 THEN 20 WHEN hs < 7200 THEN 21 WHEN hs < 14400 THEN 22
         ELSE 23 END AS bin,
    started_at, id, agent, hs, queue
FROM (SELECT f.started_at, f.id, f.agent, f.queue,
             CAST((f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL THEN s.after_call
                  ELSE min(max(f.wrapped_at - f.ended_at, 0.0), s.after_call) END)
                  + 0.5 AS INTEGER) AS hs
      FROM call_agent_facts f CROSS JOIN report_rollup_settings s
      WHERE f.dir = 0 AND f.took);

-- What each fact adds to its rollup rows: the expressions of calls._aggregates, one per
-- column of the rollup tables, whose rows hold the total() of each; calls and answered_any
-- (every fact, those answered in any direction) are for the dispositions report.
CREATE VIEW report_call_rows AS
SELECT
    f.started_at, f.id, f.queue, f.did, f.campaign_id, f.disposition,
    CAST(f.started_at AS INTEGER) / 3600 AS hour,
    1 AS calls,
    f.answered AS answered_any,
    f.dir = 0 AS offered,
    f.dir = 0 AND f.took AS answered,
    f.dir = 0 AND NOT f.answered AS missed,
    f.dir = 0 AND f.abandoned AS abandoned,
    f.dir = 0 AND f.abandoned AND f.wait < s.short_abandon AS short_abandoned,
    f.dir = 0 AND f.took AND f.wait <= s.service_level AS in_sl,
    CASE WHEN f.dir = 0 AND f.took THEN f.wait END AS wait_sum,
    f.dir = 0 AND f.took AND f.wait IS NOT NULL AS wait_n,
    CASE WHEN f.dir = 0 AND f.took THEN
        (f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL THEN s.after_call
             ELSE min(max(f.wrapped_at - f.ended_at, 0.0), s.after_call) END)
    END AS handle_sum,
    CASE WHEN f.dir = 0 THEN f.rna END AS rna,
    CASE WHEN f.took OR f.dir = 1 THEN f.transfers END AS transfers,
    f.dir = 1 AND f.ctc AS ctc,
    f.dir = 1 AND f.ctc AND f.answered AS ctc_connected,
    f.dir = 1 AS outbound,
    f.dir = 1 AND f.answered AS outbound_answered,
    h.bin = 0 AS h0, h.bin = 1 AS h1, h.bin = 2 AS h2, h.bin = 3 AS h3, h.bin = 4 AS h4,
    h.bin = 5 AS h5, h.bin = 6 AS h6, h.bin = 7 AS h7, h.bin = 8 AS h8, h.bin = 9 AS h9,
    h.bin = 10 AS h10, h.bin = 11 AS h11, h.bin = 12 AS h12, h.bin = 13 AS h13,
    h.bin = 14 AS h14, h.bin = 15 AS h15, h.bin = 16 AS h16, h.bin = 17 AS h17,
    h.bin = 18 AS h18, h.bin = 19 AS h19, h.bin = 20 AS h20, h.bin = 21 AS h21,
    h.bin = 22 AS h22, h.bin = 23 AS h23
FROM call_facts f
CROSS JOIN report_rollup_settings s
LEFT JOIN report_handles h ON h.started_at = f.started_at AND h.id = f.id;

CREATE VIEW report_agent_rows AS
SELECT
    f.started_at, f.id, f.agent, f.queue,
    CAST(f.started_at AS INTEGER) / 3600 AS hour,
    1 AS calls,
    f.answered AS answered_any,
    f.dir = 0 AS offered,
    f.dir = 0 AND f.took AS answered,
    f.dir = 0 AND NOT f.answered AS missed,
    f.dir = 0 AND f.abandoned AS abandoned,
    f.dir = 0 AND f.abandoned AND f.wait < s.short_abandon AS short_abandoned,
    f.dir = 0 AND f.took AND f.wait <= s.service_level AS in_sl,
    CASE WHEN f.dir = 0 AND f.took THEN f.wait END AS wait_sum,
    f.dir = 0 AND f.took AND f.wait IS NOT NULL AS wait_n,
    CASE WHEN f.dir = 0 AND f.took THEN
        (f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL THEN s.after_call
             ELSE min(max(f.wrapped_at - f.ended_at, 0.0), s.after_call) END)
    END AS handle_sum,
    CASE WHEN f.dir = 0 THEN f.rna END AS rna,
    CASE WHEN f.took OR f.dir = 1 THEN f.transfers END AS transfers,
    f.dir = 1 AND f.ctc AS ctc,
    f.dir = 1 AND f.ctc AND f.answered AS ctc_connected,
    f.dir = 1 AS outbound,
    f.dir = 1 AND f.answered AS outbound_answered,
    h.bin = 0 AS h0, h.bin = 1 AS h1, h.bin = 2 AS h2, h.bin = 3 AS h3, h.bin = 4 AS h4,
    h.bin = 5 AS h5, h.bin = 6 AS h6, h.bin = 7 AS h7, h.bin = 8 AS h8, h.bin = 9 AS h9,
    h.bin = 10 AS h10, h.bin = 11 AS h11, h.bin = 12 AS h12, h.bin = 13 AS h13,
    h.bin = 14 AS h14, h.bin = 15 AS h15, h.bin = 16 AS h16, h.bin = 17 AS h17,
    h.bin = 18 AS h18, h.bin = 19 AS h19, h.bin = 20 AS h20, h.bin = 21 AS h21,
    h.bin = 22 AS h22, h.bin = 23 AS h23
FROM call_agent_facts f
CROSS JOIN report_rollup_settings s
LEFT JOIN report_agent_handles h
    ON h.started_at = f.started_at AND h.id = f.id AND h.agent = f.agent;

CREATE TABLE report_hours (
    kind              TEXT NOT NULL,
    hour              INTEGER NOT NULL,   -- CAST(started_at AS INTEGER) / 3600: UTC
    value             NOT NULL,           -- as stored; campaign: its id, '' for none
    calls             INTEGER NOT NULL,
    answered_any      INTEGER NOT NULL,
    offered           INTEGER NOT NULL,
    answered          INTEGER NOT NULL,
    missed            INTEGER NOT NULL,
    abandoned         INTEGER NOT NULL,
    short_abandoned   INTEGER NOT NULL,
    in_sl             INTEGER NOT NULL,
    wait_sum          REAL NOT NULL,
    wait_n            INTEGER NOT NULL,
    handle_sum        REAL NOT NULL,
    rna               INTEGER NOT NULL,
    transfers         INTEGER NOT NULL,
    ctc               INTEGER NOT NULL,
    ctc_connected     INTEGER NOT NULL,
    outbound          INTEGER NOT NULL,
    outbound_answered INTEGER NOT NULL,
    h0                INTEGER NOT NULL,
    h1                INTEGER NOT NULL,
    h2                INTEGER NOT NULL,
    h3                INTEGER NOT NULL,
    h4                INTEGER NOT NULL,
    h5                INTEGER NOT NULL,
    h6                INTEGER NOT NULL,
    h7                INTEGER NOT NULL,
    h8                INTEGER NOT NULL,
    h9                INTEGER NOT NULL,
    h10               INTEGER NOT NULL,
    h11               INTEGER NOT NULL,
    h12               INTEGER NOT NULL,
    h13               INTEGER NOT NULL,
    h14               INTEGER NOT NULL,
    h15               INTEGER NOT NULL,
    h16               INTEGER NOT NULL,
    h17               INTEGER NOT NULL,
    h18               INTEGER NOT NULL,
    h19               INTEGER NOT NULL,
    h20               INTEGER NOT NULL,
    h21               INTEGER NOT NULL,
    h22               INTEGER NOT NULL,
    h23               INTEGER NOT NULL,
    PRIMARY KEY (kind, hour, value)
) WITHOUT ROWID;
CREATE INDEX report_hours_value ON report_hours (kind, value, hour);

CREATE TABLE report_days (
    kind              TEXT NOT NULL,
    day               INTEGER NOT NULL,   -- hour / 24: UTC
    value             NOT NULL,
    calls             INTEGER NOT NULL,
    answered_any      INTEGER NOT NULL,
    offered           INTEGER NOT NULL,
    answered          INTEGER NOT NULL,
    missed            INTEGER NOT NULL,
    abandoned         INTEGER NOT NULL,
    short_abandoned   INTEGER NOT NULL,
    in_sl             INTEGER NOT NULL,
    wait_sum          REAL NOT NULL,
    wait_n            INTEGER NOT NULL,
    handle_sum        REAL NOT NULL,
    rna               INTEGER NOT NULL,
    transfers         INTEGER NOT NULL,
    ctc               INTEGER NOT NULL,
    ctc_connected     INTEGER NOT NULL,
    outbound          INTEGER NOT NULL,
    outbound_answered INTEGER NOT NULL,
    h0                INTEGER NOT NULL,
    h1                INTEGER NOT NULL,
    h2                INTEGER NOT NULL,
    h3                INTEGER NOT NULL,
    h4                INTEGER NOT NULL,
    h5                INTEGER NOT NULL,
    h6                INTEGER NOT NULL,
    h7                INTEGER NOT NULL,
    h8                INTEGER NOT NULL,
    h9                INTEGER NOT NULL,
    h10               INTEGER NOT NULL,
    h11               INTEGER NOT NULL,
    h12               INTEGER NOT NULL,
    h13               INTEGER NOT NULL,
    h14               INTEGER NOT NULL,
    h15               INTEGER NOT NULL,
    h16               INTEGER NOT NULL,
    h17               INTEGER NOT NULL,
    h18               INTEGER NOT NULL,
    h19               INTEGER NOT NULL,
    h20               INTEGER NOT NULL,
    h21               INTEGER NOT NULL,
    h22               INTEGER NOT NULL,
    h23               INTEGER NOT NULL,
    PRIMARY KEY (kind, day, value)
) WITHOUT ROWID;

CREATE TABLE report_agent_hours (
    hour              INTEGER NOT NULL,
    agent             TEXT NOT NULL,
    queue             TEXT NOT NULL,
    calls             INTEGER NOT NULL,
    answered_any      INTEGER NOT NULL,
    offered           INTEGER NOT NULL,
    answered          INTEGER NOT NULL,
    missed            INTEGER NOT NULL,
    abandoned         INTEGER NOT NULL,
    short_abandoned   INTEGER NOT NULL,
    in_sl             INTEGER NOT NULL,
    wait_sum          REAL NOT NULL,
    wait_n            INTEGER NOT NULL,
    handle_sum        REAL NOT NULL,
    rna               INTEGER NOT NULL,
    transfers         INTEGER NOT NULL,
    ctc               INTEGER NOT NULL,
    ctc_connected     INTEGER NOT NULL,
    outbound          INTEGER NOT NULL,
    outbound_answered INTEGER NOT NULL,
    h0                INTEGER NOT NULL,
    h1                INTEGER NOT NULL,
    h2                INTEGER NOT NULL,
    h3                INTEGER NOT NULL,
    h4                INTEGER NOT NULL,
    h5                INTEGER NOT NULL,
    h6                INTEGER NOT NULL,
    h7                INTEGER NOT NULL,
    h8                INTEGER NOT NULL,
    h9                INTEGER NOT NULL,
    h10               INTEGER NOT NULL,
    h11               INTEGER NOT NULL,
    h12               INTEGER NOT NULL,
    h13               INTEGER NOT NULL,
    h14               INTEGER NOT NULL,
    h15               INTEGER NOT NULL,
    h16               INTEGER NOT NULL,
    h17               INTEGER NOT NULL,
    h18               INTEGER NOT NULL,
    h19               INTEGER NOT NULL,
    h20               INTEGER NOT NULL,
    h21               INTEGER NOT NULL,
    h22               INTEGER NOT NULL,
    h23               INTEGER NOT NULL,
    PRIMARY KEY (hour, agent, queue)
) WITHOUT ROWID;
CREATE INDEX report_agent_hours_agent ON report_agent_hours (agent, hour);
CREATE INDEX report_agent_hours_queue ON report_agent_hours (queue, hour);

-- (per agent only: transfers put an agent in many queues, and the queues multiply the rows)
CREATE TABLE report_agent_days (
    day               INTEGER NOT NULL,
    agent             TEXT NOT NULL,
    calls             INTEGER NOT NULL,
    answered_any      INTEGER NOT NULL,
    offered           INTEGER NOT NULL,
    answered          INTEGER NOT NULL,
    missed            INTEGER NOT NULL,
    abandoned         INTEGER NOT NULL,
    short_abandoned   INTEGER NOT NULL,
    in_sl             INTEGER NOT NULL,
    wait_sum          REAL NOT NULL,
    wait_n            INTEGER NOT NULL,
    handle_sum        REAL NOT NULL,
    rna               INTEGER NOT NULL,
    transfers         INTEGER NOT NULL,
    ctc               INTEGER NOT NULL,
    ctc_connected     INTEGER NOT NULL,
    outbound          INTEGER NOT NULL,
    outbound_answered INTEGER NOT NULL,
    h0                INTEGER NOT NULL,
    h1                INTEGER NOT NULL,
    h2                INTEGER NOT NULL,
    h3                INTEGER NOT NULL,
    h4                INTEGER NOT NULL,
    h5                INTEGER NOT NULL,
    h6                INTEGER NOT NULL,
    h7                INTEGER NOT NULL,
    h8                INTEGER NOT NULL,
    h9                INTEGER NOT NULL,
    h10               INTEGER NOT NULL,
    h11               INTEGER NOT NULL,
    h12               INTEGER NOT NULL,
    h13               INTEGER NOT NULL,
    h14               INTEGER NOT NULL,
    h15               INTEGER NOT NULL,
    h16               INTEGER NOT NULL,
    h17               INTEGER NOT NULL,
    h18               INTEGER NOT NULL,
    h19               INTEGER NOT NULL,
    h20               INTEGER NOT NULL,
    h21               INTEGER NOT NULL,
    h22               INTEGER NOT NULL,
    h23               INTEGER NOT NULL,
    PRIMARY KEY (day, agent)
) WITHOUT ROWID;


-- the backfill (calls.rebuild_rollups does the same for a range of days)
INSERT INTO report_handles SELECT * FROM report_handle_source;
INSERT INTO report_agent_handles SELECT * FROM report_agent_handle_source;
    INSERT INTO report_hours (kind, hour, value, calls, answered_any, offered, answered, missed,
    abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc,
    ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11,
    h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
SELECT k.kind, r.hour,
       CASE k.kind WHEN 'queue' THEN r.queue WHEN 'did' THEN r.did
            WHEN 'campaign' THEN coalesce(r.campaign_id, '')
            WHEN 'disposition' THEN r.disposition ELSE '' END,
       total(r.calls), total(r.answered_any), total(r.offered), total(r.answered),
       total(r.missed), total(r.abandoned), total(r.short_abandoned), total(r.in_sl),
       total(r.wait_sum), total(r.wait_n), total(r.handle_sum), total(r.rna), total(r.transfers),
       total(r.ctc), total(r.ctc_connected), total(r.outbound), total(r.outbound_answered),
       total(r.h0), total(r.h1), total(r.h2), total(r.h3), total(r.h4), total(r.h5), total(r.h6),
       total(r.h7), total(r.h8), total(r.h9), total(r.h10), total(r.h11), total(r.h12),
       total(r.h13), total(r.h14), total(r.h15), total(r.h16), total(r.h17), total(r.h18),
       total(r.h19), total(r.h20), total(r.h21), total(r.h22), total(r.h23)
FROM report_call_rows r CROSS JOIN report_kinds k
GROUP BY 1, 2, 3;
    INSERT INTO report_agent_hours (hour, agent, queue, calls, answered_any, offered, answered,
    missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc,
    ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11,
    h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
SELECT r.hour, r.agent, r.queue,
       total(r.calls), total(r.answered_any), total(r.offered), total(r.answered),
       total(r.missed), total(r.abandoned), total(r.short_abandoned), total(r.in_sl),
       total(r.wait_sum), total(r.wait_n), total(r.handle_sum), total(r.rna), total(r.transfers),
       total(r.ctc), total(r.ctc_connected), total(r.outbound), total(r.outbound_answered),
       total(r.h0), total(r.h1), total(r.h2), total(r.h3), total(r.h4), total(r.h5), total(r.h6),
       total(r.h7), total(r.h8), total(r.h9), total(r.h10), total(r.h11), total(r.h12),
       total(r.h13), total(r.h14), total(r.h15), total(r.h16), total(r.h17), total(r.h18),
       total(r.h19), total(r.h20), total(r.h21), total(r.h22), total(r.h23)
FROM report_agent_rows r
GROUP BY 1, 2, 3;
    INSERT INTO report_days (kind, day, value, calls, answered_any, offered, answered, missed,
    abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc,
    ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11,
    h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
SELECT kind, hour / 24, value,
       total(calls), total(answered_any), total(offered), total(answered), total(missed),
       total(abandoned), total(short_abandoned), total(in_sl), total(wait_sum), total(wait_n),
       total(handle_sum), total(rna), total(transfers), total(ctc), total(ctc_connected),
       total(outbound), total(outbound_answered), total(h0), total(h1), total(h2), total(h3),
       total(h4), total(h5), total(h6), total(h7), total(h8), total(h9), total(h10), total(h11),
       total(h12), total(h13), total(h14), total(h15), total(h16), total(h17), total(h18),
       total(h19), total(h20), total(h21), total(h22), total(h23)
FROM report_hours
GROUP BY 1, 2, 3;
    INSERT INTO report_agent_days (day, agent, calls, answered_any, offered, answered, missed,
    abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc,
    ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11,
    h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
SELECT hour / 24, agent,
       total(calls), total(answered_any), total(offered), total(answered), total(missed),
       total(abandoned), total(short_abandoned), total(in_sl), total(wait_sum), total(wait_n),
       total(handle_sum), total(rna), total(transfers), total(ctc), total(ctc_connected),
       total(outbound), total(outbound_answered), total(h0), total(h1), total(h2), total(h3),
       total(h4), total(h5), total(h6), total(h7), total(h8), total(h9), total(h10), total(h11),
       total(h12), total(h13), total(h14), total(h15), total(h16), total(h17), total(h18),
       total(h19), total(h20), total(h21), total(h22), total(h23)
FROM report_agent_hours
GROUP BY 1, 2;

-- A fact to add to its rollup rows (sign 1) or to take from them (-1): the trigger reads what
-- it adds from report_call_rows (it must be in call_facts then), and removes the row here.
CREATE TABLE report_changes (sign INTEGER NOT NULL, started_at REAL NOT NULL, id TEXT NOT NULL);
CREATE TRIGGER report_changes_apply AFTER INSERT ON report_changes BEGIN
    INSERT INTO report_hours (kind, hour, value, calls, answered_any, offered, answered, missed,
        abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc,
        ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10,
        h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
    SELECT k.kind, r.hour,
           CASE k.kind WHEN 'queue' THEN r.queue WHEN 'did' THEN r.did
               WHEN 'campaign' THEN coalesce(r.campaign_id, '')
               WHEN 'disposition' THEN r.disposition ELSE '' END,
           NEW.sign * coalesce(r.calls, 0), NEW.sign * coalesce(r.answered_any, 0),
           NEW.sign * coalesce(r.offered, 0), NEW.sign * coalesce(r.answered, 0),
           NEW.sign * coalesce(r.missed, 0), NEW.sign * coalesce(r.abandoned, 0),
           NEW.sign * coalesce(r.short_abandoned, 0), NEW.sign * coalesce(r.in_sl, 0),
           NEW.sign * coalesce(r.wait_sum, 0), NEW.sign * coalesce(r.wait_n, 0),
           NEW.sign * coalesce(r.handle_sum, 0), NEW.sign * coalesce(r.rna, 0),
           NEW.sign * coalesce(r.transfers, 0), NEW.sign * coalesce(r.ctc, 0),
           NEW.sign * coalesce(r.ctc_connected, 0), NEW.sign * coalesce(r.outbound, 0),
           NEW.sign * coalesce(r.outbound_answered, 0), NEW.sign * coalesce(r.h0, 0),
           NEW.sign * coalesce(r.h1, 0), NEW.sign * coalesce(r.h2, 0),
           NEW.sign * coalesce(r.h3, 0), NEW.sign * coalesce(r.h4, 0),
           NEW.sign * coalesce(r.h5, 0), NEW.sign * coalesce(r.h6, 0),
           NEW.sign * coalesce(r.h7, 0), NEW.sign * coalesce(r.h8, 0),
           NEW.sign * coalesce(r.h9, 0), NEW.sign * coalesce(r.h10, 0),
           NEW.sign * coalesce(r.h11, 0), NEW.sign * coalesce(r.h12, 0),
           NEW.sign * coalesce(r.h13, 0), NEW.sign * coalesce(r.h14, 0),
           NEW.sign * coalesce(r.h15, 0), NEW.sign * coalesce(r.h16, 0),
           NEW.sign * coalesce(r.h17, 0), NEW.sign * coalesce(r.h18, 0),
           NEW.sign * coalesce(r.h19, 0), NEW.sign * coalesce(r.h20, 0),
           NEW.sign * coalesce(r.h21, 0), NEW.sign * coalesce(r.h22, 0),
           NEW.sign * coalesce(r.h23, 0)
    FROM report_call_rows r CROSS JOIN report_kinds k
    WHERE r.started_at = NEW.started_at AND r.id = NEW.id
    ON CONFLICT (kind, hour, value) DO UPDATE SET calls = calls + excluded.calls,
        answered_any = answered_any + excluded.answered_any,
        offered = offered + excluded.offered, answered = answered + excluded.answered,
        missed = missed + excluded.missed, abandoned = abandoned + excluded.abandoned,
        short_abandoned = short_abandoned + excluded.short_abandoned,
        in_sl = in_sl + excluded.in_sl, wait_sum = wait_sum + excluded.wait_sum,
        wait_n = wait_n + excluded.wait_n, handle_sum = handle_sum + excluded.handle_sum,
        rna = rna + excluded.rna, transfers = transfers + excluded.transfers,
        ctc = ctc + excluded.ctc, ctc_connected = ctc_connected + excluded.ctc_connected,
        outbound = outbound + excluded.outbound,
        outbound_answered = outbound_answered + excluded.outbound_answered,
        h0 = h0 + excluded.h0, h1 = h1 + excluded.h1, h2 = h2 + excluded.h2,
        h3 = h3 + excluded.h3, h4 = h4 + excluded.h4, h5 = h5 + excluded.h5,
        h6 = h6 + excluded.h6, h7 = h7 + excluded.h7, h8 = h8 + excluded.h8,
        h9 = h9 + excluded.h9, h10 = h10 + excluded.h10, h11 = h11 + excluded.h11,
        h12 = h12 + excluded.h12, h13 = h13 + excluded.h13, h14 = h14 + excluded.h14,
        h15 = h15 + excluded.h15, h16 = h16 + excluded.h16, h17 = h17 + excluded.h17,
        h18 = h18 + excluded.h18, h19 = h19 + excluded.h19, h20 = h20 + excluded.h20,
        h21 = h21 + excluded.h21, h22 = h22 + excluded.h22, h23 = h23 + excluded.h23;
    INSERT INTO report_days (kind, day, value, calls, answered_any, offered, answered, missed,
        abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc,
        ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10,
        h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
    SELECT k.kind, r.hour / 24,
           CASE k.kind WHEN 'queue' THEN r.queue WHEN 'did' THEN r.did
               WHEN 'campaign' THEN coalesce(r.campaign_id, '')
               WHEN 'disposition' THEN r.disposition ELSE '' END,
           NEW.sign * coalesce(r.calls, 0), NEW.sign * coalesce(r.answered_any, 0),
           NEW.sign * coalesce(r.offered, 0), NEW.sign * coalesce(r.answered, 0),
           NEW.sign * coalesce(r.missed, 0), NEW.sign * coalesce(r.abandoned, 0),
           NEW.sign * coalesce(r.short_abandoned, 0), NEW.sign * coalesce(r.in_sl, 0),
           NEW.sign * coalesce(r.wait_sum, 0), NEW.sign * coalesce(r.wait_n, 0),
           NEW.sign * coalesce(r.handle_sum, 0), NEW.sign * coalesce(r.rna, 0),
           NEW.sign * coalesce(r.transfers, 0), NEW.sign * coalesce(r.ctc, 0),
           NEW.sign * coalesce(r.ctc_connected, 0), NEW.sign * coalesce(r.outbound, 0),
           NEW.sign * coalesce(r.outbound_answered, 0), NEW.sign * coalesce(r.h0, 0),
           NEW.sign * coalesce(r.h1, 0), NEW.sign * coalesce(r.h2, 0),
           NEW.sign * coalesce(r.h3, 0), NEW.sign * coalesce(r.h4, 0),
           NEW.sign * coalesce(r.h5, 0), NEW.sign * coalesce(r.h6, 0),
           NEW.sign * coalesce(r.h7, 0), NEW.sign * coalesce(r.h8, 0),
           NEW.sign * coalesce(r.h9, 0), NEW.sign * coalesce(r.h10, 0),
           NEW.sign * coalesce(r.h11, 0), NEW.sign * coalesce(r.h12, 0),
           NEW.sign * coalesce(r.h13, 0), NEW.sign * coalesce(r.h14, 0),
           NEW.sign * coalesce(r.h15, 0), NEW.sign * coalesce(r.h16, 0),
           NEW.sign * coalesce(r.h17, 0), NEW.sign * coalesce(r.h18, 0),
           NEW.sign * coalesce(r.h19, 0), NEW.sign * coalesce(r.h20, 0),
           NEW.sign * coalesce(r.h21, 0), NEW.sign * coalesce(r.h22, 0),
           NEW.sign * coalesce(r.h23, 0)
    FROM report_call_rows r CROSS JOIN report_kinds k
    WHERE r.started_at = NEW.started_at AND r.id = NEW.id
    ON CONFLICT (kind, day, value) DO UPDATE SET calls = calls + excluded.calls,
        answered_any = answered_any + excluded.answered_any,
        offered = offered + excluded.offered, answered = answered + excluded.answered,
        missed = missed + excluded.missed, abandoned = abandoned + excluded.abandoned,
        short_abandoned = short_abandoned + excluded.short_abandoned,
        in_sl = in_sl + excluded.in_sl, wait_sum = wait_sum + excluded.wait_sum,
        wait_n = wait_n + excluded.wait_n, handle_sum = handle_sum + excluded.handle_sum,
        rna = rna + excluded.rna, transfers = transfers + excluded.transfers,
        ctc = ctc + excluded.ctc, ctc_connected = ctc_connected + excluded.ctc_connected,
        outbound = outbound + excluded.outbound,
        outbound_answered = outbound_answered + excluded.outbound_answered,
        h0 = h0 + excluded.h0, h1 = h1 + excluded.h1, h2 = h2 + excluded.h2,
        h3 = h3 + excluded.h3, h4 = h4 + excluded.h4, h5 = h5 + excluded.h5,
        h6 = h6 + excluded.h6, h7 = h7 + excluded.h7, h8 = h8 + excluded.h8,
        h9 = h9 + excluded.h9, h10 = h10 + excluded.h10, h11 = h11 + excluded.h11,
        h12 = h12 + excluded.h12, h13 = h13 + excluded.h13, h14 = h14 + excluded.h14,
        h15 = h15 + excluded.h15, h16 = h16 + excluded.h16, h17 = h17 + excluded.h17,
        h18 = h18 + excluded.h18, h19 = h19 + excluded.h19, h20 = h20 + excluded.h20,
        h21 = h21 + excluded.h21, h22 = h22 + excluded.h22, h23 = h23 + excluded.h23;
    DELETE FROM report_hours WHERE NEW.sign < 0 AND kind IN (SELECT kind FROM report_kinds)
        AND hour = CAST(NEW.started_at AS INTEGER) / 3600 AND calls = 0;
    DELETE FROM report_days WHERE NEW.sign < 0 AND kind IN (SELECT kind FROM report_kinds)
        AND day = CAST(NEW.started_at AS INTEGER) / 3600 / 24 AND calls = 0;
    DELETE FROM report_changes WHERE rowid = NEW.rowid;
END;

CREATE TABLE report_agent_changes (
    sign        INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    id          TEXT NOT NULL,
    agent       TEXT NOT NULL
);
CREATE TRIGGER report_agent_changes_apply AFTER INSERT ON report_agent_changes BEGIN
    INSERT INTO report_agent_hours (hour, agent, queue, calls, answered_any, offered, answered,
        missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers,
        ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9,
        h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
    SELECT r.hour, r.agent, r.queue,
           NEW.sign * coalesce(r.calls, 0), NEW.sign * coalesce(r.answered_any, 0),
           NEW.sign * coalesce(r.offered, 0), NEW.sign * coalesce(r.answered, 0),
           NEW.sign * coalesce(r.missed, 0), NEW.sign * coalesce(r.abandoned, 0),
           NEW.sign * coalesce(r.short_abandoned, 0), NEW.sign * coalesce(r.in_sl, 0),
           NEW.sign * coalesce(r.wait_sum, 0), NEW.sign * coalesce(r.wait_n, 0),
           NEW.sign * coalesce(r.handle_sum, 0), NEW.sign * coalesce(r.rna, 0),
           NEW.sign * coalesce(r.transfers, 0), NEW.sign * coalesce(r.ctc, 0),
           NEW.sign * coalesce(r.ctc_connected, 0), NEW.sign * coalesce(r.outbound, 0),
           NEW.sign * coalesce(r.outbound_answered, 0), NEW.sign * coalesce(r.h0, 0),
           NEW.sign * coalesce(r.h1, 0), NEW.sign * coalesce(r.h2, 0),
           NEW.sign * coalesce(r.h3, 0), NEW.sign * coalesce(r.h4, 0),
           NEW.sign * coalesce(r.h5, 0), NEW.sign * coalesce(r.h6, 0),
           NEW.sign * coalesce(r.h7, 0), NEW.sign * coalesce(r.h8, 0),
           NEW.sign * coalesce(r.h9, 0), NEW.sign * coalesce(r.h10, 0),
           NEW.sign * coalesce(r.h11, 0), NEW.sign * coalesce(r.h12, 0),
           NEW.sign * coalesce(r.h13, 0), NEW.sign * coalesce(r.h14, 0),
           NEW.sign * coalesce(r.h15, 0), NEW.sign * coalesce(r.h16, 0),
           NEW.sign * coalesce(r.h17, 0), NEW.sign * coalesce(r.h18, 0),
           NEW.sign * coalesce(r.h19, 0), NEW.sign * coalesce(r.h20, 0),
           NEW.sign * coalesce(r.h21, 0), NEW.sign * coalesce(r.h22, 0),
           NEW.sign * coalesce(r.h23, 0)
    FROM report_agent_rows r
    WHERE r.started_at = NEW.started_at AND r.id = NEW.id AND r.agent = NEW.agent
    ON CONFLICT (hour, agent, queue) DO UPDATE SET calls = calls + excluded.calls,
        answered_any = answered_any + excluded.answered_any,
        offered = offered + excluded.offered, answered = answered + excluded.answered,
        missed = missed + excluded.missed, abandoned = abandoned + excluded.abandoned,
        short_abandoned = short_abandoned + excluded.short_abandoned,
        in_sl = in_sl + excluded.in_sl, wait_sum = wait_sum + excluded.wait_sum,
        wait_n = wait_n + excluded.wait_n, handle_sum = handle_sum + excluded.handle_sum,
        rna = rna + excluded.rna, transfers = transfers + excluded.transfers,
        ctc = ctc + excluded.ctc, ctc_connected = ctc_connected + excluded.ctc_connected,
        outbound = outbound + excluded.outbound,
        outbound_answered = outbound_answered + excluded.outbound_answered,
        h0 = h0 + excluded.h0, h1 = h1 + excluded.h1, h2 = h2 + excluded.h2,
        h3 = h3 + excluded.h3, h4 = h4 + excluded.h4, h5 = h5 + excluded.h5,
        h6 = h6 + excluded.h6, h7 = h7 + excluded.h7, h8 = h8 + excluded.h8,
        h9 = h9 + excluded.h9, h10 = h10 + excluded.h10, h11 = h11 + excluded.h11,
        h12 = h12 + excluded.h12, h13 = h13 + excluded.h13, h14 = h14 + excluded.h14,
        h15 = h15 + excluded.h15, h16 = h16 + excluded.h16, h17 = h17 + excluded.h17,
        h18 = h18 + excluded.h18, h19 = h19 + excluded.h19, h20 = h20 + excluded.h20,
        h21 = h21 + excluded.h21, h22 = h22 + excluded.h22, h23 = h23 + excluded.h23;
    INSERT INTO report_agent_days (day, agent, calls, answered_any, offered, answered, missed,
        abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc,
        ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10,
        h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
    SELECT r.hour / 24, r.agent,
           NEW.sign * coalesce(r.calls, 0), NEW.sign * coalesce(r.answered_any, 0),
           NEW.sign * coalesce(r.offered, 0), NEW.sign * coalesce(r.answered, 0),
           NEW.sign * coalesce(r.missed, 0), NEW.sign * coalesce(r.abandoned, 0),
           NEW.sign * coalesce(r.short_abandoned, 0), NEW.sign * coalesce(r.in_sl, 0),
           NEW.sign * coalesce(r.wait_sum, 0), NEW.sign * coalesce(r.wait_n, 0),
           NEW.sign * coalesce(r.handle_sum, 0), NEW.sign * coalesce(r.rna, 0),
           NEW.sign * coalesce(r.transfers, 0), NEW.sign * coalesce(r.ctc, 0),
           NEW.sign * coalesce(r.ctc_connected, 0), NEW.sign * coalesce(r.outbound, 0),
           NEW.sign * coalesce(r.outbound_answered, 0), NEW.sign * coalesce(r.h0, 0),
           NEW.sign * coalesce(r.h1, 0), NEW.sign * coalesce(r.h2, 0),
           NEW.sign * coalesce(r.h3, 0), NEW.sign * coalesce(r.h4, 0),
           NEW.sign * coalesce(r.h5, 0), NEW.sign * coalesce(r.h6, 0),
           NEW.sign * coalesce(r.h7, 0), NEW.sign * coalesce(r.h8, 0),
           NEW.sign * coalesce(r.h9, 0), NEW.sign * coalesce(r.h10, 0),
           NEW.sign * coalesce(r.h11, 0), NEW.sign * coalesce(r.h12, 0),
           NEW.sign * coalesce(r.h13, 0), NEW.sign * coalesce(r.h14, 0),
           NEW.sign * coalesce(r.h15, 0), NEW.sign * coalesce(r.h16, 0),
           NEW.sign * coalesce(r.h17, 0), NEW.sign * coalesce(r.h18, 0),
           NEW.sign * coalesce(r.h19, 0), NEW.sign * coalesce(r.h20, 0),
           NEW.sign * coalesce(r.h21, 0), NEW.sign * coalesce(r.h22, 0),
           NEW.sign * coalesce(r.h23, 0)
    FROM report_agent_rows r
    WHERE r.started_at = NEW.started_at AND r.id = NEW.id AND r.agent = NEW.agent
    ON CONFLICT (day, agent) DO UPDATE SET calls = calls + excluded.calls,
        answered_any = answered_any + excluded.answered_any,
        offered = offered + excluded.offered, answered = answered + excluded.answered,
        missed = missed + excluded.missed, abandoned = abandoned + excluded.abandoned,
        short_abandoned = short_abandoned + excluded.short_abandoned,
        in_sl = in_sl + excluded.in_sl, wait_sum = wait_sum + excluded.wait_sum,
        wait_n = wait_n + excluded.wait_n, handle_sum = handle_sum + excluded.handle_sum,
        rna = rna + excluded.rna, transfers = transfers + excluded.transfers,
        ctc = ctc + excluded.ctc, ctc_connected = ctc_connected + excluded.ctc_connected,
        outbound = outbound + excluded.outbound,
        outbound_answered = outbound_answered + excluded.outbound_answered,
        h0 = h0 + excluded.h0, h1 = h1 + excluded.h1, h2 = h2 + excluded.h2,
        h3 = h3 + excluded.h3, h4 = h4 + excluded.h4, h5 = h5 + excluded.h5,
        h6 = h6 + excluded.h6, h7 = h7 + excluded.h7, h8 = h8 + excluded.h8,
        h9 = h9 + excluded.h9, h10 = h10 + excluded.h10, h11 = h11 + excluded.h11,
        h12 = h12 + excluded.h12, h13 = h13 + excluded.h13, h14 = h14 + excluded.h14,
        h15 = h15 + excluded.h15, h16 = h16 + excluded.h16, h17 = h17 + excluded.h17,
        h18 = h18 + excluded.h18, h19 = h19 + excluded.h19, h20 = h20 + excluded.h20,
        h21 = h21 + excluded.h21, h22 = h22 + excluded.h22, h23 = h23 + excluded.h23;
    DELETE FROM report_agent_hours WHERE NEW.sign < 0
        AND hour = CAST(NEW.started_at AS INTEGER) / 3600 AND agent = NEW.agent AND calls = 0;
    DELETE FROM report_agent_days WHERE NEW.sign < 0
        AND day = CAST(NEW.started_at AS INTEGER) / 3600 / 24 AND agent = NEW.agent AND calls = 0;
    DELETE FROM report_agent_changes WHERE rowid = NEW.rowid;
END;

-- Call-backs: each missed inbound call with a number, and the seconds to the first outbound
-- call to that number after it (within calls.CALLBACK_WINDOW); none when nobody called back.
-- The call's dimensions are kept with it, as in report_handles.
CREATE TABLE report_callbacks (
    started_at  REAL NOT NULL,
    id          TEXT NOT NULL,
    d           REAL NOT NULL,
    queue       TEXT NOT NULL,
    did         TEXT NOT NULL,
    campaign_id INTEGER,
    disposition TEXT NOT NULL,
    PRIMARY KEY (started_at, id)
) WITHOUT ROWID;

CREATE VIEW report_callback_source AS
SELECT started_at, id, d, queue, did, campaign_id, disposition FROM (
    SELECT f.started_at, f.id, f.queue, f.did, f.campaign_id, f.disposition,
           (SELECT min(o.started_at) FROM calls o
             WHERE o.direction = 'outbound' AND o.other_e164 = f.number
               AND o.started_at > f.started_at AND o.started_at <= f.started_at + 604800.0)
           - f.started_at AS d
    FROM call_facts f
    WHERE f.dir = 0 AND NOT f.answered AND f.number IS NOT NULL)
WHERE d IS NOT NULL;

INSERT INTO report_callbacks SELECT * FROM report_callback_source;

-- The facts' triggers (0014 inserts and deletes facts, and updates them for a wrap-up). What
-- a fact adds to its rows is read from the views: before it goes (subtracted) and once it is
-- there (added), its handle time first. Counts stay exact; the two sums of seconds may differ
-- from summing afresh in the last bit of a double, far below the tenth of a second shown.
CREATE TRIGGER report_facts_insert AFTER INSERT ON call_facts BEGIN
    INSERT OR REPLACE INTO report_handles SELECT * FROM report_handle_source
        WHERE started_at = NEW.started_at AND id = NEW.id;
    INSERT INTO report_changes (sign, started_at, id)
        VALUES (1, NEW.started_at, NEW.id);
    INSERT OR REPLACE INTO report_callbacks SELECT * FROM report_callback_source
        WHERE started_at = NEW.started_at AND id = NEW.id;
    -- ... and an outbound call may be the call-back of missed calls from its number
    DELETE FROM report_callbacks WHERE NEW.dir = 1 AND (started_at, id) IN (
        SELECT c.started_at, c.id FROM calls c
        WHERE c.caller_e164 = NEW.number AND c.started_at >= NEW.started_at - 604801.0
          AND c.started_at < NEW.started_at + 1.0);
    INSERT OR REPLACE INTO report_callbacks
        SELECT s.* FROM calls c
        JOIN report_callback_source s ON s.started_at = c.started_at AND s.id = c.id
        WHERE NEW.dir = 1 AND c.caller_e164 = NEW.number
          AND c.started_at >= NEW.started_at - 604801.0 AND c.started_at < NEW.started_at + 1.0;
END;

CREATE TRIGGER report_facts_before_delete BEFORE DELETE ON call_facts BEGIN
    INSERT INTO report_changes (sign, started_at, id)
        VALUES (-1, OLD.started_at, OLD.id);
END;

CREATE TRIGGER report_facts_delete AFTER DELETE ON call_facts BEGIN
    DELETE FROM report_handles WHERE started_at = OLD.started_at AND id = OLD.id;
    DELETE FROM report_callbacks WHERE started_at = OLD.started_at AND id = OLD.id;
    -- ... and an outbound call may be the call-back of missed calls from its number
    DELETE FROM report_callbacks WHERE OLD.dir = 1 AND (started_at, id) IN (
        SELECT c.started_at, c.id FROM calls c
        WHERE c.caller_e164 = OLD.number AND c.started_at >= OLD.started_at - 604801.0
          AND c.started_at < OLD.started_at + 1.0);
    INSERT OR REPLACE INTO report_callbacks
        SELECT s.* FROM calls c
        JOIN report_callback_source s ON s.started_at = c.started_at AND s.id = c.id
        WHERE OLD.dir = 1 AND c.caller_e164 = OLD.number
          AND c.started_at >= OLD.started_at - 604801.0 AND c.started_at < OLD.started_at + 1.0;
END;

CREATE TRIGGER report_facts_before_update BEFORE UPDATE ON call_facts BEGIN
    INSERT INTO report_changes (sign, started_at, id)
        VALUES (-1, OLD.started_at, OLD.id);
END;

CREATE TRIGGER report_facts_update AFTER UPDATE ON call_facts BEGIN
    DELETE FROM report_handles WHERE started_at = OLD.started_at AND id = OLD.id;
    INSERT OR REPLACE INTO report_handles SELECT * FROM report_handle_source
        WHERE started_at = NEW.started_at AND id = NEW.id;
    INSERT INTO report_changes (sign, started_at, id)
        VALUES (1, NEW.started_at, NEW.id);
    DELETE FROM report_callbacks WHERE started_at = OLD.started_at AND id = OLD.id;
    -- ... and an outbound call may be the call-back of missed calls from its number
    DELETE FROM report_callbacks WHERE OLD.dir = 1 AND (started_at, id) IN (
        SELECT c.started_at, c.id FROM calls c
        WHERE c.caller_e164 = OLD.number AND c.started_at >= OLD.started_at - 604801.0
          AND c.started_at < OLD.started_at + 1.0);
    INSERT OR REPLACE INTO report_callbacks
        SELECT s.* FROM calls c
        JOIN report_callback_source s ON s.started_at = c.started_at AND s.id = c.id
        WHERE OLD.dir = 1 AND c.caller_e164 = OLD.number
          AND c.started_at >= OLD.started_at - 604801.0 AND c.started_at < OLD.started_at + 1.0;
    INSERT OR REPLACE INTO report_callbacks SELECT * FROM report_callback_source
        WHERE started_at = NEW.started_at AND id = NEW.id;
    -- ... and an outbound call may be the call-back of missed calls from its number
    DELETE FROM report_callbacks WHERE NEW.dir = 1 AND (started_at, id) IN (
        SELECT c.started_at, c.id FROM calls c
        WHERE c.caller_e164 = NEW.number AND c.started_at >= NEW.started_at - 604801.0
          AND c.started_at < NEW.started_at + 1.0);
    INSERT OR REPLACE INTO report_callbacks
        SELECT s.* FROM calls c
        JOIN report_callback_source s ON s.started_at = c.started_at AND s.id = c.id
        WHERE NEW.dir = 1 AND c.caller_e164 = NEW.number
          AND c.started_at >= NEW.started_at - 604801.0 AND c.started_at < NEW.started_at + 1.0;
END;

CREATE TRIGGER report_agent_facts_insert AFTER INSERT ON call_agent_facts BEGIN
    INSERT OR REPLACE INTO report_agent_handles SELECT * FROM report_agent_handle_source
        WHERE started_at = NEW.started_at AND id = NEW.id AND agent = NEW.agent;
    INSERT INTO report_agent_changes (sign, started_at, id, agent)
        VALUES (1, NEW.started_at, NEW.id, NEW.agent);
END;

CREATE TRIGGER report_agent_facts_before_delete BEFORE DELETE ON call_agent_facts BEGIN
    INSERT INTO report_agent_changes (sign, started_at, id, agent)
        VALUES (-1, OLD.started_at, OLD.id, OLD.agent);
END;

CREATE TRIGGER report_agent_facts_delete AFTER DELETE ON call_agent_facts BEGIN
    DELETE FROM report_agent_handles
        WHERE started_at = OLD.started_at AND id = OLD.id AND agent = OLD.agent;
END;

CREATE TRIGGER report_agent_facts_before_update BEFORE UPDATE ON call_agent_facts BEGIN
    INSERT INTO report_agent_changes (sign, started_at, id, agent)
        VALUES (-1, OLD.started_at, OLD.id, OLD.agent);
END;

CREATE TRIGGER report_agent_facts_update AFTER UPDATE ON call_agent_facts BEGIN
    DELETE FROM report_agent_handles
        WHERE started_at = OLD.started_at AND id = OLD.id AND agent = OLD.agent;
    INSERT OR REPLACE INTO report_agent_handles SELECT * FROM report_agent_handle_source
        WHERE started_at = NEW.started_at AND id = NEW.id AND agent = NEW.agent;
    INSERT INTO report_agent_changes (sign, started_at, id, agent)
        VALUES (1, NEW.started_at, NEW.id, NEW.agent);
END;
