-- PostgreSQL: the tables and indexes only. The report derivation (the *_source views and
-- the triggers that keep call_facts and the rollups up to date as calls are written) is
-- SQLite-only so far: on PostgreSQL these tables stay empty and the reports show nothing.
-- Porting it (PL/pgSQL triggers, jsonb_array_elements_text for json_each) is future work.
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

-- What call_facts holds for each call (read by the triggers and the backfill below).

-- ... and call_agent_facts: one row per extension on the call, from that agent's side (the
-- phones that rang, those that answered, and the agent who placed an outbound call).

-- a wrap-up saved (CallLog.annotate): after-call work ends now, the first time only

