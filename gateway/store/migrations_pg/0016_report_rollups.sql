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

-- PostgreSQL: the same derivation as migrations/0016_report_rollups.sql, in PostgreSQL's
-- words. SQLite's total() (a sum that is 0.0 over no rows), sum() of a comparison (the
-- count of rows where it holds), the scalar max(a, b) / min(a, b), ifnull and json_valid,
-- which the store's queries use, exist here as functions of the same names; the triggers on
-- report_changes become functions the facts' triggers call.
CREATE AGGREGATE total(double precision) (SFUNC = float8pl, STYPE = float8, INITCOND = '0');

CREATE FUNCTION sum_bool_step(acc bigint, b boolean) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN b IS NULL THEN acc ELSE coalesce(acc, 0) + b::int END $$;
CREATE AGGREGATE sum(boolean) (SFUNC = sum_bool_step, STYPE = bigint);

-- SQLite's max(a, b) and min(a, b) of two values (NULL if either is), which store queries use
-- SQLite's ifnull(X, Y) keeps X's type: a campaign id, or '' for none, in one column
CREATE FUNCTION ifnull(a bigint, b text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(a::text, b) $$;
CREATE FUNCTION ifnull(a anyelement, b anyelement) RETURNS anyelement
    LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(a, b) $$;
-- SQLite's json_valid(X): whether X is well-formed JSON
CREATE FUNCTION json_valid(x text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM x::json;
    RETURN x IS NOT NULL;
EXCEPTION WHEN others THEN
    RETURN false;
END $$;
CREATE FUNCTION max(a double precision, b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT greatest(a, b) $$;
CREATE FUNCTION min(a double precision, b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT least(a, b) $$;
CREATE FUNCTION max(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT greatest(a, b) $$;
CREATE FUNCTION min(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT least(a, b) $$;

CREATE VIEW report_handle_source AS
SELECT
    (CASE WHEN hs < 15 THEN 0 WHEN hs < 30 THEN 1 WHEN hs < 45 THEN 2 WHEN hs < 60 THEN 3 WHEN hs < 90 THEN 4 WHEN hs < 120 THEN 5 WHEN hs < 150 THEN 6 WHEN hs < 180 THEN 7 WHEN hs < 210 THEN 8 WHEN hs < 240 THEN 9 WHEN hs < 300 THEN 10 WHEN hs < 360 THEN 11 WHEN hs < 420 THEN 12 WHEN hs < 480 THEN 13 WHEN hs < 600 THEN 14 WHEN hs < 720 THEN 15 WHEN hs < 900 THEN 16 WHEN hs < 1200 THEN 17 WHEN hs < 1800 THEN 18 WHEN hs < 2700 THEN 19 WHEN hs < 3600 THEN 20 WHEN hs < 7200 THEN 21 WHEN hs < 14400 THEN 22 ELSE 23 END)::bigint AS bin,
    started_at, id, hs, queue, did, campaign_id, disposition
FROM (SELECT f.started_at, f.id, f.queue, f.did, f.campaign_id, f.disposition,
             trunc((f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL THEN s.after_call
             ELSE least(greatest(f.wrapped_at - f.ended_at, 0.0), s.after_call) END) + 0.5)::bigint AS hs
      FROM call_facts f CROSS JOIN report_rollup_settings s
      WHERE f.dir = 0 AND f.took <> 0) AS f;

CREATE VIEW report_agent_handle_source AS
SELECT
    (CASE WHEN hs < 15 THEN 0 WHEN hs < 30 THEN 1 WHEN hs < 45 THEN 2 WHEN hs < 60 THEN 3 WHEN hs < 90 THEN 4 WHEN hs < 120 THEN 5 WHEN hs < 150 THEN 6 WHEN hs < 180 THEN 7 WHEN hs < 210 THEN 8 WHEN hs < 240 THEN 9 WHEN hs < 300 THEN 10 WHEN hs < 360 THEN 11 WHEN hs < 420 THEN 12 WHEN hs < 480 THEN 13 WHEN hs < 600 THEN 14 WHEN hs < 720 THEN 15 WHEN hs < 900 THEN 16 WHEN hs < 1200 THEN 17 WHEN hs < 1800 THEN 18 WHEN hs < 2700 THEN 19 WHEN hs < 3600 THEN 20 WHEN hs < 7200 THEN 21 WHEN hs < 14400 THEN 22 ELSE 23 END)::bigint AS bin,
    started_at, id, agent, hs, queue
FROM (SELECT f.started_at, f.id, f.agent, f.queue,
             trunc((f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL THEN s.after_call
             ELSE least(greatest(f.wrapped_at - f.ended_at, 0.0), s.after_call) END) + 0.5)::bigint AS hs
      FROM call_agent_facts f CROSS JOIN report_rollup_settings s
      WHERE f.dir = 0 AND f.took <> 0) AS f;

CREATE VIEW report_call_rows AS
SELECT
    f.started_at, f.id, f.queue, f.did, f.campaign_id, f.disposition,
    trunc(f.started_at)::bigint / 3600 AS hour,
    1 AS calls,
    f.answered AS answered_any,
    (f.dir = 0)::int AS offered,
    (f.dir = 0 AND f.took <> 0)::int AS answered,
    (f.dir = 0 AND f.answered = 0)::int AS missed,
    (f.dir = 0 AND f.abandoned <> 0)::int AS abandoned,
    (f.dir = 0 AND f.abandoned <> 0 AND f.wait < s.short_abandon)::int AS short_abandoned,
    (f.dir = 0 AND f.took <> 0 AND f.wait <= s.service_level)::int AS in_sl,
    CASE WHEN f.dir = 0 AND f.took <> 0 THEN f.wait END AS wait_sum,
    (f.dir = 0 AND f.took <> 0 AND f.wait IS NOT NULL)::int AS wait_n,
    CASE WHEN f.dir = 0 AND f.took <> 0 THEN
        (f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL THEN s.after_call
             ELSE least(greatest(f.wrapped_at - f.ended_at, 0.0), s.after_call) END)
    END AS handle_sum,
    CASE WHEN f.dir = 0 THEN f.rna END AS rna,
    CASE WHEN f.took <> 0 OR f.dir = 1 THEN f.transfers END AS transfers,
    (f.dir = 1 AND f.ctc <> 0)::int AS ctc,
    (f.dir = 1 AND f.ctc <> 0 AND f.answered <> 0)::int AS ctc_connected,
    (f.dir = 1)::int AS outbound,
    (f.dir = 1 AND f.answered <> 0)::int AS outbound_answered,
    (h.bin = 0)::int AS h0,
    (h.bin = 1)::int AS h1,
    (h.bin = 2)::int AS h2,
    (h.bin = 3)::int AS h3,
    (h.bin = 4)::int AS h4,
    (h.bin = 5)::int AS h5,
    (h.bin = 6)::int AS h6,
    (h.bin = 7)::int AS h7,
    (h.bin = 8)::int AS h8,
    (h.bin = 9)::int AS h9,
    (h.bin = 10)::int AS h10,
    (h.bin = 11)::int AS h11,
    (h.bin = 12)::int AS h12,
    (h.bin = 13)::int AS h13,
    (h.bin = 14)::int AS h14,
    (h.bin = 15)::int AS h15,
    (h.bin = 16)::int AS h16,
    (h.bin = 17)::int AS h17,
    (h.bin = 18)::int AS h18,
    (h.bin = 19)::int AS h19,
    (h.bin = 20)::int AS h20,
    (h.bin = 21)::int AS h21,
    (h.bin = 22)::int AS h22,
    (h.bin = 23)::int AS h23
FROM call_facts f
CROSS JOIN report_rollup_settings s
LEFT JOIN report_handles h
    ON h.started_at = f.started_at AND h.id = f.id;

CREATE VIEW report_agent_rows AS
SELECT
    f.started_at, f.id, f.agent, f.queue,
    trunc(f.started_at)::bigint / 3600 AS hour,
    1 AS calls,
    f.answered AS answered_any,
    (f.dir = 0)::int AS offered,
    (f.dir = 0 AND f.took <> 0)::int AS answered,
    (f.dir = 0 AND f.answered = 0)::int AS missed,
    (f.dir = 0 AND f.abandoned <> 0)::int AS abandoned,
    (f.dir = 0 AND f.abandoned <> 0 AND f.wait < s.short_abandon)::int AS short_abandoned,
    (f.dir = 0 AND f.took <> 0 AND f.wait <= s.service_level)::int AS in_sl,
    CASE WHEN f.dir = 0 AND f.took <> 0 THEN f.wait END AS wait_sum,
    (f.dir = 0 AND f.took <> 0 AND f.wait IS NOT NULL)::int AS wait_n,
    CASE WHEN f.dir = 0 AND f.took <> 0 THEN
        (f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL THEN s.after_call
             ELSE least(greatest(f.wrapped_at - f.ended_at, 0.0), s.after_call) END)
    END AS handle_sum,
    CASE WHEN f.dir = 0 THEN f.rna END AS rna,
    CASE WHEN f.took <> 0 OR f.dir = 1 THEN f.transfers END AS transfers,
    (f.dir = 1 AND f.ctc <> 0)::int AS ctc,
    (f.dir = 1 AND f.ctc <> 0 AND f.answered <> 0)::int AS ctc_connected,
    (f.dir = 1)::int AS outbound,
    (f.dir = 1 AND f.answered <> 0)::int AS outbound_answered,
    (h.bin = 0)::int AS h0,
    (h.bin = 1)::int AS h1,
    (h.bin = 2)::int AS h2,
    (h.bin = 3)::int AS h3,
    (h.bin = 4)::int AS h4,
    (h.bin = 5)::int AS h5,
    (h.bin = 6)::int AS h6,
    (h.bin = 7)::int AS h7,
    (h.bin = 8)::int AS h8,
    (h.bin = 9)::int AS h9,
    (h.bin = 10)::int AS h10,
    (h.bin = 11)::int AS h11,
    (h.bin = 12)::int AS h12,
    (h.bin = 13)::int AS h13,
    (h.bin = 14)::int AS h14,
    (h.bin = 15)::int AS h15,
    (h.bin = 16)::int AS h16,
    (h.bin = 17)::int AS h17,
    (h.bin = 18)::int AS h18,
    (h.bin = 19)::int AS h19,
    (h.bin = 20)::int AS h20,
    (h.bin = 21)::int AS h21,
    (h.bin = 22)::int AS h22,
    (h.bin = 23)::int AS h23
FROM call_agent_facts f
CROSS JOIN report_rollup_settings s
LEFT JOIN report_agent_handles h
    ON h.started_at = f.started_at AND h.id = f.id AND h.agent = f.agent;

-- the backfill (calls.rebuild_rollups does the same for a range of days)
INSERT INTO report_handles SELECT * FROM report_handle_source;
INSERT INTO report_agent_handles SELECT * FROM report_agent_handle_source;
INSERT INTO report_hours (kind, hour, value, calls, answered_any, offered, answered, missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
SELECT k.kind, r.hour, CASE k.kind WHEN 'queue' THEN r.queue WHEN 'did' THEN r.did
               WHEN 'campaign' THEN coalesce(r.campaign_id::text, '')
               WHEN 'disposition' THEN r.disposition ELSE '' END, total(r.calls), total(r.answered_any), total(r.offered), total(r.answered), total(r.missed), total(r.abandoned), total(r.short_abandoned), total(r.in_sl), total(r.wait_sum), total(r.wait_n), total(r.handle_sum), total(r.rna), total(r.transfers), total(r.ctc), total(r.ctc_connected), total(r.outbound), total(r.outbound_answered), total(r.h0), total(r.h1), total(r.h2), total(r.h3), total(r.h4), total(r.h5), total(r.h6), total(r.h7), total(r.h8), total(r.h9), total(r.h10), total(r.h11), total(r.h12), total(r.h13), total(r.h14), total(r.h15), total(r.h16), total(r.h17), total(r.h18), total(r.h19), total(r.h20), total(r.h21), total(r.h22), total(r.h23)
FROM report_call_rows r CROSS JOIN report_kinds k GROUP BY 1, 2, 3;
INSERT INTO report_agent_hours (hour, agent, queue, calls, answered_any, offered, answered, missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
SELECT r.hour, r.agent, r.queue, total(r.calls), total(r.answered_any), total(r.offered), total(r.answered), total(r.missed), total(r.abandoned), total(r.short_abandoned), total(r.in_sl), total(r.wait_sum), total(r.wait_n), total(r.handle_sum), total(r.rna), total(r.transfers), total(r.ctc), total(r.ctc_connected), total(r.outbound), total(r.outbound_answered), total(r.h0), total(r.h1), total(r.h2), total(r.h3), total(r.h4), total(r.h5), total(r.h6), total(r.h7), total(r.h8), total(r.h9), total(r.h10), total(r.h11), total(r.h12), total(r.h13), total(r.h14), total(r.h15), total(r.h16), total(r.h17), total(r.h18), total(r.h19), total(r.h20), total(r.h21), total(r.h22), total(r.h23)
FROM report_agent_rows r GROUP BY 1, 2, 3;
INSERT INTO report_days (kind, day, value, calls, answered_any, offered, answered, missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
SELECT kind, hour / 24, value, total(calls), total(answered_any), total(offered), total(answered), total(missed), total(abandoned), total(short_abandoned), total(in_sl), total(wait_sum), total(wait_n), total(handle_sum), total(rna), total(transfers), total(ctc), total(ctc_connected), total(outbound), total(outbound_answered), total(h0), total(h1), total(h2), total(h3), total(h4), total(h5), total(h6), total(h7), total(h8), total(h9), total(h10), total(h11), total(h12), total(h13), total(h14), total(h15), total(h16), total(h17), total(h18), total(h19), total(h20), total(h21), total(h22), total(h23) FROM report_hours GROUP BY 1, 2, 3;
INSERT INTO report_agent_days (day, agent, calls, answered_any, offered, answered, missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
SELECT hour / 24, agent, total(calls), total(answered_any), total(offered), total(answered), total(missed), total(abandoned), total(short_abandoned), total(in_sl), total(wait_sum), total(wait_n), total(handle_sum), total(rna), total(transfers), total(ctc), total(ctc_connected), total(outbound), total(outbound_answered), total(h0), total(h1), total(h2), total(h3), total(h4), total(h5), total(h6), total(h7), total(h8), total(h9), total(h10), total(h11), total(h12), total(h13), total(h14), total(h15), total(h16), total(h17), total(h18), total(h19), total(h20), total(h21), total(h22), total(h23) FROM report_agent_hours GROUP BY 1, 2;

-- what one fact adds to its rollup rows (sgn 1), or takes from them (-1)
CREATE FUNCTION report_apply(sgn bigint, at DOUBLE PRECISION, call_id TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_hours AS t (kind, hour, value, calls, answered_any, offered, answered, missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
    SELECT k.kind, r.hour, CASE k.kind WHEN 'queue' THEN r.queue WHEN 'did' THEN r.did
               WHEN 'campaign' THEN coalesce(r.campaign_id::text, '')
               WHEN 'disposition' THEN r.disposition ELSE '' END, sgn * coalesce(r.calls, 0), sgn * coalesce(r.answered_any, 0), sgn * coalesce(r.offered, 0), sgn * coalesce(r.answered, 0), sgn * coalesce(r.missed, 0), sgn * coalesce(r.abandoned, 0), sgn * coalesce(r.short_abandoned, 0), sgn * coalesce(r.in_sl, 0), sgn * coalesce(r.wait_sum, 0), sgn * coalesce(r.wait_n, 0), sgn * coalesce(r.handle_sum, 0), sgn * coalesce(r.rna, 0), sgn * coalesce(r.transfers, 0), sgn * coalesce(r.ctc, 0), sgn * coalesce(r.ctc_connected, 0), sgn * coalesce(r.outbound, 0), sgn * coalesce(r.outbound_answered, 0), sgn * coalesce(r.h0, 0), sgn * coalesce(r.h1, 0), sgn * coalesce(r.h2, 0), sgn * coalesce(r.h3, 0), sgn * coalesce(r.h4, 0), sgn * coalesce(r.h5, 0), sgn * coalesce(r.h6, 0), sgn * coalesce(r.h7, 0), sgn * coalesce(r.h8, 0), sgn * coalesce(r.h9, 0), sgn * coalesce(r.h10, 0), sgn * coalesce(r.h11, 0), sgn * coalesce(r.h12, 0), sgn * coalesce(r.h13, 0), sgn * coalesce(r.h14, 0), sgn * coalesce(r.h15, 0), sgn * coalesce(r.h16, 0), sgn * coalesce(r.h17, 0), sgn * coalesce(r.h18, 0), sgn * coalesce(r.h19, 0), sgn * coalesce(r.h20, 0), sgn * coalesce(r.h21, 0), sgn * coalesce(r.h22, 0), sgn * coalesce(r.h23, 0)
    FROM report_call_rows r CROSS JOIN report_kinds k
    WHERE r.started_at = at AND r.id = call_id
    ON CONFLICT (kind, hour, value) DO UPDATE SET calls = t.calls + excluded.calls, answered_any = t.answered_any + excluded.answered_any, offered = t.offered + excluded.offered, answered = t.answered + excluded.answered, missed = t.missed + excluded.missed, abandoned = t.abandoned + excluded.abandoned, short_abandoned = t.short_abandoned + excluded.short_abandoned, in_sl = t.in_sl + excluded.in_sl, wait_sum = t.wait_sum + excluded.wait_sum, wait_n = t.wait_n + excluded.wait_n, handle_sum = t.handle_sum + excluded.handle_sum, rna = t.rna + excluded.rna, transfers = t.transfers + excluded.transfers, ctc = t.ctc + excluded.ctc, ctc_connected = t.ctc_connected + excluded.ctc_connected, outbound = t.outbound + excluded.outbound, outbound_answered = t.outbound_answered + excluded.outbound_answered, h0 = t.h0 + excluded.h0, h1 = t.h1 + excluded.h1, h2 = t.h2 + excluded.h2, h3 = t.h3 + excluded.h3, h4 = t.h4 + excluded.h4, h5 = t.h5 + excluded.h5, h6 = t.h6 + excluded.h6, h7 = t.h7 + excluded.h7, h8 = t.h8 + excluded.h8, h9 = t.h9 + excluded.h9, h10 = t.h10 + excluded.h10, h11 = t.h11 + excluded.h11, h12 = t.h12 + excluded.h12, h13 = t.h13 + excluded.h13, h14 = t.h14 + excluded.h14, h15 = t.h15 + excluded.h15, h16 = t.h16 + excluded.h16, h17 = t.h17 + excluded.h17, h18 = t.h18 + excluded.h18, h19 = t.h19 + excluded.h19, h20 = t.h20 + excluded.h20, h21 = t.h21 + excluded.h21, h22 = t.h22 + excluded.h22, h23 = t.h23 + excluded.h23;
    INSERT INTO report_days AS t (kind, day, value, calls, answered_any, offered, answered, missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
    SELECT k.kind, r.hour / 24, CASE k.kind WHEN 'queue' THEN r.queue WHEN 'did' THEN r.did
               WHEN 'campaign' THEN coalesce(r.campaign_id::text, '')
               WHEN 'disposition' THEN r.disposition ELSE '' END, sgn * coalesce(r.calls, 0), sgn * coalesce(r.answered_any, 0), sgn * coalesce(r.offered, 0), sgn * coalesce(r.answered, 0), sgn * coalesce(r.missed, 0), sgn * coalesce(r.abandoned, 0), sgn * coalesce(r.short_abandoned, 0), sgn * coalesce(r.in_sl, 0), sgn * coalesce(r.wait_sum, 0), sgn * coalesce(r.wait_n, 0), sgn * coalesce(r.handle_sum, 0), sgn * coalesce(r.rna, 0), sgn * coalesce(r.transfers, 0), sgn * coalesce(r.ctc, 0), sgn * coalesce(r.ctc_connected, 0), sgn * coalesce(r.outbound, 0), sgn * coalesce(r.outbound_answered, 0), sgn * coalesce(r.h0, 0), sgn * coalesce(r.h1, 0), sgn * coalesce(r.h2, 0), sgn * coalesce(r.h3, 0), sgn * coalesce(r.h4, 0), sgn * coalesce(r.h5, 0), sgn * coalesce(r.h6, 0), sgn * coalesce(r.h7, 0), sgn * coalesce(r.h8, 0), sgn * coalesce(r.h9, 0), sgn * coalesce(r.h10, 0), sgn * coalesce(r.h11, 0), sgn * coalesce(r.h12, 0), sgn * coalesce(r.h13, 0), sgn * coalesce(r.h14, 0), sgn * coalesce(r.h15, 0), sgn * coalesce(r.h16, 0), sgn * coalesce(r.h17, 0), sgn * coalesce(r.h18, 0), sgn * coalesce(r.h19, 0), sgn * coalesce(r.h20, 0), sgn * coalesce(r.h21, 0), sgn * coalesce(r.h22, 0), sgn * coalesce(r.h23, 0)
    FROM report_call_rows r CROSS JOIN report_kinds k
    WHERE r.started_at = at AND r.id = call_id
    ON CONFLICT (kind, day, value) DO UPDATE SET calls = t.calls + excluded.calls, answered_any = t.answered_any + excluded.answered_any, offered = t.offered + excluded.offered, answered = t.answered + excluded.answered, missed = t.missed + excluded.missed, abandoned = t.abandoned + excluded.abandoned, short_abandoned = t.short_abandoned + excluded.short_abandoned, in_sl = t.in_sl + excluded.in_sl, wait_sum = t.wait_sum + excluded.wait_sum, wait_n = t.wait_n + excluded.wait_n, handle_sum = t.handle_sum + excluded.handle_sum, rna = t.rna + excluded.rna, transfers = t.transfers + excluded.transfers, ctc = t.ctc + excluded.ctc, ctc_connected = t.ctc_connected + excluded.ctc_connected, outbound = t.outbound + excluded.outbound, outbound_answered = t.outbound_answered + excluded.outbound_answered, h0 = t.h0 + excluded.h0, h1 = t.h1 + excluded.h1, h2 = t.h2 + excluded.h2, h3 = t.h3 + excluded.h3, h4 = t.h4 + excluded.h4, h5 = t.h5 + excluded.h5, h6 = t.h6 + excluded.h6, h7 = t.h7 + excluded.h7, h8 = t.h8 + excluded.h8, h9 = t.h9 + excluded.h9, h10 = t.h10 + excluded.h10, h11 = t.h11 + excluded.h11, h12 = t.h12 + excluded.h12, h13 = t.h13 + excluded.h13, h14 = t.h14 + excluded.h14, h15 = t.h15 + excluded.h15, h16 = t.h16 + excluded.h16, h17 = t.h17 + excluded.h17, h18 = t.h18 + excluded.h18, h19 = t.h19 + excluded.h19, h20 = t.h20 + excluded.h20, h21 = t.h21 + excluded.h21, h22 = t.h22 + excluded.h22, h23 = t.h23 + excluded.h23;
    IF sgn < 0 THEN
        DELETE FROM report_hours WHERE hour = trunc(at)::bigint / 3600 AND calls = 0;
        DELETE FROM report_days WHERE day = trunc(at)::bigint / 3600 / 24 AND calls = 0;
    END IF;
END $$;

CREATE FUNCTION report_agent_apply(sgn bigint, at DOUBLE PRECISION, call_id TEXT, ext TEXT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_agent_hours AS t (hour, agent, queue, calls, answered_any, offered, answered, missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
    SELECT r.hour, r.agent, r.queue, sgn * coalesce(r.calls, 0), sgn * coalesce(r.answered_any, 0), sgn * coalesce(r.offered, 0), sgn * coalesce(r.answered, 0), sgn * coalesce(r.missed, 0), sgn * coalesce(r.abandoned, 0), sgn * coalesce(r.short_abandoned, 0), sgn * coalesce(r.in_sl, 0), sgn * coalesce(r.wait_sum, 0), sgn * coalesce(r.wait_n, 0), sgn * coalesce(r.handle_sum, 0), sgn * coalesce(r.rna, 0), sgn * coalesce(r.transfers, 0), sgn * coalesce(r.ctc, 0), sgn * coalesce(r.ctc_connected, 0), sgn * coalesce(r.outbound, 0), sgn * coalesce(r.outbound_answered, 0), sgn * coalesce(r.h0, 0), sgn * coalesce(r.h1, 0), sgn * coalesce(r.h2, 0), sgn * coalesce(r.h3, 0), sgn * coalesce(r.h4, 0), sgn * coalesce(r.h5, 0), sgn * coalesce(r.h6, 0), sgn * coalesce(r.h7, 0), sgn * coalesce(r.h8, 0), sgn * coalesce(r.h9, 0), sgn * coalesce(r.h10, 0), sgn * coalesce(r.h11, 0), sgn * coalesce(r.h12, 0), sgn * coalesce(r.h13, 0), sgn * coalesce(r.h14, 0), sgn * coalesce(r.h15, 0), sgn * coalesce(r.h16, 0), sgn * coalesce(r.h17, 0), sgn * coalesce(r.h18, 0), sgn * coalesce(r.h19, 0), sgn * coalesce(r.h20, 0), sgn * coalesce(r.h21, 0), sgn * coalesce(r.h22, 0), sgn * coalesce(r.h23, 0)
    FROM report_agent_rows r
    WHERE r.started_at = at AND r.id = call_id AND r.agent = ext
    ON CONFLICT (hour, agent, queue) DO UPDATE SET calls = t.calls + excluded.calls, answered_any = t.answered_any + excluded.answered_any, offered = t.offered + excluded.offered, answered = t.answered + excluded.answered, missed = t.missed + excluded.missed, abandoned = t.abandoned + excluded.abandoned, short_abandoned = t.short_abandoned + excluded.short_abandoned, in_sl = t.in_sl + excluded.in_sl, wait_sum = t.wait_sum + excluded.wait_sum, wait_n = t.wait_n + excluded.wait_n, handle_sum = t.handle_sum + excluded.handle_sum, rna = t.rna + excluded.rna, transfers = t.transfers + excluded.transfers, ctc = t.ctc + excluded.ctc, ctc_connected = t.ctc_connected + excluded.ctc_connected, outbound = t.outbound + excluded.outbound, outbound_answered = t.outbound_answered + excluded.outbound_answered, h0 = t.h0 + excluded.h0, h1 = t.h1 + excluded.h1, h2 = t.h2 + excluded.h2, h3 = t.h3 + excluded.h3, h4 = t.h4 + excluded.h4, h5 = t.h5 + excluded.h5, h6 = t.h6 + excluded.h6, h7 = t.h7 + excluded.h7, h8 = t.h8 + excluded.h8, h9 = t.h9 + excluded.h9, h10 = t.h10 + excluded.h10, h11 = t.h11 + excluded.h11, h12 = t.h12 + excluded.h12, h13 = t.h13 + excluded.h13, h14 = t.h14 + excluded.h14, h15 = t.h15 + excluded.h15, h16 = t.h16 + excluded.h16, h17 = t.h17 + excluded.h17, h18 = t.h18 + excluded.h18, h19 = t.h19 + excluded.h19, h20 = t.h20 + excluded.h20, h21 = t.h21 + excluded.h21, h22 = t.h22 + excluded.h22, h23 = t.h23 + excluded.h23;
    INSERT INTO report_agent_days AS t (day, agent, calls, answered_any, offered, answered, missed, abandoned, short_abandoned, in_sl, wait_sum, wait_n, handle_sum, rna, transfers, ctc, ctc_connected, outbound, outbound_answered, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23)
    SELECT r.hour / 24, r.agent, sgn * coalesce(r.calls, 0), sgn * coalesce(r.answered_any, 0), sgn * coalesce(r.offered, 0), sgn * coalesce(r.answered, 0), sgn * coalesce(r.missed, 0), sgn * coalesce(r.abandoned, 0), sgn * coalesce(r.short_abandoned, 0), sgn * coalesce(r.in_sl, 0), sgn * coalesce(r.wait_sum, 0), sgn * coalesce(r.wait_n, 0), sgn * coalesce(r.handle_sum, 0), sgn * coalesce(r.rna, 0), sgn * coalesce(r.transfers, 0), sgn * coalesce(r.ctc, 0), sgn * coalesce(r.ctc_connected, 0), sgn * coalesce(r.outbound, 0), sgn * coalesce(r.outbound_answered, 0), sgn * coalesce(r.h0, 0), sgn * coalesce(r.h1, 0), sgn * coalesce(r.h2, 0), sgn * coalesce(r.h3, 0), sgn * coalesce(r.h4, 0), sgn * coalesce(r.h5, 0), sgn * coalesce(r.h6, 0), sgn * coalesce(r.h7, 0), sgn * coalesce(r.h8, 0), sgn * coalesce(r.h9, 0), sgn * coalesce(r.h10, 0), sgn * coalesce(r.h11, 0), sgn * coalesce(r.h12, 0), sgn * coalesce(r.h13, 0), sgn * coalesce(r.h14, 0), sgn * coalesce(r.h15, 0), sgn * coalesce(r.h16, 0), sgn * coalesce(r.h17, 0), sgn * coalesce(r.h18, 0), sgn * coalesce(r.h19, 0), sgn * coalesce(r.h20, 0), sgn * coalesce(r.h21, 0), sgn * coalesce(r.h22, 0), sgn * coalesce(r.h23, 0)
    FROM report_agent_rows r
    WHERE r.started_at = at AND r.id = call_id AND r.agent = ext
    ON CONFLICT (day, agent) DO UPDATE SET calls = t.calls + excluded.calls, answered_any = t.answered_any + excluded.answered_any, offered = t.offered + excluded.offered, answered = t.answered + excluded.answered, missed = t.missed + excluded.missed, abandoned = t.abandoned + excluded.abandoned, short_abandoned = t.short_abandoned + excluded.short_abandoned, in_sl = t.in_sl + excluded.in_sl, wait_sum = t.wait_sum + excluded.wait_sum, wait_n = t.wait_n + excluded.wait_n, handle_sum = t.handle_sum + excluded.handle_sum, rna = t.rna + excluded.rna, transfers = t.transfers + excluded.transfers, ctc = t.ctc + excluded.ctc, ctc_connected = t.ctc_connected + excluded.ctc_connected, outbound = t.outbound + excluded.outbound, outbound_answered = t.outbound_answered + excluded.outbound_answered, h0 = t.h0 + excluded.h0, h1 = t.h1 + excluded.h1, h2 = t.h2 + excluded.h2, h3 = t.h3 + excluded.h3, h4 = t.h4 + excluded.h4, h5 = t.h5 + excluded.h5, h6 = t.h6 + excluded.h6, h7 = t.h7 + excluded.h7, h8 = t.h8 + excluded.h8, h9 = t.h9 + excluded.h9, h10 = t.h10 + excluded.h10, h11 = t.h11 + excluded.h11, h12 = t.h12 + excluded.h12, h13 = t.h13 + excluded.h13, h14 = t.h14 + excluded.h14, h15 = t.h15 + excluded.h15, h16 = t.h16 + excluded.h16, h17 = t.h17 + excluded.h17, h18 = t.h18 + excluded.h18, h19 = t.h19 + excluded.h19, h20 = t.h20 + excluded.h20, h21 = t.h21 + excluded.h21, h22 = t.h22 + excluded.h22, h23 = t.h23 + excluded.h23;
    IF sgn < 0 THEN
        DELETE FROM report_agent_hours
            WHERE hour = trunc(at)::bigint / 3600 AND agent = ext AND calls = 0;
        DELETE FROM report_agent_days
            WHERE day = trunc(at)::bigint / 3600 / 24 AND agent = ext AND calls = 0;
    END IF;
END $$;

CREATE VIEW report_callback_source AS
SELECT started_at, id, d, queue, did, campaign_id, disposition FROM (
    SELECT f.started_at, f.id, f.queue, f.did, f.campaign_id, f.disposition,
           (SELECT min(o.started_at) FROM calls o
             WHERE o.direction = 'outbound' AND o.other_e164 = f.number
               AND o.started_at > f.started_at AND o.started_at <= f.started_at + 604800.0)
           - f.started_at AS d
    FROM call_facts f
    WHERE f.dir = 0 AND f.answered = 0 AND f.number IS NOT NULL) AS cb
WHERE d IS NOT NULL;

INSERT INTO report_callbacks SELECT * FROM report_callback_source;

-- the call-back of one missed call found again
CREATE FUNCTION report_callback_put(at DOUBLE PRECISION, call_id TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM report_callbacks WHERE started_at = at AND id = call_id;
    INSERT INTO report_callbacks SELECT * FROM report_callback_source
        WHERE started_at = at AND id = call_id;
END $$;

-- an outbound call (dir 1) to a number may be the call-back of missed calls from it
CREATE FUNCTION report_callbacks_of(dir BIGINT, num TEXT, at DOUBLE PRECISION) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c RECORD;
BEGIN
    IF dir <> 1 THEN
        RETURN;
    END IF;
    FOR c IN SELECT started_at, id FROM calls
             WHERE caller_e164 = num AND started_at >= at - 604801.0 AND started_at < at + 1.0
    LOOP
        PERFORM report_callback_put(c.started_at, c.id);
    END LOOP;
END $$;

-- The facts' triggers: what a fact adds is taken out before it changes or goes, and added
-- once it is there, its handle time first.
CREATE FUNCTION report_facts_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM report_apply(-1, OLD.started_at, OLD.id);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION report_facts_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM report_handles WHERE started_at = OLD.started_at AND id = OLD.id;
        DELETE FROM report_callbacks WHERE started_at = OLD.started_at AND id = OLD.id;
        PERFORM report_callbacks_of(OLD.dir, OLD.number, OLD.started_at);
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    INSERT INTO report_handles SELECT * FROM report_handle_source
        WHERE started_at = NEW.started_at AND id = NEW.id;
    PERFORM report_apply(1, NEW.started_at, NEW.id);
    PERFORM report_callback_put(NEW.started_at, NEW.id);
    PERFORM report_callbacks_of(NEW.dir, NEW.number, NEW.started_at);
    RETURN NEW;
END $$;

CREATE TRIGGER report_facts_before_delete BEFORE DELETE ON call_facts
    FOR EACH ROW EXECUTE FUNCTION report_facts_before();
CREATE TRIGGER report_facts_before_update BEFORE UPDATE ON call_facts
    FOR EACH ROW EXECUTE FUNCTION report_facts_before();
CREATE TRIGGER report_facts_insert AFTER INSERT ON call_facts
    FOR EACH ROW EXECUTE FUNCTION report_facts_after();
CREATE TRIGGER report_facts_delete AFTER DELETE ON call_facts
    FOR EACH ROW EXECUTE FUNCTION report_facts_after();
CREATE TRIGGER report_facts_update AFTER UPDATE ON call_facts
    FOR EACH ROW EXECUTE FUNCTION report_facts_after();

CREATE FUNCTION report_agent_facts_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM report_agent_apply(-1, OLD.started_at, OLD.id, OLD.agent);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION report_agent_facts_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM report_agent_handles
            WHERE started_at = OLD.started_at AND id = OLD.id AND agent = OLD.agent;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    INSERT INTO report_agent_handles SELECT * FROM report_agent_handle_source
        WHERE started_at = NEW.started_at AND id = NEW.id AND agent = NEW.agent;
    PERFORM report_agent_apply(1, NEW.started_at, NEW.id, NEW.agent);
    RETURN NEW;
END $$;

CREATE TRIGGER report_agent_facts_before_delete BEFORE DELETE ON call_agent_facts
    FOR EACH ROW EXECUTE FUNCTION report_agent_facts_before();
CREATE TRIGGER report_agent_facts_before_update BEFORE UPDATE ON call_agent_facts
    FOR EACH ROW EXECUTE FUNCTION report_agent_facts_before();
CREATE TRIGGER report_agent_facts_insert AFTER INSERT ON call_agent_facts
    FOR EACH ROW EXECUTE FUNCTION report_agent_facts_after();
CREATE TRIGGER report_agent_facts_delete AFTER DELETE ON call_agent_facts
    FOR EACH ROW EXECUTE FUNCTION report_agent_facts_after();
CREATE TRIGGER report_agent_facts_update AFTER UPDATE ON call_agent_facts
    FOR EACH ROW EXECUTE FUNCTION report_agent_facts_after();
