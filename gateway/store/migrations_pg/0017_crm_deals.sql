-- Version 17: deals pulled from each CRM (gateway/directory/deals.py). One row per CRM deal
-- ever pulled: the store deal it became (deals.external_id "<connector>:<module>:<id>"), or
-- none while its customer is unknown here, and then the deal itself as pulled (``waiting``,
-- JSON) so it is attached as soon as the customer is known, without asking the CRM again.
-- Deletions the CRM cannot report are found as in the caller directory: rows a full pass did
-- not see (``seen_pass``) go, with their deals. Where each pull resumes is kept in
-- crm_directory_state under the module "deals:<module>".
CREATE TABLE crm_deals (
    connector  TEXT    NOT NULL,
    module     TEXT    NOT NULL,                    -- Opportunities, Potentials, sale.order...
    record_id  TEXT    NOT NULL,
    deal_id    BIGINT REFERENCES deals (id) ON DELETE SET NULL,
    customer   TEXT    NOT NULL DEFAULT '',         -- the CRM's name for it (log, /health)
    waiting    TEXT,                                -- the pulled deal while nobody here is its customer
    seen_pass  BIGINT NOT NULL DEFAULT 0,
    synced_at  DOUBLE PRECISION    NOT NULL,
    PRIMARY KEY (connector, module, record_id)
);
-- the retry of waiting deals reads only those
CREATE INDEX crm_deals_waiting ON crm_deals (connector, module) WHERE waiting IS NOT NULL;
