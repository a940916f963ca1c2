-- Version 14: the reports' facts (gateway/reports/). One narrow row per call (call_facts) and
-- one per call and agent phone that rang, answered or placed it (call_agent_facts), clustered
-- by start time, so a month of a few hundred thousand calls is one range scan of small rows
-- instead of the wide call log. Triggers on `calls` keep them up to date as calls are saved,
-- corrected, wrapped up or deleted: no writer of the call log can forget them.
--
-- dir: 0 inbound, 1 outbound, 2 internal, 3 unknown. answered: the call was answered;
-- took: this row's agent answered it (call_facts: = answered). wait: seconds in the queue
-- (queue_wait_seconds; else start -> answer for an answered call, start -> end for an
-- abandoned one: what the wallboard counts). rna: phones that rang and did not take the call.
-- number: the outside party in E.164 (inbound: the caller; outbound: the number dialed).
-- wrapped_at: when the wrap-up (notes/disposition) was first saved (after-call work).
CREATE TABLE call_wrapups (
    call_id     TEXT PRIMARY KEY,
    at          REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE call_facts (
    started_at  REAL NOT NULL,
    id          TEXT NOT NULL,
    dir         INTEGER NOT NULL,
    queue       TEXT NOT NULL,
    did         TEXT NOT NULL,
    agent       TEXT NOT NULL,
    campaign_id INTEGER,
    answered    INTEGER NOT NULL,
    took        INTEGER NOT NULL,
    abandoned   INTEGER NOT NULL,
    wait        REAL,
    talk        REAL NOT NULL,
    ended_at    REAL,
    wrapped_at  REAL,
    transfers   INTEGER NOT NULL,
    rna         INTEGER NOT NULL,
    ctc         INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    number      TEXT,
    PRIMARY KEY (started_at, id)
) WITHOUT ROWID;
CREATE INDEX call_facts_queue ON call_facts (queue, started_at) WHERE queue != '';
CREATE INDEX call_facts_did ON call_facts (did, started_at) WHERE did != '';
CREATE INDEX call_facts_campaign ON call_facts (campaign_id, started_at)
    WHERE campaign_id IS NOT NULL;

CREATE TABLE call_agent_facts (
    started_at  REAL NOT NULL,
    id          TEXT NOT NULL,
    agent       TEXT NOT NULL,              -- the extension
    dir         INTEGER NOT NULL,
    queue       TEXT NOT NULL,
    did         TEXT NOT NULL,
    campaign_id INTEGER,
    answered    INTEGER NOT NULL,
    took        INTEGER NOT NULL,
    abandoned   INTEGER NOT NULL,
    wait        REAL,
    talk        REAL NOT NULL,
    ended_at    REAL,
    wrapped_at  REAL,
    transfers   INTEGER NOT NULL,
    rna         INTEGER NOT NULL,
    ctc         INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    number      TEXT,
    PRIMARY KEY (started_at, id, agent)
) WITHOUT ROWID;
CREATE INDEX call_agent_facts_agent ON call_agent_facts (agent, started_at);

-- call-backs of a missed call: the first outbound call to its number after it
CREATE INDEX calls_callback ON calls (other_e164, started_at) WHERE direction = 'outbound';

-- What call_facts holds for each call (read by the triggers and the backfill below).
CREATE VIEW call_facts_source AS
SELECT
    c.started_at,
    c.id,
    CASE c.direction WHEN 'inbound' THEN 0 WHEN 'outbound' THEN 1 WHEN 'internal' THEN 2
        ELSE 3 END AS dir,
    c.queue,
    c.did,
    CASE WHEN c.direction = 'inbound' OR c.caller_e164 IS NOT NULL THEN c.answered_by
        ELSE c.caller END AS agent,
    (SELECT min(m.campaign_id) FROM campaign_members m
      WHERE m.person_id = c.person_id AND m.entered_at <= c.started_at
        AND (m.left_at IS NULL OR m.left_at >= c.started_at)) AS campaign_id,
    c.outcome IN ('answered', 'transferred') AS answered,
    c.outcome IN ('answered', 'transferred') AS took,
    c.outcome = 'abandoned' AS abandoned,
    CASE WHEN c.outcome IN ('answered', 'transferred') THEN
             coalesce(c.queue_wait_seconds, max(coalesce(c.answered_at, c.started_at) - c.started_at, 0))
         WHEN c.outcome = 'abandoned' THEN
             coalesce(c.queue_wait_seconds, max(coalesce(c.ended_at, c.started_at) - c.started_at, 0))
    END AS wait,
    max(coalesce(c.talk_seconds, 0), 0) AS talk,
    c.ended_at,
    (SELECT w.at FROM call_wrapups w WHERE w.call_id = c.id) AS wrapped_at,
    json_array_length(c.transfers) AS transfers,
    (SELECT count(*) FROM json_each(c.agents_rang) r
      WHERE r.value NOT IN (SELECT a.value FROM json_each(c.agents_answered) a)
        AND r.value != c.answered_by) AS rna,
    c.click_to_call AS ctc,
    c.disposition,
    CASE WHEN c.direction = 'outbound' THEN c.other_e164 ELSE c.caller_e164 END AS number
FROM calls c;

-- ... and call_agent_facts: one row per extension on the call, from that agent's side (the
-- phones that rang, those that answered, and the agent who placed an outbound call).
CREATE VIEW call_agent_facts_source AS
SELECT
    f.started_at, f.id, e.value AS agent, f.dir, f.queue, f.did, f.campaign_id, f.answered,
    (e.value = c.answered_by
        OR e.value IN (SELECT a.value FROM json_each(c.agents_answered) a)) AS took,
    f.abandoned, f.wait, f.talk, f.ended_at, f.wrapped_at, f.transfers,
    (f.dir = 0 AND e.value IN (SELECT r.value FROM json_each(c.agents_rang) r)
        AND e.value != c.answered_by
        AND e.value NOT IN (SELECT a.value FROM json_each(c.agents_answered) a)) AS rna,
    f.ctc, f.disposition, f.number
FROM call_facts_source f
JOIN calls c ON c.id = f.id
JOIN json_each(json_array(
        json(c.agents_rang), json(c.agents_answered), json_array(c.answered_by),
        json_array(CASE WHEN c.direction != 'inbound' AND c.caller_e164 IS NULL
                        THEN c.caller ELSE '' END))) p
JOIN json_each(p.value) e
WHERE e.value != '';  -- an extension both rang and answered: INSERT OR IGNORE keeps one

INSERT INTO call_facts SELECT * FROM call_facts_source;
INSERT OR IGNORE INTO call_agent_facts SELECT * FROM call_agent_facts_source;

CREATE TRIGGER calls_facts_insert AFTER INSERT ON calls BEGIN
    INSERT OR REPLACE INTO call_facts SELECT * FROM call_facts_source WHERE id = NEW.id;
    INSERT OR IGNORE INTO call_agent_facts
        SELECT * FROM call_agent_facts_source WHERE id = NEW.id;
END;

CREATE TRIGGER calls_facts_update AFTER UPDATE ON calls BEGIN
    DELETE FROM call_facts WHERE started_at = OLD.started_at AND id = OLD.id;
    DELETE FROM call_agent_facts WHERE started_at = OLD.started_at AND id = OLD.id;
    INSERT OR REPLACE INTO call_facts SELECT * FROM call_facts_source WHERE id = NEW.id;
    INSERT OR IGNORE INTO call_agent_facts
        SELECT * FROM call_agent_facts_source WHERE id = NEW.id;
END;

-- a wrap-up saved (CallLog.annotate): after-call work ends now, the first time only
CREATE TRIGGER calls_facts_wrapup AFTER UPDATE OF notes, disposition ON calls BEGIN
    INSERT OR IGNORE INTO call_wrapups (call_id, at)
        VALUES (NEW.id, (julianday('now') - 2440587.5) * 86400.0);
    UPDATE call_facts SET wrapped_at = (SELECT at FROM call_wrapups WHERE call_id = NEW.id)
        WHERE started_at = NEW.started_at AND id = NEW.id;
    UPDATE call_agent_facts SET wrapped_at = (SELECT at FROM call_wrapups WHERE call_id = NEW.id)
        WHERE started_at = NEW.started_at AND id = NEW.id;
END;

CREATE TRIGGER calls_facts_delete AFTER DELETE ON calls BEGIN
    DELETE FROM call_facts WHERE started_at = OLD.started_at AND id = OLD.id;
    DELETE FROM call_agent_facts WHERE started_at = OLD.started_at AND id = OLD.id;
    DELETE FROM call_wrapups WHERE call_id = OLD.id;
END;
