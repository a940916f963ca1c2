-- Version 20: replies to campaign e-mails read from the reply mailbox over IMAP
-- (gateway/campaigns/replies.py).
--
-- mail_reply_cursors: how far each mailbox has been read. A message's UID is only meaningful
-- with its mailbox's UIDVALIDITY: while that stays the same, every message at or below
-- last_uid was handled; when the server changes it, the watcher starts over and relies on
-- the keyword it sets on each message it handled.
CREATE TABLE mail_reply_cursors (
    account     TEXT PRIMARY KEY,       -- "user at host:port/mailbox" (no secret)
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

-- campaign_replies: each message of the mailbox that answered one of our e-mails, and what
-- it was. The UNIQUE key makes a message count once, whatever restarts happen.
--   kind: reply (a person answered: the run is marked replied), auto_reply (out of office and
--   other automatic answers: ignored), bounce (a delivery status notification with a 5.x.x
--   status: the address is marked bounced), delayed (a DSN that is not final: ignored),
--   receipt (read receipts and other reports: ignored).
CREATE TABLE campaign_replies (
    id          INTEGER PRIMARY KEY,
    account     TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    run_id      INTEGER REFERENCES campaign_step_runs (id) ON DELETE SET NULL,
    person_id   INTEGER REFERENCES people (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    sender      TEXT NOT NULL DEFAULT '',   -- who answered (From), or the bounced address
    detail      TEXT NOT NULL DEFAULT '',   -- why it is not a reply, or the DSN's status
    at          REAL NOT NULL,
    UNIQUE (account, uidvalidity, uid)
);
CREATE INDEX campaign_replies_run ON campaign_replies (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX campaign_replies_person ON campaign_replies (person_id, at);
