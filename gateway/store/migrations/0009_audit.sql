-- Version 9: who changed what the access policy protects (gateway/access.py): do-not-call and
-- e-mail opt-out (on a person, a number, an address) and owners. One row per field changed,
-- old and new as JSON, read by supervisors through GET /api/v1/audit.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    actor       TEXT NOT NULL,                   -- user:ana, token:crm, system
    record_kind TEXT NOT NULL,                   -- contact | lead
    record_id   INTEGER NOT NULL,                -- kept after the record is deleted
    field       TEXT NOT NULL,                   -- do_not_call, owner, phones[+34...].do_not_call
    old_value   TEXT NOT NULL,                   -- JSON
    new_value   TEXT NOT NULL                    -- JSON
);
CREATE INDEX audit_record ON audit_log (record_id, at);
CREATE INDEX audit_at ON audit_log (at);

-- A wrap-up note now names its call (activities.call_id), so it is shown only to who may see
-- that call; only the call entry itself stays one per person and call.
DROP INDEX activities_call;
CREATE UNIQUE INDEX activities_call ON activities (person_id, call_id)
    WHERE call_id IS NOT NULL AND kind = 'call';

-- wrap-up notes written before: "Call <linkedid>[: <disposition>]" by an agent, about a call
-- of that person
UPDATE activities SET call_id = (
    SELECT c.id FROM calls c
    WHERE c.person_id = activities.person_id
      AND c.linkedid = CASE WHEN instr(activities.summary, ':') > 0
                            THEN substr(activities.summary, 6, instr(activities.summary, ':') - 6)
                            ELSE substr(activities.summary, 6) END
    ORDER BY c.started_at DESC LIMIT 1)
WHERE kind = 'note' AND call_id IS NULL AND author IS NOT NULL AND summary LIKE 'Call %';
