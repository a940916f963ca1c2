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
    at          DOUBLE PRECISION NOT NULL
);

CREATE TABLE call_facts (
    started_at  DOUBLE PRECISION NOT NULL,
    id          TEXT NOT NULL,
    dir         BIGINT NOT NULL,
    queue       TEXT NOT NULL,
    did         TEXT NOT NULL,
    agent       TEXT NOT NULL,
    campaign_id BIGINT,
    answered    BIGINT NOT NULL,
    took        BIGINT NOT NULL,
    abandoned   BIGINT NOT NULL,
    wait        DOUBLE PRECISION,
    talk        DOUBLE PRECISION NOT NULL,
    ended_at    DOUBLE PRECISION,
    wrapped_at  DOUBLE PRECISION,
    transfers   BIGINT NOT NULL,
    rna         BIGINT NOT NULL,
    ctc         BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    number      TEXT,
    PRIMARY KEY (started_at, id)
);
CREATE INDEX call_facts_queue ON call_facts (queue, started_at) WHERE queue != '';
CREATE INDEX call_facts_did ON call_facts (did, started_at) WHERE did != '';
CREATE INDEX call_facts_campaign ON call_facts (campaign_id, started_at)
    WHERE campaign_id IS NOT NULL;

CREATE TABLE call_agent_facts (
    started_at  DOUBLE PRECISION NOT NULL,
    id          TEXT NOT NULL,
    agent       TEXT NOT NULL,              -- the extension
    dir         BIGINT NOT NULL,
    queue       TEXT NOT NULL,
    did         TEXT NOT NULL,
    campaign_id BIGINT,
    answered    BIGINT NOT NULL,
    took        BIGINT NOT NULL,
    abandoned   BIGINT NOT NULL,
    wait        DOUBLE PRECISION,
    talk        DOUBLE PRECISION NOT NULL,
    ended_at    DOUBLE PRECISION,
    wrapped_at  DOUBLE PRECISION,
    transfers   BIGINT NOT NULL,
    rna         BIGINT NOT NULL,
    ctc         BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    number      TEXT,
    PRIMARY KEY (started_at, id, agent)
);
CREATE INDEX call_agent_facts_agent ON call_agent_facts (agent, started_at);

-- call-backs of a missed call: the first outbound call to its number after it
CREATE INDEX calls_callback ON calls (other_e164, started_at) WHERE direction = 'outbound';

-- PostgreSQL: the same views and triggers as migrations/0014_reports.sql, in PostgreSQL's
-- words (json_array_elements_text for json_each, booleans stored as 0/1, greatest() for
-- SQLite's max(a, b), trigger functions).
CREATE VIEW call_facts_source AS
SELECT
    c.started_at,
    c.id,
    CASE c.direction WHEN 'inbound' THEN 0 WHEN 'outbound' THEN 1 WHEN 'internal' THEN 2
        ELSE 3 END::bigint AS dir,
    c.queue,
    c.did,
    CASE WHEN c.direction = 'inbound' OR c.caller_e164 IS NOT NULL THEN c.answered_by
        ELSE c.caller END AS agent,
    (SELECT min(m.campaign_id) FROM campaign_members m
      WHERE m.person_id = c.person_id AND m.entered_at <= c.started_at
        AND (m.left_at IS NULL OR m.left_at >= c.started_at)) AS campaign_id,
    (c.outcome IN ('answered', 'transferred'))::int::bigint AS answered,
    (c.outcome IN ('answered', 'transferred'))::int::bigint AS took,
    (c.outcome = 'abandoned')::int::bigint AS abandoned,
    CASE WHEN c.outcome IN ('answered', 'transferred') THEN
             coalesce(c.queue_wait_seconds, greatest(coalesce(c.answered_at, c.started_at) - c.started_at, 0))
         WHEN c.outcome = 'abandoned' THEN
             coalesce(c.queue_wait_seconds, greatest(coalesce(c.ended_at, c.started_at) - c.started_at, 0))
    END AS wait,
    greatest(coalesce(c.talk_seconds, 0), 0)::double precision AS talk,
    c.ended_at,
    (SELECT w.at FROM call_wrapups w WHERE w.call_id = c.id) AS wrapped_at,
    json_array_length(c.transfers::json)::bigint AS transfers,
    (SELECT count(*) FROM json_array_elements_text(c.agents_rang::json) AS r(value)
      WHERE r.value NOT IN (SELECT a.value
                            FROM json_array_elements_text(c.agents_answered::json) AS a(value))
        AND r.value != c.answered_by) AS rna,
    c.click_to_call AS ctc,
    c.disposition,
    CASE WHEN c.direction = 'outbound' THEN c.other_e164 ELSE c.caller_e164 END AS number
FROM calls c;

CREATE VIEW call_agent_facts_source AS
SELECT DISTINCT ON (f.started_at, f.id, e.value)
    f.started_at, f.id, e.value AS agent, f.dir, f.queue, f.did, f.campaign_id, f.answered,
    (e.value = c.answered_by
        OR e.value IN (SELECT a.value
                       FROM json_array_elements_text(c.agents_answered::json) AS a(value))
    )::int::bigint AS took,
    f.abandoned, f.wait, f.talk, f.ended_at, f.wrapped_at, f.transfers,
    (f.dir = 0
        AND e.value IN (SELECT r.value
                        FROM json_array_elements_text(c.agents_rang::json) AS r(value))
        AND e.value != c.answered_by
        AND e.value NOT IN (SELECT a.value
                            FROM json_array_elements_text(c.agents_answered::json) AS a(value))
    )::int::bigint AS rna,
    f.ctc, f.disposition, f.number
FROM call_facts_source f
JOIN calls c ON c.id = f.id
CROSS JOIN LATERAL (
    SELECT value FROM json_array_elements_text(c.agents_rang::json) AS rang(value)
    UNION ALL
    SELECT value FROM json_array_elements_text(c.agents_answered::json) AS took(value)
    UNION ALL
    SELECT c.answered_by
    UNION ALL
    SELECT CASE WHEN c.direction != 'inbound' AND c.caller_e164 IS NULL THEN c.caller ELSE '' END
) AS e(value)
WHERE e.value != '';

INSERT INTO call_facts SELECT * FROM call_facts_source;
INSERT INTO call_agent_facts SELECT * FROM call_agent_facts_source ON CONFLICT DO NOTHING;

CREATE FUNCTION calls_facts_put(call_id TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO call_facts SELECT * FROM call_facts_source WHERE id = call_id;
    INSERT INTO call_agent_facts SELECT * FROM call_agent_facts_source WHERE id = call_id
        ON CONFLICT DO NOTHING;
END $$;

CREATE FUNCTION calls_facts_drop(at DOUBLE PRECISION, call_id TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM call_facts WHERE started_at = at AND id = call_id;
    DELETE FROM call_agent_facts WHERE started_at = at AND id = call_id;
END $$;

CREATE FUNCTION calls_facts_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM calls_facts_drop(OLD.started_at, OLD.id);
    END IF;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM call_wrapups WHERE call_id = OLD.id;
        RETURN OLD;
    END IF;
    PERFORM calls_facts_put(NEW.id);
    RETURN NEW;
END $$;

CREATE TRIGGER calls_facts AFTER INSERT OR UPDATE OR DELETE ON calls
    FOR EACH ROW EXECUTE FUNCTION calls_facts_trigger();

-- a wrap-up saved (CallLog.annotate): after-call work ends now, the first time only (runs
-- after calls_facts: triggers fire in name order)
CREATE FUNCTION calls_facts_wrapup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO call_wrapups (call_id, at)
        VALUES (NEW.id, extract(epoch FROM clock_timestamp())) ON CONFLICT DO NOTHING;
    UPDATE call_facts SET wrapped_at = (SELECT at FROM call_wrapups WHERE call_id = NEW.id)
        WHERE started_at = NEW.started_at AND id = NEW.id;
    UPDATE call_agent_facts SET wrapped_at = (SELECT at FROM call_wrapups WHERE call_id = NEW.id)
        WHERE started_at = NEW.started_at AND id = NEW.id;
    RETURN NEW;
END $$;

CREATE TRIGGER calls_facts_wrapup AFTER UPDATE OF notes, disposition ON calls
    FOR EACH ROW EXECUTE FUNCTION calls_facts_wrapup();
