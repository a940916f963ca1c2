-- Call records waiting to be written to external CRMs (gateway/writeback/outbox.py).
-- One row per (connector, call record): the UNIQUE key is what stops a call from being queued,
-- and so written, twice. Rows are kept after delivery (delivered_at set) as an audit trail.
CREATE TABLE IF NOT EXISTS crm_outbox (
    id              INTEGER PRIMARY KEY,          -- insertion order = delivery order
    connector       TEXT    NOT NULL,
    record_id       TEXT    NOT NULL,
    payload         TEXT    NOT NULL,             -- the call record as JSON
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,             -- epoch seconds
    next_attempt_at REAL    NOT NULL,             -- epoch seconds; backoff after a failure
    delivered_at    REAL,                         -- NULL until the CRM accepted it
    parked_at       REAL,                         -- the CRM refused the record itself
    last_error      TEXT,
    UNIQUE (connector, record_id)
);

CREATE INDEX IF NOT EXISTS crm_outbox_pending
    ON crm_outbox (connector, id)
    WHERE delivered_at IS NULL AND parked_at IS NULL;
