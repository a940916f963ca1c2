-- Version 22: the scheduler finds due members campaign by campaign
-- (gateway/campaigns/store.py due_members): an index range per running campaign, ordered by
-- due time, so that a paused campaign's members, however many, are never read. Through the
-- index on due time alone, every batch of a tick stepped over them all: 100,000 members held
-- in a paused campaign cost each batch ~25 ms (bench/campaigns.py).
CREATE INDEX campaign_members_campaign_due ON campaign_members (campaign_id, due_at)
    WHERE state = 'active';
