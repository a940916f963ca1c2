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

-- The sums each rollup row holds after its key (report_call_rows says what a call adds to
-- each), listed once: the four rollup tables take them (LIKE), and the backfill and the
-- triggers' upserts below are written from this list (pg_temp.report_add). A temporary
-- table, dropped at the end: migrate-store copies the tables SQLite has, and no others.
CREATE TEMPORARY TABLE report_sums (
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
    outbound_answered BIGINT NOT NULL
);
-- h0..h23: the answered calls whose handle time is in that bin
DO $$
BEGIN
    FOR b IN 0..23 LOOP
        EXECUTE format('ALTER TABLE pg_temp.report_sums ADD COLUMN h%s BIGINT NOT NULL', b);
    END LOOP;
END $$;

-- `fmt` formatted with each of `names` (%1$I), joined by `sep`; with each sum's name, in the
-- rollup tables' order (report_sum_list)
CREATE FUNCTION pg_temp.report_list(fmt TEXT, names TEXT[], sep TEXT DEFAULT ', ') RETURNS TEXT
LANGUAGE sql AS $$
    SELECT string_agg(format(fmt, n), sep ORDER BY i) FROM unnest(names) WITH ORDINALITY AS u(n, i)
$$;
CREATE FUNCTION pg_temp.report_sum_list(fmt TEXT) RETURNS TEXT LANGUAGE sql AS $$
    SELECT pg_temp.report_list(fmt, array_agg(attname::text ORDER BY attnum)) FROM pg_attribute
    WHERE attrelid = 'pg_temp.report_sums'::regclass AND attnum > 0 AND NOT attisdropped
$$;

-- An INSERT into the rollup table `rollup` (its key columns `key`, then every sum) of the
-- rows SELECT `key_values`, then each sum as `each` formats it, FROM `source`; a row whose
-- key is there already adds its sums to that row's. The backfill and the triggers' functions
-- below write every rollup table with it.
CREATE FUNCTION pg_temp.report_add(rollup TEXT, key TEXT, key_values TEXT, each TEXT, source TEXT)
RETURNS TEXT LANGUAGE sql AS $$
    SELECT format('INSERT INTO %I AS t (%s, %s) SELECT %s, %s FROM %s'
                  ' ON CONFLICT (%s) DO UPDATE SET %s',
                  rollup, key, pg_temp.report_sum_list('%I'), key_values,
                  pg_temp.report_sum_list(each), source,
                  key, pg_temp.report_sum_list('%1$I = t.%1$I + excluded.%1$I'))
$$;

CREATE TABLE report_hours (
    kind  TEXT NOT NULL,
    hour  BIGINT NOT NULL,   -- CAST(started_at AS BIGINT) / 3600: UTC
    value TEXT NOT NULL,     -- as stored; campaign: its id, '' for none
    LIKE pg_temp.report_sums,
    PRIMARY KEY (kind, hour, value)
);
CREATE INDEX report_hours_value ON report_hours (kind, value, hour);

CREATE TABLE report_days (
    kind  TEXT NOT NULL,
    day   BIGINT NOT NULL,   -- hour / 24: UTC
    value TEXT NOT NULL,
    LIKE pg_temp.report_sums,
    PRIMARY KEY (kind, day, value)
);

CREATE TABLE report_agent_hours (
    hour  BIGINT NOT NULL,
    agent TEXT NOT NULL,
    queue TEXT NOT NULL,
    LIKE pg_temp.report_sums,
    PRIMARY KEY (hour, agent, queue)
);
CREATE INDEX report_agent_hours_agent ON report_agent_hours (agent, hour);
CREATE INDEX report_agent_hours_queue ON report_agent_hours (queue, hour);

-- (per agent only: transfers put an agent in many queues, and the queues multiply the rows)
CREATE TABLE report_agent_days (
    day   BIGINT NOT NULL,
    agent TEXT NOT NULL,
    LIKE pg_temp.report_sums,
    PRIMARY KEY (day, agent)
);

-- SQLite's queue of facts to add to their rollup rows (sign 1) or take from them (-1). Here
-- the facts' triggers call <p>_apply instead and these stay empty: kept so both engines have
-- the same tables (migrate-store copies table by table).
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
-- SQLite's max(a, b) and min(a, b) of two values (NULL if either is), which store queries use
CREATE FUNCTION max(a double precision, b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT greatest(a, b) $$;
CREATE FUNCTION min(a double precision, b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT least(a, b) $$;
CREATE FUNCTION max(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT greatest(a, b) $$;
CREATE FUNCTION min(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT least(a, b) $$;

-- What a fact adds to the rollups, and the function that adds it or takes it out, written
-- once for both kinds of fact (each row `c` below: a call, in call_facts; an agent phone's
-- part in one, in call_agent_facts), c.p the prefix of their tables and function:
-- * view <p>_handle_source: the handle time in whole seconds of an answered inbound call, a
--   row of <p>_handles (its bin: how many of calls.HANDLE_BIN_EDGES it reaches);
-- * view c.sums (report_call_rows, report_agent_rows): what a fact adds to each sum of its
--   rollup rows, the bin of its handle time read back from <p>_handles;
-- * <p>_apply(sgn, at, call_id[, ext]): a fact's handle time and its sums added to its
--   hour's and its day's rollup rows (sgn 1), or taken from them (-1, while the fact is
--   still in its table as it was), rows left at no calls deleted. Those are found by their
--   keys: report_hours' starts with the kind, and a delete by hour alone read all of its
--   index (a wrap-up took 27 ms with a year of rows; 5 ms so). The facts' triggers call it.
-- The backfill fills each table with the same upserts, summing every fact (as
-- calls.rebuild_statements does for a range of days, but for the days from their hours).
DO $do$
DECLARE
    -- talk and after-call work, capped at the config's (all of it while not wrapped up)
    handle CONSTANT TEXT := 'f.talk + CASE WHEN f.wrapped_at IS NULL OR f.ended_at IS NULL'
        ' THEN s.after_call ELSE least(greatest(f.wrapped_at - f.ended_at, 0.0), s.after_call)'
        ' END';
    -- report_sums' but h0..h23; %s: handle
    sums CONSTANT TEXT := $q$
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
    CASE WHEN f.dir = 0 AND f.took <> 0 THEN (%s) END AS handle_sum,
    CASE WHEN f.dir = 0 THEN f.rna END AS rna,
    CASE WHEN f.took <> 0 OR f.dir = 1 THEN f.transfers END AS transfers,
    (f.dir = 1 AND f.ctc <> 0)::int AS ctc,
    (f.dir = 1 AND f.ctc <> 0 AND f.answered <> 0)::int AS ctc_connected,
    (f.dir = 1)::int AS outbound,
    (f.dir = 1 AND f.answered <> 0)::int AS outbound_answered,
    $q$;
    -- a call's value in report_hours (report_days) for each kind of report_kinds
    kind_value CONSTANT TEXT := $q$CASE k.kind WHEN 'queue' THEN r.queue WHEN 'did' THEN r.did
        WHEN 'campaign' THEN coalesce(r.campaign_id::text, '')
        WHEN 'disposition' THEN r.disposition ELSE '' END$q$;
    bins TEXT;
    fact TEXT;
    adds TEXT[];    -- the apply function's upserts
    drops TEXT[];   -- and deletes of rows left at no calls
    c RECORD;
    t RECORD;
BEGIN
    SELECT string_agg(format('(h.bin = %s)::int AS h%1$s', b), ', ' ORDER BY b) INTO bins
        FROM generate_series(0, 23) AS b;
    FOR c IN SELECT * FROM (VALUES
        ('report', 'call_facts', 'report_call_rows', ARRAY['started_at', 'id'],
         ARRAY['queue', 'did', 'campaign_id', 'disposition'], NULL,
         'report_call_rows r CROSS JOIN report_kinds k',
         'kind, hour, value', 'k.kind, r.hour, ' || kind_value,
         'kind, day, value', 'k.kind, r.hour / 24, ' || kind_value),
        ('report_agent', 'call_agent_facts', 'report_agent_rows', ARRAY['started_at', 'id', 'agent'],
         ARRAY['queue'], 'agent',
         'report_agent_rows r',
         'hour, agent, queue', 'r.hour, r.agent, r.queue',
         'day, agent', 'r.hour / 24, r.agent')
    ) AS c(p,            -- the prefix of its tables and function
           facts, sums,  -- its table; the view of what each fact adds
           key, dims,    -- a fact's key; what its handle time is kept with
           ext,          -- the key column besides start and id (the apply function's ext)
           src,          -- what its rollup rows are summed from (r: the sums, k: each kind)
           hour_key, hour_of,  -- its hour's rollup rows: their key, and the fact's values
           day_key, day_of)    -- its day's
    LOOP
        -- one fact, in the apply function
        fact := 'started_at = at AND id = call_id'
                || CASE WHEN c.ext IS NOT NULL THEN format(' AND %I = ext', c.ext) ELSE '' END;
        EXECUTE format($q$
CREATE VIEW %I AS
SELECT width_bucket(hs, ARRAY[15, 30, 45, 60, 90, 120, 150, 180, 210, 240, 300, 360, 420, 480,
                              600, 720, 900, 1200, 1800, 2700, 3600, 7200, 14400])::bigint AS bin,
       %s, hs, %s
FROM (SELECT %s, trunc((%s) + 0.5)::bigint AS hs
      FROM %I f CROSS JOIN report_rollup_settings s
      WHERE f.dir = 0 AND f.took <> 0) AS f$q$,
            c.p || '_handle_source', pg_temp.report_list('%I', c.key),
            pg_temp.report_list('%I', c.dims), pg_temp.report_list('f.%I', c.key || c.dims),
            handle, c.facts);
        EXECUTE format($q$
CREATE VIEW %I AS
SELECT %s, trunc(f.started_at)::bigint / 3600 AS hour, %s%s
FROM %I f
CROSS JOIN report_rollup_settings s
LEFT JOIN %I h ON %s$q$,
            c.sums, pg_temp.report_list('f.%I', c.key || c.dims), format(sums, handle), bins,
            c.facts, c.p || '_handles', pg_temp.report_list('h.%1$I = f.%1$I', c.key, ' AND '));
        -- the backfill, and what the apply function does to each of the fact's rollup rows
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', c.p || '_handles', c.p || '_handle_source');
        adds := '{}';
        drops := '{}';
        FOR t IN SELECT * FROM (VALUES (c.p || '_hours', c.hour_key, c.hour_of),
                                       (c.p || '_days', c.day_key, c.day_of)) AS t(rollup, key, key_of)
        LOOP
            EXECUTE pg_temp.report_add(t.rollup, t.key, t.key_of, 'total(r.%I)',
                                       c.src || ' GROUP BY ' || t.key_of);
            adds := adds || pg_temp.report_add(t.rollup, t.key, t.key_of, 'sgn * coalesce(r.%I, 0)',
                                               c.src || ' WHERE ' || fact);
            drops := drops || format('DELETE FROM %I WHERE (%s) IN (SELECT %s FROM %s WHERE %s)'
                                     ' AND calls = 0', t.rollup, t.key, t.key_of, c.src, fact);
        END LOOP;
        EXECUTE format($q$
CREATE FUNCTION %I(sgn BIGINT, at DOUBLE PRECISION, call_id TEXT%s) RETURNS void
LANGUAGE plpgsql AS $f$
BEGIN
    IF sgn > 0 THEN
        INSERT INTO %3$I SELECT * FROM %4$I WHERE %5$s;
    END IF;
    %6$s;
    IF sgn < 0 THEN
        %7$s;
        DELETE FROM %3$I WHERE %5$s;
    END IF;
END $f$$q$,
            c.p || '_apply', CASE WHEN c.ext IS NOT NULL THEN ', ext TEXT' ELSE '' END,
            c.p || '_handles', c.p || '_handle_source', fact,
            array_to_string(adds, E';\n    '), array_to_string(drops, E';\n        '));
    END LOOP;
END $do$;

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
-- once it is there (<p>_apply); a call's call-backs are found again.
CREATE FUNCTION report_facts_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'call_facts' THEN
        PERFORM report_apply(-1, OLD.started_at, OLD.id);
    ELSE
        PERFORM report_agent_apply(-1, OLD.started_at, OLD.id, OLD.agent);
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION report_facts_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM report_callbacks WHERE started_at = OLD.started_at AND id = OLD.id;
        PERFORM report_callbacks_of(OLD.dir, OLD.number, OLD.started_at);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM report_apply(1, NEW.started_at, NEW.id);
        PERFORM report_callback_put(NEW.started_at, NEW.id);
        PERFORM report_callbacks_of(NEW.dir, NEW.number, NEW.started_at);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION report_agent_facts_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM report_agent_apply(1, NEW.started_at, NEW.id, NEW.agent);
    RETURN NULL;
END $$;

CREATE TRIGGER report_facts_before BEFORE UPDATE OR DELETE ON call_facts
    FOR EACH ROW EXECUTE FUNCTION report_facts_before();
CREATE TRIGGER report_facts_after AFTER INSERT OR UPDATE OR DELETE ON call_facts
    FOR EACH ROW EXECUTE FUNCTION report_facts_after();
CREATE TRIGGER report_agent_facts_before BEFORE UPDATE OR DELETE ON call_agent_facts
    FOR EACH ROW EXECUTE FUNCTION report_facts_before();
CREATE TRIGGER report_agent_facts_after AFTER INSERT OR UPDATE ON call_agent_facts
    FOR EACH ROW EXECUTE FUNCTION report_agent_facts_after();

DROP FUNCTION pg_temp.report_add(TEXT, TEXT, TEXT, TEXT, TEXT);
DROP FUNCTION pg_temp.report_sum_list(TEXT);
DROP FUNCTION pg_temp.report_list(TEXT, TEXT[], TEXT);
DROP TABLE pg_temp.report_sums;
