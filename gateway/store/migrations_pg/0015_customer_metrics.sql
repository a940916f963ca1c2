-- Version 15: customer intelligence (gateway/intel/). Deals become purchases: a won deal is
-- one, dated by closed_at; won/lost/open is derived from the stage (won, lost, the others).
-- Deals come from the panel's conversion, the API, a CSV import or a CRM; external_id keeps
-- a re-import from doubling them.
ALTER TABLE deals ADD COLUMN closed_at DOUBLE PRECISION;                       -- won or lost at (epoch, UTC)
ALTER TABLE deals ADD COLUMN product TEXT NOT NULL DEFAULT '';     -- product or category
ALTER TABLE deals ADD COLUMN lost_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE deals ADD COLUMN external_id TEXT;                     -- "<source>:<id>", unique
UPDATE deals SET closed_at = updated_at WHERE stage IN ('won', 'lost');
CREATE UNIQUE INDEX deals_external ON deals (external_id) WHERE external_id IS NOT NULL;
-- the cohort's rhythm (nightly): every won deal per person in date order
CREATE INDEX deals_won ON deals (person_id, closed_at) WHERE stage = 'won';

-- Each metric of each person as last computed (on events and nightly), read with the caller
-- card in the card's one query. ``value`` is the number (NULL when the data cannot give one),
-- ``label`` the category (RFM segment, risk band, channel, action); ``reason`` a stable code
-- and ``params`` (JSON) what the panel and the API put into the sentence in either language.
CREATE TABLE person_metrics (
    person_id   BIGINT NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    metric      TEXT NOT NULL,
    value       DOUBLE PRECISION,
    label       TEXT,
    reason      TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    computed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (person_id, metric)
);
-- no other index: campaign segments ("RFM segment in (...)", "churn risk at least x") test
-- each person of one pass over people through the key, and the card reads by the key
